"""Pure metric functions on NumPy arrays (no torch, no models)."""

from cdrec.metrics.grouping import activity_bucket, bucket_labels, grouped_means
from cdrec.metrics.pointwise import auc, log_loss, rmse
from cdrec.metrics.ranking import (
    hit_rate,
    hit_rate_from_rank,
    mrr,
    mrr_from_rank,
    ndcg,
    ndcg_from_rank,
    paper_list_metrics,
    positive_rank,
    ranked_list_metrics,
)

__all__ = [
    "activity_bucket", "auc", "bucket_labels", "grouped_means", "hit_rate", "hit_rate_from_rank",
    "log_loss", "mrr", "mrr_from_rank", "ndcg", "ndcg_from_rank", "paper_list_metrics", "positive_rank",
    "ranked_list_metrics", "rmse",
]
