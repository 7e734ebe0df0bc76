"""Results: the results.json schema, Markdown tables, seed aggregation, significance, plots."""

from cdrec.results.schema import RunResult, atomic_write_text, peak_rss_mb, write_result
from cdrec.results.tables import aggregate_seeds, markdown_table, mean_std, paired_ttest, result_markdown

__all__ = [
    "RunResult", "aggregate_seeds", "atomic_write_text", "markdown_table", "mean_std", "paired_ttest",
    "peak_rss_mb", "result_markdown", "write_result",
]
