"""Sequential building blocks: the sampled InfoNCE normalizations and the attention dropout switch."""

from __future__ import annotations

import math

import pytest
import torch

from torch import nn

from cdrec.models.sequential.blocks import AttentionBlock, domain_info_nce, masked_sequence_mean, sampled_info_nce


def test_masked_sequence_mean_over_present_or_all_rows():
    loss = torch.tensor([[1.0, 3.0, 5.0], [2.0, 4.0, 6.0], [7.0, 7.0, 7.0]])
    weight = torch.tensor([[1, 1, 0], [0, 0, 1], [0, 0, 0]])
    # per-row means 2 and 6; the third row has no weighted position
    assert masked_sequence_mean(loss, weight).item() == pytest.approx(4.0)
    assert masked_sequence_mean(loss, weight, all_rows=True).item() == pytest.approx(8.0 / 3)


def test_sampled_info_nce_by_hand():
    # d = 1: logits are products; one row, two positions, one negative, tau = 0.5
    h = torch.tensor([[[1.0], [2.0]]])
    pos = torch.tensor([[[1.0], [0.5]]])
    neg = torch.tensor([[[0.0]]])
    weight = torch.tensor([[1, 1]])
    got = sampled_info_nce(h, pos, neg, torch.zeros(1, 1, dtype=torch.bool), weight, 0.5)
    per_pos = [-math.log(math.exp(x / 0.5) / (math.exp(x / 0.5) + 1.0)) for x in (1.0, 1.0)]
    assert got.item() == pytest.approx(sum(per_pos) / 2)
    # a seen negative leaves the softmax: the loss of every position is 0
    seen = torch.ones(1, 1, dtype=torch.bool)
    assert sampled_info_nce(h, pos, neg, seen, weight, 0.5).item() == pytest.approx(0.0, abs=1e-7)
    # all_rows: a second row without targets halves the batch mean
    h2, pos2 = torch.cat([h, h]), torch.cat([pos, pos])
    neg2, seen2 = torch.cat([neg, neg]), torch.zeros(2, 1, dtype=torch.bool)
    w2 = torch.tensor([[1, 1], [0, 0]])
    assert sampled_info_nce(h2, pos2, neg2, seen2, w2, 0.5).item() == pytest.approx(got.item())
    assert sampled_info_nce(h2, pos2, neg2, seen2, w2, 0.5, all_rows=True).item() == pytest.approx(got.item() / 2)


@pytest.mark.parametrize("attn_dropout,expected", [(None, 0.3), (0.0, 0.0)])
def test_attention_probability_dropout_is_separate_from_the_output_dropout(attn_dropout, expected):
    block = AttentionBlock(8, 2, 0.3, attn_dropout)
    assert block.mha.dropout == expected and block.drop.p == 0.3
    # with attn_dropout = 0 and output dropout off, training mode is deterministic
    block = AttentionBlock(8, 2, 0.0, attn_dropout if attn_dropout is not None else 0.5).train()
    x = torch.randn(2, 4, 8)
    valid = torch.ones(2, 4, dtype=torch.bool)
    mask = torch.ones(2, 1, 4, 4, dtype=torch.bool).tril()
    a, b = block(x, x, mask, valid, valid), block(x, x, mask, valid, valid)
    assert torch.equal(a, b) == (attn_dropout == 0.0)


def test_domain_info_nce_per_position_draws_match_per_sequence_with_one_target_per_row():
    """With one target position per sequence the two samplers consume the same random draws (one
    row of negatives per sequence = per target position), so the losses agree; with several
    targets per sequence the per-position draws differ by position and the losses differ."""
    torch.manual_seed(0)
    emb = nn.Embedding(41, 6)
    h = torch.randn(3, 4, 6)
    targets = torch.randint(1, 41, (3, 4))
    seen = targets.clone()
    one = torch.zeros(3, 4, dtype=torch.bool)
    one[:, 2] = True
    many = torch.ones(3, 4, dtype=torch.bool)
    ranges = [(0, 20), (20, 40)]
    out = {}
    for name, w in (("one", one), ("many", many)):
        for per in (False, True):
            torch.manual_seed(9)
            out[name, per] = float(domain_info_nce(h, targets, [w], seen, emb, ranges, 5, 0.75, per_position=per).detach())
    assert out["one", True] == pytest.approx(out["one", False], rel=1e-6)
    assert out["many", True] != pytest.approx(out["many", False], rel=1e-4)
