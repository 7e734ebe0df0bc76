"""NeuMF (He et al., WWW 2017): the scores and the loss are NeuMF's Eq. 12 on the concatenated MLP input."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cdrec.models import registry


def test_logits_are_eq12_on_the_concatenated_mlp_input():
    """``h^T [p^G * q^G ; MLP([p^M ; q^M])]`` for every candidate (the tower's first layer takes the user's
    half once per row), and the L2 term is every candidate's four squared embedding norms."""
    torch.manual_seed(0)
    model = registry.get("neumf").cls(7, 20, registry.build_params("neumf", {"dim": 6, "layers": [5, 3], "init_std": 0.5})).eval()
    users, items = torch.tensor([0, 3, 6]), torch.tensor([[1, 2, 19, 4], [0, 0, 5, 9], [7, 8, 1, 3]])
    ug, um = model.user_gmf(users)[:, None].expand(-1, 4, -1), model.user_mlp(users)[:, None].expand(-1, 4, -1)
    ig, im = model.item_gmf(items), model.item_mlp(items)
    expected = model.predict(torch.cat([ug * ig, model.tower(torch.cat([um, im], -1))], -1)).squeeze(-1)
    logits, l2 = model._logits(users, items)
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(model.score(users, items), expected)
    torch.testing.assert_close(l2, sum(t.pow(2).sum(-1) for t in (ug, um, ig, im)))
    batch = {"user": users, "pos": items[:, 0], "neg": items[:, 1]}
    bce = F.binary_cross_entropy_with_logits(expected[:, :2], torch.tensor([[1.0, 0.0]]).expand(3, -1))
    torch.testing.assert_close(model.loss(batch), bce + model.params.reg * l2[:, :2].mean())
