"""What the MTAL diagnostic drivers share: the data flags and the federation they build.

The drivers reproduce the figures of ``docs/reproductions/mtal/report.md`` (2026-12-01 section) on the
recipe's split (random per-user 81/9/10, so every row is selected on validation, never on test).
"""

from __future__ import annotations

import argparse

import torch

from cdrec.config import DataConfig
from cdrec.data.datasets import load_dataset
from cdrec.data.splits import ratio_split
from cdrec.experiments.mtal import ML100K_GENRES
from cdrec.federated.alignment import Federation, build_federation

RECIPE_RATIOS = "0.81,0.09,0.1"


def data_parser(description: str, *, federation_flags: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the flags every driver takes (data set, partition, alignment, seed)."""
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--domains", default="genre-random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ratios", default=RECIPE_RATIOS, help="train,valid,test shares per user")
    if federation_flags:
        parser.add_argument("--alignment", default="user")
        parser.add_argument("--feedback", default="explicit")
    return parser


def federation(args: argparse.Namespace) -> Federation:
    """The recipe's federation: ML-100K genre partitions keep the 18 genres, explicit ratings kept.

    Unlike the recipe, which draws the partition with the run's seed, the organizations are drawn with seed 0
    whatever ``--seed`` is: ``--seed`` changes the split and the initial weights only, so every multi-seed figure
    of the diagnostic sections compares the same organizations."""
    keep = ML100K_GENRES if args.domains == "genre-random" and args.dataset == "ml-100k" else None
    data = load_dataset(
        DataConfig(name=args.dataset, data_dir=args.data_dir, domains=args.domains, keep_domains=keep, min_rating=None)
    )
    split = ratio_split(data, [float(x) for x in args.ratios.split(",")], by_user=True, seed=args.seed)
    return build_federation(
        data, split, alignment=getattr(args, "alignment", "user"), feedback=getattr(args, "feedback", "explicit")
    )
