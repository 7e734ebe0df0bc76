"""The one interaction model, loaders, domain builders, filters, splitters, samplers, views, synthetic data."""

from cdrec.data.interactions import Interactions
from cdrec.data.splits import Split, leave_one_out, ratio_split
from cdrec.data.synthetic import SyntheticConfig, make_synthetic

__all__ = ["Interactions", "Split", "SyntheticConfig", "leave_one_out", "make_synthetic", "ratio_split"]
