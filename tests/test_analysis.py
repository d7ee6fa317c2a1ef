"""The paper's analyses on a hand-built model whose answers are known in closed form.

The model: absolute positions with zero position embeddings; every non-meta
token embeds to u = (+1, -1, +1, ...), the meta-token to w = (+1, +1, -1, -1, ...)
(both mean 0, variance 1, orthogonal, so LayerNorm leaves them unchanged).
Every block's output projections are zero, so each layer sees the embeddings.
Self-attention queries and keys are a*d and b*d at the meta-token and 0
elsewhere (d = all ones): non-meta rows attend uniformly; a meta row at
position p gives each of its m meta keys the logit s = a*b*sqrt(hs) and the
other p+1-m keys 0, so its entropy is log Z - m*s*e^s/Z with Z = m*e^s + p+1-m.
"""

from __future__ import annotations

import math

import pytest
import torch

from metabench.analysis import attention_stats, induction_loss, residual_cosine
from metabench.model.configuration_meta import MetaConfig
from metabench.model.model import GPTConfig
from metabench.model.modeling_meta import MetaForCausalLM

C, H, VOCAB, META = 64, 2, 50, 49
A, B = 2.0, 0.5


def hand_built() -> MetaForCausalLM:
    cfg = GPTConfig(vocab_size=VOCAB, block_size=64, n_layer=2, n_head=H, n_embd=C, meta_token_id=META,
                    position_encoding="absolute")
    model = MetaForCausalLM(MetaConfig.from_gpt_config(cfg)).eval()
    u = torch.tensor([(-1.0) ** i for i in range(C)])
    w = torch.tensor([1.0 if (i // 2) % 2 == 0 else -1.0 for i in range(C)])
    d = torch.ones(C)
    with torch.no_grad():
        gpt = model.model
        gpt.wte.weight[:] = u
        gpt.wte.weight[META] = w
        gpt.wpe.weight.zero_()
        for block in gpt.h:
            for lin in (block.attn.c_proj, block.mlp.c_proj, block.meta_attn.c_proj):
                lin.weight.zero_()
                lin.bias.zero_()
            wq = A * torch.outer(d, w) / C  # q(w) = A d, q(u) = 0
            wk = B * torch.outer(d, w) / C
            block.attn.c_attn.weight[:] = torch.cat([wq, wk, torch.zeros(C, C)])
            block.attn.c_attn.bias.zero_()
    return model


SEQ = [1, 2, META, 3, 4, 5, META, 6, META, 7, 8, 9, 10, META, 11, 12, 13, 14, 15, META, 16, 17]


def expected_entropies() -> tuple[float, float]:
    s = A * B * math.sqrt(C // H)
    meta, other = [], []
    m = 0
    for p, t in enumerate(SEQ):
        if t == META:
            m += 1
        if p == 0:
            continue
        if t == META:
            z = m * math.exp(s) + (p + 1 - m)
            meta.append(math.log(z) - m * s * math.exp(s) / z)
        else:
            other.append(math.log(p + 1))
    return sum(meta) / len(meta), sum(other) / len(other)


def test_attention_entropy_matches_closed_form():
    stats = attention_stats(hand_built(), [SEQ], META)
    want_meta, want_other = expected_entropies()
    assert stats["rows"] == {"meta": 5, "other": len(SEQ) - 6}
    for row in stats["per_head"]:
        assert row["entropy_meta"] == pytest.approx(want_meta, abs=1e-5)
        assert row["entropy_other"] == pytest.approx(want_other, abs=1e-5)
    assert stats["mean_entropy_drop"] == pytest.approx(want_other - want_meta, abs=1e-5)
    assert stats["mean_entropy_drop"] > 0.5  # meta rows are sharper, by construction
    # Max logits: s at meta rows, 0 elsewhere.
    # (LayerNorm's eps scales both q and k by (1 + 1e-5) ** -0.5, hence rel=1e-4)
    assert stats["mean_max_logit_diff"] == pytest.approx(A * B * math.sqrt(C // H), rel=1e-4)


def test_residual_cosine_matches_embeddings():
    window = 3
    rows = residual_cosine(hand_built(), [SEQ], META, window=window)
    assert [r["layer"] for r in rows] == [0, 1, 2]  # embeddings, then each block's output
    meta_cos, other_cos = [], []
    for p in range(window, len(SEQ)):
        prev = SEQ[p - window : p]
        same = sum((t == META) == (SEQ[p] == META) for t in prev) / window  # cos is 1 with its own kind, 0 across
        (meta_cos if SEQ[p] == META else other_cos).append(same)
    for r in rows:
        assert r["cos_meta"] == pytest.approx(sum(meta_cos) / len(meta_cos), abs=1e-5)
        assert r["cos_other"] == pytest.approx(sum(other_cos) / len(other_cos), abs=1e-5)



@pytest.mark.slow
def test_induction_loss_tells_a_copying_model_from_one_that_cannot():
    """A 2 x 64 model trained (~15 s) on spans said twice copies the second saying; untrained, it cannot."""
    import random

    import torch.nn.functional as F

    from metabench.reference_tokenizer import BUNDLED
    from metabench.tokenizer import load_tokenizer
    from metabench.words import KEY_WORDS

    tok = load_tokenizer(BUNDLED)
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=4096, block_size=64, n_layer=2, n_head=2, n_embd=64, meta_token_id=1)
    model = MetaForCausalLM(MetaConfig.from_gpt_config(cfg))
    blind = induction_loss(model.eval(), tok, spans=8)
    assert abs(blind["second"] - blind["first"]) < 0.1 and blind["first"] > 7.0, blind  # ~log(4096) = 8.3
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(1)  # other spans than induction_loss's own (seed 0)
    model.train()
    for _ in range(400):
        rows = [tok.encode(" " + " ".join(rng.choices(KEY_WORDS, k=20)) + ".") for _ in range(16)]
        n = min(len(r) for r in rows)
        x = torch.tensor([r[:n] + r[:n] for r in rows])
        loss = F.cross_entropy(model(x[:, :-1]).logits.reshape(-1, 4096), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    copies = induction_loss(model.eval(), tok, spans=8)
    assert copies["second"] < 0.25 * copies["first"], copies
