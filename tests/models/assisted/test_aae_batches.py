"""AAE inputs densified per batch from CSR arrays, and per-pair predictions (linear in the pairs)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from cdrec.models.assisted.aae import AAE, AAEParams, AutoencoderData, predict_autoencoder


def test_sparse_batches_equal_the_dense_rows() -> None:
    rng = np.random.default_rng(0)
    coo = sp.random(400, 60, density=0.05, random_state=0, dtype=np.float32).tocoo()
    dup = sp.coo_matrix((coo.data[:10], (coo.row[:10], coo.col[:10])), shape=coo.shape)  # repeated entries are summed
    mat = sp.csr_matrix((np.r_[coo.data, dup.data], (np.r_[coo.row, dup.row], np.r_[coo.col, dup.col])), shape=coo.shape)
    data = AutoencoderData(mat)
    rows = rng.integers(0, 400, 150)
    data.dense_ok = False
    sparse_x = data.batch(rows, torch.device("cpu"))[0]
    data.dense_ok = True
    assert torch.equal(sparse_x, data.batch(rows, torch.device("cpu"))[0])
    assert torch.equal(sparse_x, torch.as_tensor(mat.toarray()[rows]))


def test_pair_predictions_equal_the_block_output() -> None:
    torch.manual_seed(0)
    model = AAE(30, 50, AAEParams()).eval()
    mat = sp.random(80, 30, density=0.1, random_state=1, format="csr", dtype=np.float32)
    data = AutoencoderData(mat)
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 80, 700), rng.integers(0, 50, 700)
    got = predict_autoencoder(model, data, rows, cols, pair_chunk=128)
    with torch.no_grad():
        x = torch.as_tensor(mat.toarray())
        dense = (model.hidden(x) @ model.out_weight.T + model.out_bias).numpy()
    np.testing.assert_allclose(got, dense[rows, cols], rtol=1e-5, atol=1e-6)
