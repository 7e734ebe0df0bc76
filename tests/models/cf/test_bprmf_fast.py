"""BPR-MF's closed-form training step equals autograd on its loss; sparse mode moves only batch rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdrec.config import TrainConfig
from cdrec.errors import CdrecError
from cdrec.models.cf.bprmf import BPRMF, BPRMFParams


def _batch(seed: int = 0, n: int = 64) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return {k: torch.as_tensor(rng.integers(0, m, n)) for k, m in (("user", 30), ("pos", 50), ("neg", 50))}


def _dense(g: torch.Tensor) -> torch.Tensor:
    return g.to_dense() if g.is_sparse else g


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("reg", [0.0, 0.05])
def test_closed_form_gradients_equal_autograd(sparse: bool, reg: float) -> None:
    torch.manual_seed(0)
    ref = BPRMF(30, 50, BPRMFParams(dim=8, reg=reg, sparse=sparse))
    fast = BPRMF(30, 50, BPRMFParams(dim=8, reg=reg, sparse=sparse))
    fast.load_state_dict(ref.state_dict())
    batch = _batch()
    loss = ref.loss(batch)
    loss.backward()
    opt = fast.configure_optimizers(TrainConfig())
    before = {k: v.clone() for k, v in fast.state_dict().items()}
    value = fast.train_step(batch, [opt])
    assert value == pytest.approx(float(loss.detach()), rel=1e-5)
    for a, b in ((ref.user_emb.weight, fast.user_emb.weight), (ref.item_emb.weight, fast.item_emb.weight)):
        torch.testing.assert_close(_dense(b.grad), _dense(a.grad), atol=1e-7, rtol=1e-5)
    if sparse:  # lazy Adam: rows outside the batch did not move
        untouched = np.setdiff1d(np.arange(30), batch["user"].numpy())
        assert torch.equal(fast.user_emb.weight[untouched], before["user_emb.weight"][untouched])
    assert not torch.equal(fast.user_emb.weight, before["user_emb.weight"])


def test_training_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = BPRMF(30, 50, BPRMFParams(dim=8))
    opt = model.configure_optimizers(TrainConfig(lr=0.05))
    batch = _batch(1, 256)
    first = model.train_step(batch, [opt])
    for _ in range(30):
        last = model.train_step(batch, [opt])
    assert last < first - 0.1


def test_subclass_with_its_own_loss_trains_by_autograd() -> None:
    class Shifted(BPRMF):
        def loss(self, batch):
            return super().loss(batch) + 1.0

    torch.manual_seed(0)
    model = Shifted(30, 50, BPRMFParams(dim=8))
    opt = model.configure_optimizers(TrainConfig())
    value = model.train_step(_batch(), [opt])
    assert value > 1.0


def test_sparse_needs_plain_adam() -> None:
    model = BPRMF(30, 50, BPRMFParams(dim=8, sparse=True))
    with pytest.raises(CdrecError, match="sparse"):
        model.configure_optimizers(TrainConfig(optimizer="sgd"))


def test_several_negatives_per_row_average_the_pairwise_terms() -> None:
    """``neg`` of shape [B, n]: the loss is the mean of the B x n single-negative BPR terms."""
    torch.manual_seed(0)
    model = BPRMF(30, 50, BPRMFParams(dim=8, reg=0.0))
    rng = np.random.default_rng(3)
    user, pos = torch.as_tensor(rng.integers(0, 30, 16)), torch.as_tensor(rng.integers(0, 50, 16))
    neg = torch.as_tensor(rng.integers(0, 50, (16, 4)))
    several = model.loss({"user": user, "pos": pos, "neg": neg})
    singles = [model.loss({"user": user, "pos": pos, "neg": neg[:, c]}) for c in range(4)]
    torch.testing.assert_close(several, torch.stack(singles).mean())
    opt = model.configure_optimizers(TrainConfig())
    assert model.train_step({"user": user, "pos": pos, "neg": neg}, [opt]) == pytest.approx(float(several), rel=1e-6)
