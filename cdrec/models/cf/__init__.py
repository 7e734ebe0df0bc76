"""Collaborative-filtering family: Pop, ItemKNN, BPR-MF, NeuMF, LightGCN, UCLR and its ablation ladder, the
multi-target cross-domain baselines HeroGraph, GA-MTCDR and CAT-ART, and the two-domain baselines CMF, CLFM,
EMCDR, SSCDR, DCDCSR, DTCDR, CoNet, DeepAPF, NATR, BiTGCF and DisenCDR (:mod:`cdrec.models.cf.two_domain`)."""

from cdrec.models.cf.bitgcf import BiTGCF, BiTGCFParams
from cdrec.models.cf.bprmf import BPRMF, BPRMFParams
from cdrec.models.cf.cat_art import CATART, CATARTParams
from cdrec.models.cf.clfm import CLFM, CLFMParams
from cdrec.models.cf.cmf import CMF, CMFParams
from cdrec.models.cf.conet import CoNet, CoNetParams
from cdrec.models.cf.dcdcsr import DCDCSR, DCDCSRParams
from cdrec.models.cf.deepapf import DeepAPF, DeepAPFParams
from cdrec.models.cf.disencdr import DisenCDR, DisenCDRParams
from cdrec.models.cf.dtcdr import DTCDR, DTCDRParams
from cdrec.models.cf.emcdr import EMCDR, EMCDRParams
from cdrec.models.cf.gamtcdr import GAMTCDR, GAMTCDRParams
from cdrec.models.cf.herograph import HeroGraph, HeroGraphParams
from cdrec.models.cf.itemknn import ItemKNN, ItemKNNParams
from cdrec.models.cf.lightgcn import LightGCN, LightGCNParams
from cdrec.models.cf.natr import NATR, NATRParams
from cdrec.models.cf.neumf import NeuMF, NeuMFParams
from cdrec.models.cf.pop import Pop, PopParams
from cdrec.models.cf.sscdr import SSCDR, SSCDRParams
from cdrec.models.cf.uclr import LADDER, UCLR, UCLRParams

__all__ = [
    "BiTGCF", "BiTGCFParams", "BPRMF", "BPRMFParams", "CATART", "CATARTParams", "CLFM", "CLFMParams", "CMF",
    "CMFParams", "CoNet", "CoNetParams", "DCDCSR", "DCDCSRParams", "DeepAPF", "DeepAPFParams", "DisenCDR",
    "DisenCDRParams", "DTCDR", "DTCDRParams", "EMCDR", "EMCDRParams", "GAMTCDR", "GAMTCDRParams", "HeroGraph",
    "HeroGraphParams", "ItemKNN", "ItemKNNParams", "LADDER", "LightGCN", "LightGCNParams", "NATR", "NATRParams",
    "NeuMF", "NeuMFParams", "Pop", "PopParams", "SSCDR", "SSCDRParams", "UCLR", "UCLRParams",
]
