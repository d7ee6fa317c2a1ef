"""The bare model: paper size, determinism, the zero-positional-encoding ablation."""

from __future__ import annotations

import pytest
import torch

from metabench.model.model import PAPER_GPT2, GPTConfig, MetaGPT, lm_loss


@pytest.mark.parametrize("meta_attention,millions", [(True, 152), (False, 124)])
def test_paper_size(meta_attention, millions):
    """The paper: about 152M parameters with meta-attention, 124M without."""
    from dataclasses import replace

    with torch.device("meta"):
        model = MetaGPT(replace(PAPER_GPT2, meta_attention=meta_attention))
    assert model.num_params() / 1e6 == pytest.approx(millions, abs=1.0)


def test_same_seed_same_model(gpt_config):
    models = []
    for _ in range(2):
        torch.manual_seed(7)
        models.append(MetaGPT(gpt_config()))
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_lm_loss_ignores_meta_targets(meta_id):
    logits = torch.randn(2, 5, 300)
    targets = torch.tensor([[1, meta_id, 2, -100, 3], [meta_id, meta_id, 4, 5, 6]])
    keep = (targets != meta_id) & (targets != -100)
    want = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(lm_loss(logits, targets, meta_id), want)


@pytest.mark.parametrize("position_encoding", ["rope", "absolute"])
def test_zero_position_ablation_acts_only_through_meta_positions(gpt_config, sharpen, ids_with_meta, position_encoding):
    torch.manual_seed(0)
    plain = sharpen(MetaGPT(gpt_config(position_encoding=position_encoding))).eval()
    ablated = MetaGPT(gpt_config(position_encoding=position_encoding, zero_meta_position=True)).eval()
    ablated.load_state_dict(plain.state_dict())

    with torch.no_grad():
        # no meta-token: the ablation has nothing to act on
        ids = ids_with_meta([[], []], 40)
        assert torch.equal(plain(ids)[0], ablated(ids)[0])

        # a meta-token at 12: everything before it is unchanged, it and what follows change
        ids = ids_with_meta([[12, 30], [12]], 40)
        a, b = plain(ids)[0], ablated(ids)[0]
    assert torch.equal(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12], b[:, 12])
    assert not torch.allclose(a[:, 13:], b[:, 13:])


def test_zero_position_ablation_is_position_zero_for_rope(gpt_config, sharpen, ids_with_meta, meta_id):
    """For RoPE, 'no positional encoding' = rotation angle 0 = position id 0 at meta-tokens."""
    torch.manual_seed(0)
    plain = sharpen(MetaGPT(gpt_config())).eval()
    ablated = MetaGPT(gpt_config(zero_meta_position=True)).eval()
    ablated.load_state_dict(plain.state_dict())
    ids = ids_with_meta([[3, 20], [7]], 32)
    positions = torch.arange(32).expand(2, -1).masked_fill(ids == meta_id, 0)
    with torch.no_grad():
        want = plain.lm_head(plain.hidden_states(ids, positions=positions))
        assert torch.equal(ablated(ids)[0], want)


def test_absolute_positions_past_the_window_are_an_error(gpt_config):
    model = MetaGPT(gpt_config(position_encoding="absolute", block_size=16))
    with pytest.raises(ValueError, match="block_size 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_rope_runs_past_the_window(gpt_config):
    model = MetaGPT(gpt_config(block_size=16)).eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.zeros(1, 40, dtype=torch.long))[0]).all()


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"meta_token_id": None}, "meta_token_id"),
        ({"meta_token_id": None, "meta_attention": False, "zero_meta_position": True}, "meta_token_id"),
        ({"meta_token_id": 300}, "outside the vocabulary"),
        ({"n_embd": 65}, "multiple of n_head"),
        ({"n_embd": 66, "n_head": 2}, "even head dim"),
        ({"position_encoding": "alibi"}, "position_encoding"),
    ],
)
def test_bad_configs_are_errors(overrides, match):
    base = dict(vocab_size=300, block_size=64, n_layer=2, n_head=2, n_embd=64, meta_token_id=299)
    with pytest.raises(ValueError, match=match):
        GPTConfig(**{**base, **overrides})
