"""Bad checkpoints and configs fail loudly, with ValueError saying what to fix."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM

import metabench.model
from metabench.model.configuration_meta import MetaConfig
from metabench.model.modeling_meta import MetaForCausalLM


@pytest.fixture
def checkpoint(hf_model, tmp_path):
    hf_model().save_pretrained(tmp_path)
    return tmp_path


def edit_config(directory, **changes):
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


@pytest.fixture(params=["class", "auto"])
def load(request):
    metabench.model.register()
    return MetaForCausalLM.from_pretrained if request.param == "class" else AutoModelForCausalLM.from_pretrained


def test_truncated_weights(checkpoint, load):
    weights = checkpoint / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors is truncated.*re-save"):
        load(checkpoint)


def test_truncated_header(checkpoint, load):
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ValueError, match="truncated"):
        load(checkpoint)


def test_corrupt_header(checkpoint, load):
    weights = checkpoint / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:20] = b"\xff" * 12
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        load(checkpoint)


def test_missing_weights(checkpoint, load):
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="no model.safetensors.*save_pretrained"):
        load(checkpoint)


def test_config_with_other_shapes(checkpoint, load):
    edit_config(checkpoint, hidden_size=128)
    with pytest.raises(
        ValueError,
        match=r"do not match config.json's shapes.*c_attn.weight: weights \(192, 64\) vs config \(384, 128\)",
    ):
        load(checkpoint)


def test_config_with_meta_attention_the_weights_lack(hf_model, tmp_path, load):
    hf_model(meta_attention=False).save_pretrained(tmp_path)
    edit_config(tmp_path, meta_attention=True)
    with pytest.raises(ValueError, match="tensors are missing.*meta_attn.*restore the config"):
        load(tmp_path)


def test_config_without_meta_attention_for_weights_that_have_it(checkpoint, load):
    edit_config(checkpoint, meta_attention=False)
    with pytest.raises(ValueError, match="not part of this model.*meta_attn"):
        load(checkpoint)


def test_config_without_meta_token_id(checkpoint, load):
    edit_config(checkpoint, meta_token_id=None)
    with pytest.raises(ValueError, match="meta_token_id is not set.*or turn meta_attention off"):
        load(checkpoint)


def test_meta_config_errors():
    MetaConfig()  # must construct: transformers diffs saved configs against it
    with pytest.raises(ValueError, match="meta_token_id is not set"):
        MetaForCausalLM(MetaConfig(vocab_size=300))
    with pytest.raises(ValueError, match="multiple of n_head"):
        MetaConfig(vocab_size=300, meta_token_id=1, hidden_size=65)
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        MetaConfig(vocab_size=300, meta_token_id=1, tie_word_embeddings=False)
    with pytest.raises(ValueError, match="keys this model does not implement"):
        MetaConfig(
            vocab_size=300, meta_token_id=1, rope_parameters={"rope_type": "default", "partial_rotary_factor": 0.5}
        )


def test_inputs_embeds_is_an_error(hf_model):
    import torch

    with pytest.raises(ValueError, match="needs input_ids"):
        hf_model()(inputs_embeds=torch.zeros(1, 3, 64))
