"""Collaborative-filtering family: Pop, ItemKNN, BPR-MF, NeuMF, LightGCN, UCLR and its ablation ladder, and the
multi-target cross-domain baselines HeroGraph, GA-MTCDR and CAT-ART."""

from cdrec.models.cf.bprmf import BPRMF, BPRMFParams
from cdrec.models.cf.cat_art import CATART, CATARTParams
from cdrec.models.cf.gamtcdr import GAMTCDR, GAMTCDRParams
from cdrec.models.cf.herograph import HeroGraph, HeroGraphParams
from cdrec.models.cf.itemknn import ItemKNN, ItemKNNParams
from cdrec.models.cf.lightgcn import LightGCN, LightGCNParams
from cdrec.models.cf.neumf import NeuMF, NeuMFParams
from cdrec.models.cf.pop import Pop, PopParams
from cdrec.models.cf.uclr import LADDER, UCLR, UCLRParams

__all__ = [
    "BPRMF", "BPRMFParams", "CATART", "CATARTParams", "GAMTCDR", "GAMTCDRParams", "HeroGraph", "HeroGraphParams",
    "ItemKNN", "ItemKNNParams", "LADDER", "LightGCN", "LightGCNParams", "NeuMF", "NeuMFParams", "Pop", "PopParams",
    "UCLR", "UCLRParams",
]
