"""RoPE/YaRN frequencies against transformers' own, and YaRN extension of a checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from metabench.model.configuration_meta import MetaConfig
from metabench.model.extend import extend
from metabench.model.modeling_meta import MetaForCausalLM
from metabench.model.rope import RopeConfig, rope_frequencies


def transformers_frequencies(head_dim: int, rope: RopeConfig, window: int) -> tuple[torch.Tensor, float]:
    config = MetaConfig(
        hidden_size=head_dim * 4,
        num_attention_heads=4,
        meta_token_id=1,
        max_position_embeddings=window,
        rope_parameters=rope.to_dict(),
    )
    if rope.rope_type == "default":  # transformers keeps the default in each model file; this is Llama's
        exponents = torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim
        return 1.0 / (config.rope_parameters["rope_theta"] ** exponents), 1.0
    return ROPE_INIT_FUNCTIONS["yarn"](config, torch.device("cpu"))


YARN_CASES = [
    (64, 10000.0, 4.0, 1024),  # the paper: 1024 -> 4096
    (64, 10000.0, 8.0, 1024),  # 1024 -> 8192
    (64, 10000.0, 2.0, 1024),
    (32, 10000.0, 2.0, 64),  # the tiny test model
    (128, 500000.0, 16.0, 8192),
    (64, 10000.0, 1.0, 1024),  # factor 1: YaRN is the identity
]


@pytest.mark.parametrize("head_dim,theta,factor,window", YARN_CASES)
def test_yarn_matches_transformers(head_dim, theta, factor, window):
    rope = RopeConfig(rope_type="yarn", rope_theta=theta, factor=factor, original_max_position_embeddings=window)
    ours, our_factor = rope_frequencies(head_dim, rope)
    theirs, their_factor = transformers_frequencies(head_dim, rope, int(window * factor))
    assert ours.shape == (head_dim // 2,)
    torch.testing.assert_close(ours, theirs.float(), atol=1e-6, rtol=0)
    assert our_factor == pytest.approx(their_factor, abs=1e-6)
    if factor > 1:
        assert our_factor == pytest.approx(0.1 * torch.log(torch.tensor(factor)).item() + 1.0)
        assert ours[-1] == pytest.approx(rope_frequencies(head_dim, RopeConfig(rope_theta=theta))[0][-1] / factor)
        assert ours[0] == pytest.approx(1.0)  # the fastest dim is never interpolated


@pytest.mark.parametrize("head_dim,theta", [(32, 10000.0), (64, 10000.0), (128, 500000.0)])
def test_default_matches_transformers(head_dim, theta):
    rope = RopeConfig(rope_theta=theta)
    ours, our_factor = rope_frequencies(head_dim, rope)
    theirs, their_factor = transformers_frequencies(head_dim, rope, 1024)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert our_factor == their_factor == 1.0


@pytest.mark.parametrize(
    "params,match",
    [
        ({"rope_type": "linear", "factor": 2.0}, "not supported"),
        ({"rope_type": "yarn", "factor": 2.0}, "original_max_position_embeddings"),
        ({"rope_type": "yarn", "original_max_position_embeddings": 64}, "factor"),
        ({"rope_type": "yarn", "factor": 0.5, "original_max_position_embeddings": 64}, "factor"),
        ({"rope_type": "default", "mscale": 1.0}, "mscale"),
        ({"rope_type": "default", "factor": 2.0}, "set rope_type to 'yarn'"),
    ],
)
def test_bad_rope_parameters_are_errors(params, match):
    with pytest.raises(ValueError, match=match):
        RopeConfig.from_dict(params)


def test_rope_config_roundtrips_transformers_format():
    rope = RopeConfig(rope_type="yarn", factor=4.0, original_max_position_embeddings=1024)
    assert RopeConfig.from_dict(rope.to_dict()) == rope
    assert rope.to_dict() == {
        "rope_type": "yarn",
        "rope_theta": 10000.0,
        "factor": 4.0,
        "original_max_position_embeddings": 1024,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
    }


def test_extend_writes_yarn_checkpoint_that_runs_at_twice_the_window(hf_model, ids_with_meta, tmp_path):
    model = hf_model()
    window = model.config.max_position_embeddings
    model.save_pretrained(tmp_path / "src")
    (tmp_path / "src" / "tokenizer.json").write_text("{}")  # travels with the checkpoint

    out = extend(tmp_path / "src", tmp_path / "yarn", factor=2)

    config = json.loads((out / "config.json").read_text())
    assert config["max_position_embeddings"] == 2 * window
    assert config["rope_parameters"] == {
        "rope_type": "yarn",
        "rope_theta": 10000.0,
        "factor": 2.0,
        "original_max_position_embeddings": window,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
    }
    assert (out / "tokenizer.json").is_file() and (out / "modeling_meta.py").is_file()

    extended = MetaForCausalLM.from_pretrained(out).eval()
    for (name, a), b in zip(extended.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # the model's RoPE tables are transformers' YaRN for this config
    want, factor = ROPE_INIT_FUNCTIONS["yarn"](extended.config, torch.device("cpu"))
    torch.testing.assert_close(extended.model.rotary.inv_freq, want, atol=1e-6, rtol=0)
    assert extended.model.rotary.attention_factor == pytest.approx(factor)

    ids = ids_with_meta([list(range(5, 2 * window, 10))], 2 * window)
    with torch.no_grad():
        logits = extended(ids).logits
        generated = extended.generate(ids[:, :-8], max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert logits.shape == (1, 2 * window, model.config.vocab_size)
    assert torch.isfinite(logits).all()
    assert generated.shape == (1, 2 * window)
    with torch.no_grad():  # and YaRN really changed the positions
        assert not torch.allclose(logits, model(ids).logits)


def test_extend_refuses_absolute_positions_and_double_extension(hf_model, tmp_path):
    hf_model(position_encoding="absolute").save_pretrained(tmp_path / "abs")
    with pytest.raises(ValueError, match="RoPE"):
        extend(tmp_path / "abs", tmp_path / "out1", factor=2)
    hf_model().save_pretrained(tmp_path / "src")
    extend(tmp_path / "src", tmp_path / "x2", factor=2)
    with pytest.raises(ValueError, match="already extended"):
        extend(tmp_path / "x2", tmp_path / "x4", factor=2)
    with pytest.raises(ValueError, match="factor"):
        extend(tmp_path / "src", tmp_path / "half", factor=0.5)
