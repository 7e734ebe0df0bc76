"""Collaborative-filtering family: BPR-MF (+ NeuMF, LightGCN, UCLR)."""

from cdrec.models.cf.bprmf import BPRMF, BPRMFParams

__all__ = ["BPRMF", "BPRMFParams"]
