"""LazyAdam: SparseAdam's numbers with gather/scatter kernels; huge-page advice never changes values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdrec.config import TrainConfig
from cdrec.models.cf.bprmf import BPRMF, BPRMFParams
from cdrec.train.lazy_adam import MIN_HUGE_BYTES, LazyAdam, advise_huge_pages, empty_rows_table


@pytest.mark.parametrize("n_rows", [40, 5000])  # many repeated rows per step / few
def test_same_numbers_as_sparse_adam(n_rows: int) -> None:
    torch.manual_seed(0)
    ref = torch.nn.Parameter(torch.randn(n_rows, 8))
    new = torch.nn.Parameter(ref.detach().clone())
    opt_ref, opt_new = torch.optim.SparseAdam([ref], lr=1e-2), LazyAdam([new], lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(40):
        idx = torch.as_tensor(rng.integers(0, n_rows, 300))
        vals = torch.randn(300, 8)
        for p, opt in ((ref, opt_ref), (new, opt_new)):
            opt.zero_grad(set_to_none=True)
            p.grad = torch.sparse_coo_tensor(idx[None], vals, p.shape, check_invariants=False)
            opt.step()
    assert torch.equal(new, ref)
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(opt_new.state[new][key], opt_ref.state[ref][key])
    assert opt_new.state[new]["step"] == opt_ref.state[ref]["step"] == 40


def test_rows_outside_the_gradient_do_not_move() -> None:
    p = torch.nn.Parameter(torch.randn(20, 4))
    before = p.detach().clone()
    opt = LazyAdam([p], lr=0.1)
    p.grad = torch.sparse_coo_tensor(torch.tensor([[3, 7, 3]]), torch.ones(3, 4), p.shape, check_invariants=True)
    opt.step()
    moved = (p.detach() != before).any(1).nonzero().ravel().tolist()
    assert moved == [3, 7]


def test_dense_gradient_is_refused() -> None:
    p = torch.nn.Parameter(torch.randn(5, 2))
    p.grad = torch.ones(5, 2)
    with pytest.raises(RuntimeError, match="sparse"):
        LazyAdam([p]).step()


def test_bprmf_sparse_trains_exactly_as_with_sparse_adam() -> None:
    rng = np.random.default_rng(1)
    batches = [{k: torch.as_tensor(rng.integers(0, m, 128)) for k, m in (("user", 60), ("pos", 40), ("neg", 40))} for _ in range(25)]
    weights = []
    for optimizer in ("lazy", "sparse_adam"):
        torch.manual_seed(0)
        model = BPRMF(60, 40, BPRMFParams(dim=8, sparse=True))
        opt = model.configure_optimizers(TrainConfig(lr=0.01))
        assert isinstance(opt, LazyAdam)
        if optimizer == "sparse_adam":
            opt = torch.optim.SparseAdam(list(model.parameters()), lr=0.01)
        for b in batches:
            model.closed_form_step(b, [opt])
        weights.append(torch.cat([model.user_emb.weight.detach(), model.item_emb.weight.detach()]))
    assert torch.equal(weights[0], weights[1])


def test_huge_page_advice_is_value_neutral() -> None:
    small = torch.zeros(10)
    assert advise_huge_pages(small) is False  # below MIN_HUGE_BYTES: nothing done
    big = empty_rows_table((MIN_HUGE_BYTES // 4 // 64 + 1, 64)).fill_(1.5)
    assert big.shape[1] == 64 and bool((big == 1.5).all())
    torch.manual_seed(0)
    a = BPRMF(10, 10, BPRMFParams(dim=4, sparse=True)).user_emb.weight.detach()
    torch.manual_seed(0)
    b = BPRMF(10, 10, BPRMFParams(dim=4, sparse=False)).user_emb.weight.detach()
    assert torch.equal(a, b)  # the sparse table draws the same initial values as nn.Embedding's
