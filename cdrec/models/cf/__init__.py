"""Collaborative-filtering family: BPR-MF, NeuMF, LightGCN, UCLR and its ablation ladder, CAT-ART."""

from cdrec.models.cf.bprmf import BPRMF, BPRMFParams
from cdrec.models.cf.cat_art import CATART, CATARTParams
from cdrec.models.cf.lightgcn import LightGCN, LightGCNParams
from cdrec.models.cf.neumf import NeuMF, NeuMFParams
from cdrec.models.cf.uclr import LADDER, UCLR, UCLRParams

__all__ = ["BPRMF", "BPRMFParams", "CATART", "CATARTParams", "LADDER", "LightGCN", "LightGCNParams", "NeuMF", "NeuMFParams", "UCLR", "UCLRParams"]
