"""Meta-attention (gathered, sparse) against the paper's dense-mask definition."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from metabench.model.model import BlockInputs, MetaAttention, MetaGPT, gather_meta
from metabench.model.rope import RopeConfig, Rotary, apply_rotary

# per row: meta positions; row 2 has none, rows differ in count
META_ROWS = [[3, 7, 8, 20], [0, 15], [], [1, 2, 4, 9, 10, 30]]
T = 32


def dense_meta_attention(
    attn: MetaAttention, x: torch.Tensor, is_meta: torch.Tensor, rotary: Rotary | None, positions: torch.Tensor
) -> torch.Tensor:
    """The paper's definition: softmax(QK^T/sqrt(d) + causal + P)V with a dense T x T mask P."""
    B, T, C = x.shape
    hs = C // attn.n_head
    q, k, v = attn.c_attn(attn.ln(x)).split(C, dim=2)
    q, k, v = (t.view(B, T, attn.n_head, hs).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
    if rotary is not None:
        cos, sin = rotary(positions, x.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    allowed = is_meta[:, :, None] & is_meta[:, None, :] & causal  # (B, T, T)
    P = torch.zeros(B, T, T).masked_fill(~allowed, float("-inf"))
    scores = q @ k.transpose(-2, -1) / math.sqrt(hs) + P[:, None]  # (B, nh, T, T)
    weights = torch.nan_to_num(F.softmax(scores, dim=-1), nan=0.0)  # non-meta rows: all -inf -> 0
    y = (weights @ v).transpose(1, 2).reshape(B, T, C)
    return attn.c_proj(y) * is_meta[..., None]  # rows of non-meta positions contribute nothing


def gathered(attn: MetaAttention, x: torch.Tensor, is_meta: torch.Tensor, rotary: Rotary | None) -> torch.Tensor:
    positions = torch.arange(x.size(1)).expand(x.size(0), -1)
    meta = gather_meta(is_meta, positions)
    meta_rope = rotary(meta.positions, x.dtype) if rotary is not None else None
    return attn(x, BlockInputs(rope=None, mask=None, meta=meta, meta_rope=meta_rope))


@pytest.mark.parametrize("use_rope", [True, False])
def test_matches_dense_mask_reference(gpt_config, sharpen, ids_with_meta, meta_id, use_rope):
    config = gpt_config()
    torch.manual_seed(0)
    attn = sharpen(MetaAttention(config)).eval()
    rotary = Rotary(config.head_dim, RopeConfig()) if use_rope else None
    x = torch.randn(len(META_ROWS), T, config.n_embd)
    is_meta = ids_with_meta(META_ROWS, T) == meta_id
    positions = torch.arange(T).expand(len(META_ROWS), -1)

    got = gathered(attn, x, is_meta, rotary)
    want = dense_meta_attention(attn, x, is_meta, rotary, positions)

    assert want.abs().max() > 1.0  # sharpened: the comparison is not between near-zeros
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert torch.equal(got[~is_meta], torch.zeros_like(got[~is_meta]))
    assert torch.equal(got[2], torch.zeros_like(got[2]))  # the row without meta-tokens


def test_no_gradient_from_non_meta_tokens(gpt_config, sharpen, ids_with_meta, meta_id):
    config = gpt_config()
    torch.manual_seed(0)
    attn = sharpen(MetaAttention(config))
    rotary = Rotary(config.head_dim, RopeConfig())
    x = torch.randn(len(META_ROWS), T, config.n_embd, requires_grad=True)
    is_meta = ids_with_meta(META_ROWS, T) == meta_id

    y = gathered(attn, x, is_meta, rotary)
    (y * torch.randn_like(y)).sum().backward()

    assert torch.count_nonzero(x.grad[~is_meta]) == 0  # exactly zero, not small
    assert torch.count_nonzero(x.grad[is_meta]) > 0


def test_projects_only_the_gathered_rows(gpt_config, ids_with_meta):
    """Efficiency: Q/K/V and O see (B, M) meta rows, never all T positions."""
    config = gpt_config()
    model = MetaGPT(config).eval()
    seen: list[tuple[int, ...]] = []
    for block in model.h:
        block.meta_attn.c_attn.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
        block.meta_attn.c_proj.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    ids = ids_with_meta(META_ROWS, T)
    model(ids)
    M = max(len(r) for r in META_ROWS)
    assert seen == [(len(META_ROWS), M, config.n_embd)] * (2 * config.n_layer)


def test_model_without_meta_tokens_skips_meta_attention(gpt_config, sharpen, ids_with_meta):
    """No meta-token anywhere: the model equals the same weights without meta-attention."""
    torch.manual_seed(0)
    with_meta = sharpen(MetaGPT(gpt_config())).eval()
    without = MetaGPT(gpt_config(meta_attention=False)).eval()
    without.load_state_dict({k: v for k, v in with_meta.state_dict().items() if ".meta_attn." not in k}, strict=True)
    ids = ids_with_meta([[], []], T)
    torch.testing.assert_close(with_meta(ids)[0], without(ids)[0], atol=0, rtol=0)
    ids = ids_with_meta([[5], []], T)
    assert not torch.allclose(with_meta(ids)[0][0, 5:], without(ids)[0][0, 5:])
