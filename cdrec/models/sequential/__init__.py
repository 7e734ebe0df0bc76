"""Sequential family: SASRec and BERT4Rec (single- and dual-target), MERIT and ABXI."""

from cdrec.models.sequential.abxi import ABXI, ABXIParams
from cdrec.models.sequential.bert4rec import BERT4Rec, BERT4RecParams
from cdrec.models.sequential.merit import MERIT, MERITParams
from cdrec.models.sequential.sasrec import SASRec, SASRecParams

__all__ = ["ABXI", "ABXIParams", "BERT4Rec", "BERT4RecParams", "MERIT", "MERITParams", "SASRec", "SASRecParams"]
