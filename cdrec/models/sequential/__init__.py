"""Sequential family: SASRec and BERT4Rec (single- and dual-target), MERIT, ABXI, C2DSR, DREAM, CD-SASRec, CD-ASR and MGCL."""

from cdrec.models.sequential.abxi import ABXI, ABXIParams
from cdrec.models.sequential.bert4rec import BERT4Rec, BERT4RecParams
from cdrec.models.sequential.c2dsr import C2DSR, C2DSRParams
from cdrec.models.sequential.cdasr import CDASR, CDASRParams
from cdrec.models.sequential.cdsasrec import CDSASRec, CDSASRecParams
from cdrec.models.sequential.dream import DREAM, DREAMParams
from cdrec.models.sequential.merit import MERIT, MERITParams
from cdrec.models.sequential.mgcl import MGCL, MGCLParams
from cdrec.models.sequential.sasrec import SASRec, SASRecParams

__all__ = [
    "ABXI", "ABXIParams", "BERT4Rec", "BERT4RecParams", "C2DSR", "C2DSRParams", "CDASR", "CDASRParams", "CDSASRec",
    "CDSASRecParams", "DREAM", "DREAMParams", "MERIT", "MERITParams", "MGCL",
    "MGCLParams", "SASRec", "SASRecParams",
]
