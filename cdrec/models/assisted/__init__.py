"""The assisted family (AAE/MTAL, DMTCDR): Base, MF, MLP, NCF, AE and the Assisted AutoEncoder."""

from cdrec.models.assisted import aae, base, mf, mlp, ncf  # noqa: F401
