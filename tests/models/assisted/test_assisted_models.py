"""Assisted family backbones: AAE output gathering, local fit, base model, pair models."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from cdrec.models.assisted import aae as aae_mod
from cdrec.models.assisted.aae import AAE, AAEParams, AutoencoderData, encode_rows, fit_autoencoder, predict_autoencoder, score_pairs
from cdrec.models.assisted.base import BaseModel
from cdrec.models.assisted.mf import MF, MFParams
from cdrec.models.assisted.mlp import MLP, MLPParams
from cdrec.models.assisted.ncf import NCF, NCFParams


def test_aae_scores_only_requested_columns_and_matches_dense_output():
    torch.manual_seed(0)
    model = AAE(12, 50, AAEParams(side_info=True), d_row_side=3, d_col_side=2).eval()
    x = torch.randn(4, 12)
    h = model.hidden(x, torch.randn(4, 3), torch.randn(4, 2))
    assert h.shape == (4, 256)
    pos = torch.tensor([0, 0, 3, 2])
    cols = torch.tensor([49, 1, 7, 1])
    dense = h @ model.out_weight.T + model.out_bias
    torch.testing.assert_close(model.score(h, pos, cols), dense[pos, cols])


def test_aae_dense_block_and_touched_columns_paths_agree_in_value_and_gradient(monkeypatch):
    """score() takes a dense-block path for small blocks and a touched-columns path for large ones."""
    torch.manual_seed(1)
    model = AAE(10, 30, AAEParams()).eval()  # no dropout: both passes see the same code
    x = torch.randn(6, 10)
    pos = torch.tensor([0, 5, 5, 2, 0, 3])
    cols = torch.tensor([29, 0, 4, 4, 7, 0])
    runs = []
    for limit in (1 << 30, 0):  # everything dense, then nothing dense
        monkeypatch.setattr(aae_mod, "DENSE_BLOCK", limit)
        model.zero_grad()
        out = model.score(model.hidden(x), pos, cols)
        (out * torch.arange(1.0, 7.0)).sum().backward()
        runs.append((out.detach(), model.out_weight.grad.clone(), model.out_bias.grad.clone()))
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b)
    assert runs[0][1][1].abs().sum() == 0  # a column no pair touches gets no gradient


def test_encode_rows_then_score_pairs_equals_predict_autoencoder():
    inputs = sp.random(40, 8, density=0.3, format="csr", random_state=3)
    data = AutoencoderData(inputs)
    model = AAE(8, 25, AAEParams())
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 40, 300), rng.integers(0, 25, 300)
    codes = encode_rows(model, data, np.arange(40))
    np.testing.assert_allclose(score_pairs(model, codes, rows, cols, pair_chunk=64), predict_autoencoder(model, data, rows, cols), rtol=1e-5, atol=1e-6)


def test_grad_clip_applies_the_max_norm_each_step(monkeypatch):
    inputs = sp.random(50, 6, density=0.5, format="csr", random_state=4)
    targets = sp.random(50, 12, density=0.5, format="csr", random_state=5)
    targets.data *= 100.0  # huge targets -> gradient norms far above the clip
    seen: list[float] = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, **kw):
        params = list(params)
        norm = real(params, max_norm, **kw)
        seen.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    for clip in (0.0, 0.5):
        model = AAE(6, 12, AAEParams(epochs=2, batch_size=10, dropout=0.0, grad_clip=clip))
        fit_autoencoder(model, AutoencoderData(inputs), targets, seed=0)
        if clip == 0.0:
            assert seen == []  # off by default
    assert len(seen) == 2 * 5 and max(seen) <= 0.5 + 1e-4


def test_fit_autoencoder_learns_sparse_targets():
    rng = np.random.default_rng(0)
    n_rows, n_in, n_out = 120, 20, 40
    inputs = sp.random(n_rows, n_in, density=0.3, format="csr", random_state=1)
    w = rng.normal(size=(n_in, n_out))
    full = inputs @ w
    mask = sp.random(n_rows, n_out, density=0.2, format="csr", random_state=2)
    mask.data[:] = 1.0
    targets = mask.multiply(full).tocsr()
    data = AutoencoderData(inputs)
    model = AAE(n_in, n_out, AAEParams(epochs=60, batch_size=20, dropout=0.0, weight_decay=0.0, lr=3e-3))
    losses = fit_autoencoder(model, data, targets, seed=0)
    assert losses[-1] < 0.3 * losses[0]
    coo = targets.tocoo()
    pred = predict_autoencoder(model, data, coo.row, coo.col)
    assert np.mean((pred - coo.data) ** 2) < 0.5 * np.mean(coo.data ** 2)


def test_base_model_mean_and_popularity():
    cols = np.array([0, 0, 1, 2, 2, 2])
    y = np.array([4.0, 2.0, 5.0, 1.0, 1.0, 4.0])
    b = BaseModel(4, "explicit").fit(cols, y, n_rows=3)
    np.testing.assert_allclose(b.values, [3.0, 5.0, 2.0, y.mean()])
    lab = np.array([1.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    p = BaseModel(3, "implicit").fit(cols, lab, n_rows=4)
    np.testing.assert_allclose(1 / (1 + np.exp(-p.values)), [0.25, 0.25, 0.5])


def test_pair_models_with_side_info_and_group_heads():
    rows = torch.tensor([0, 1, 2, 3])
    cols = torch.tensor([5, 4, 3, 2])
    groups = torch.tensor([0, 1, 1, 0])
    rs, cs = torch.randn(4, 3), torch.randn(4, 2)
    for cls, params in ((MF, MFParams()), (MLP, MLPParams()), (NCF, NCFParams())):
        m = cls(4, 6, params, n_groups=2, d_row_side=3, d_col_side=2)
        m.init_output_bias(3.5)
        out = m(rows, cols, groups, rs, cs)
        assert out.shape == (4,)
        assert torch.isfinite(out).all()


def test_xavier_init_zero_biases_and_bounded_weights_torch_init_differs():
    """init="xavier" (the authors' ae.py): Xavier-uniform weights, every bias zero, the output layer included."""
    torch.manual_seed(0)
    model = AAE(30, 70, AAEParams(init="xavier", side_info=True), d_row_side=4, d_col_side=3)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 7  # encoder 2, decoder 1, two side encoders of 2 (the rating encoder's stack)
    for w, b in [(m.weight, m.bias) for m in linears] + [(model.out_weight, model.out_bias)]:
        bound = (6.0 / (w.shape[0] + w.shape[1])) ** 0.5
        assert float(w.detach().abs().max()) <= bound + 1e-7
        assert float(w.detach().abs().max()) > 0.5 * bound  # spread over the Xavier range, not a tiny init
        assert torch.count_nonzero(b) == 0
    torch.manual_seed(0)
    other = AAE(30, 70, AAEParams(init="torch"))
    assert torch.count_nonzero(other.out_bias) > 0
    assert float(other.out_weight.detach().abs().max()) <= 1 / 256**0.5 + 1e-7  # PyTorch's default bound 1/sqrt(fan_in)


def test_lr_schedule_cosine_anneals_each_epoch_and_none_keeps_the_rate(monkeypatch):
    inputs = sp.random(40, 6, density=0.5, format="csr", random_state=4)
    targets = sp.random(40, 9, density=0.5, format="csr", random_state=5)
    seen: list[float] = []
    real_step = torch.optim.Adam.step

    def spy(self, *a, **kw):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    epochs, lr = 4, 1e-2
    for schedule in ("none", "cosine"):
        seen.clear()
        model = AAE(6, 9, AAEParams(epochs=epochs, batch_size=20, lr=lr, lr_schedule=schedule))
        fit_autoencoder(model, AutoencoderData(inputs), targets, seed=0)
        per_epoch = seen[::2]  # 40 rows / batch 20 = 2 steps an epoch
        assert len(seen) == 2 * epochs
        expected = [lr] * epochs if schedule == "none" else [lr * (1 + np.cos(np.pi * e / epochs)) / 2 for e in range(epochs)]
        np.testing.assert_allclose(per_epoch, expected, rtol=1e-6)


def test_side_encoders_are_the_rating_encoders_tanh_stack_or_one_linear():
    stack = AAE(10, 20, AAEParams(side_info=True), d_row_side=5, d_col_side=3)
    kinds = [type(m).__name__ for m in stack.row_side.net]
    assert kinds == ["Linear", "Tanh", "Linear", "Tanh"]
    assert (stack.row_side.net[0].in_features, stack.row_side.net[0].out_features, stack.row_side.net[2].out_features) == (5, 256, 128)
    linear = AAE(10, 20, AAEParams(side_info=True, side_encoder="linear"), d_row_side=5, d_col_side=3)
    assert [type(m).__name__ for m in linear.col_side.net] == ["Linear"] and linear.col_side.net[0].out_features == 128


def test_score_pairs_chunk_size_changes_no_bit():
    """Each pair's output is its own dot product: any chunking of the pairs gives the same bits (the default chunk
    is a speed choice only)."""
    torch.manual_seed(0)
    model = AAE(8, 300, AAEParams())
    codes = torch.randn(500, 256)
    rng = np.random.default_rng(1)
    pos, cols = rng.integers(0, 500, 20_000), rng.integers(0, 300, 20_000)
    whole = score_pairs(model, codes, pos, cols, pair_chunk=20_000)
    for chunk in (7, 4096, 16384):
        np.testing.assert_array_equal(score_pairs(model, codes, pos, cols, pair_chunk=chunk), whole)
