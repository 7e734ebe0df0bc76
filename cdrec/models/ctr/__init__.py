"""Multi-domain multi-task CTR family: MLP, Shared-Bottom, MMoE, PLE, STAR, AdaTT (and AdaTT-sp), M2M and M3oE."""

from cdrec.models.ctr import adatt, m2m, m3oe, mlp, mmoe, ple, sharedbottom, star  # noqa: F401
