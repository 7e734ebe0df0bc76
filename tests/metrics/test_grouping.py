import numpy as np

from cdrec.metrics import activity_bucket, bucket_labels, grouped_means


def test_buckets():
    assert bucket_labels((2, 5, 20)) == ["0", "1-2", "3-5", "6-20", ">20"]
    assert bucket_labels((1, 3)) == ["0", "1", "2-3", ">3"]  # a one-value bucket is named by its value
    counts = np.array([0, 1, 2, 3, 5, 6, 20, 21, 100])
    assert activity_bucket(counts, (2, 5, 20)).tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_grouped_means_skip_empty_groups():
    out = grouped_means({"m": np.array([1.0, 3.0, 5.0])}, np.array([0, 0, 2]), ["a", "b", "c"])
    assert out == {"a": {"m": 2.0, "n": 2}, "c": {"m": 5.0, "n": 1}}
