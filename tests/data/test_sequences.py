"""Sequence views (MERIT Fig. 4) and the mixed leave-one-out protocol on the real Amazon sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cdrec.data.candidates import add_sampled_candidates
from cdrec.data.interactions import Interactions
from cdrec.data.sequences import aligned_domain_sequences, histories, training_sequences
from cdrec.data.splits import leave_one_out
from tests.conftest import shared_path


def toy() -> Interactions:
    # user u0: a1 b1 a2 a3 b2 (A items a*, B items b*), u1: b1 a1 b2 ; file order breaks the tie at t=3
    frame = pd.DataFrame({
        "user": ["u0"] * 5 + ["u1"] * 3,
        "item": ["a1", "b1", "a2", "a3", "b2", "b1", "a1", "b2"],
        "domain": ["A", "B", "A", "A", "B", "B", "A", "B"],
        "timestamp": [1, 2, 3, 3, 5, 1, 2, 3],
    })
    inter = Interactions.from_frame(frame, timestamp_col="timestamp", domain_names=["A", "B"], name="toy")
    inter.frame["seq"] = np.array([0, 1, 2, 3, 4, 0, 1, 2])
    return inter


def names(inter: Interactions, arr: np.ndarray) -> list[str]:
    return [inter.item_ids[i - 1] if i > 0 else "-" for i in arr]


def test_training_windows_targets_and_domain_targets():
    inter = toy()
    split = leave_one_out(inter, mixed=True)
    # u0 trains on a1 b1 a2 (a3 = valid, b2 = test); u1 trains on b1 (a1 valid, b2 test) -> too short
    view = training_sequences(split, 4)
    assert list(inter.user_ids[view.users]) == ["u0"]
    assert names(inter, view.items[0]) == ["-", "-", "a1", "b1"]
    assert names(inter, view.targets[0]) == ["-", "-", "b1", "a2"]
    # next event of the same domain within the training sequence: a1 -> a2, b1 -> none
    assert names(inter, view.domain_targets[0]) == ["-", "-", "a2", "-"]
    assert list(view.domains[0]) == [-1, -1, 0, 1]


def test_cloze_windows_keep_every_event_and_truncate_left():
    split = leave_one_out(toy(), mixed=True)
    view = training_sequences(split, 2, cloze=True)
    assert names(split.data, view.items[list(split.data.user_ids[view.users]).index("u0")]) == ["b1", "a2"]


def test_histories_see_only_the_past_and_one_domain_when_asked():
    inter = toy()
    split = leave_one_out(inter, mixed=True)
    test_rows = split.test_rows
    h = histories(inter, test_rows, 6)
    u0 = list(inter.user_ids[h.users]).index("u0")
    assert names(inter, h.items[u0]) == ["-", "-", "a1", "b1", "a2", "a3"]
    hb = histories(inter, test_rows, 3, domain=1)
    assert names(inter, hb.items[u0]) == ["-", "-", "b1"]
    a, b = aligned_domain_sequences(h.items, h.domains, 2)
    assert names(inter, a[u0]) == ["-", "-", "a1", "-", "a2", "a3"]
    assert names(inter, b[u0]) == ["-", "-", "-", "b1", "-", "-"]


@pytest.mark.parametrize(
    "name,counts",
    [("afk", {"Food": (2837, 2419), "Kitchen": (4307, 4725)}), ("abe", {"Beauty": (2086, 1875), "Electronics": (2388, 2599)})],
)
def test_mixed_leave_one_out_reproduces_table1_counts(name, counts):
    from cdrec.data.loaders import load_amazon_cdsr

    root = shared_path()
    shared_path("amazon-cdsr-merit", name)
    inter = load_amazon_cdsr(name, root)
    split = leave_one_out(inter, mixed=True, seed=0)
    for d, dom in enumerate(inter.domains):
        valid = int((inter.domain[split.valid_rows] == d).sum())
        test = int((inter.domain[split.test_rows] == d).sum())
        assert (valid, test) == counts[dom]
    add_sampled_candidates(split, 999, seed=0, parts=("test",))
    cands = split.candidates["test"]
    assert cands.shape == (inter.n_users, 1000)
    # negatives from the target's domain, never an item the user touched
    lo = inter.item_offsets[inter.domain[split.test_rows]]
    hi = inter.item_offsets[inter.domain[split.test_rows] + 1]
    assert ((cands >= lo[:, None]) & (cands < hi[:, None])).all()
