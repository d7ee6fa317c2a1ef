"""A model's window (1x) read from every config shape users have, and --rope composed with it.

The configs are written as the hub ships them (old spellings included:
`rope_scaling`, `type`, a top-level `rope_theta`), and each is turned into a
real tiny random transformers model, so the same folders serve `run`, the
lm-eval tasks and `generate --context-from`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from metabench.errors import MetabenchError
from metabench.window import extend, read_window

LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 32,
         "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "eos_token_id": 0, "bos_token_id": None}
LLAMA3 = {"rope_type": "llama3", "factor": 4.0, "original_max_position_embeddings": 1024,
          "low_freq_factor": 1.0, "high_freq_factor": 4.0}
# name -> (config.json as shipped, expected 1x, expected pre-extension window, words the source must hold)
SHAPES: dict[str, tuple[dict, int, int, str]] = {
    "plain": ({**LLAMA, "max_position_embeddings": 1024, "rope_theta": 500000.0}, 1024, 1024, "max_position_embeddings 1024"),
    "llama3": ({**LLAMA, "max_position_embeddings": 4096, "rope_theta": 500000.0, "rope_scaling": LLAMA3},
               4096, 1024, "llama3 scaling of 1024"),
    "yarn": ({**LLAMA, "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "max_position_embeddings": 1024,
              "rope_theta": 1000000.0, "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}},
             4096, 1024, "YaRN factor 4"),
    "linear": ({**LLAMA, "max_position_embeddings": 1024, "rope_scaling": {"type": "linear", "factor": 2.0}}, 2048, 1024,
               "linear factor 2"),
    "dynamic": ({**LLAMA, "max_position_embeddings": 1024, "rope_scaling": {"type": "dynamic", "factor": 2.0}}, 2048, 1024,
                "dynamic factor 2"),
    "longrope": ({**LLAMA, "model_type": "phi3", "architectures": ["Phi3ForCausalLM"], "max_position_embeddings": 4096,
                  "original_max_position_embeddings": 1024, "rope_theta": 10000.0, "pad_token_id": 0,
                  "rope_scaling": {"type": "longrope", "short_factor": [1.0] * 16, "long_factor": [2.0] * 16}},
                 4096, 1024, "longrope scaling of 1024"),
    "sliding": ({**LLAMA, "model_type": "mistral", "architectures": ["MistralForCausalLM"], "max_position_embeddings": 4096,
                 "rope_theta": 10000.0, "sliding_window": 512}, 4096, 4096, "sliding window 512"),
    "learned": ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_positions": 1024, "n_embd": 64, "n_layer": 1,
                 "n_head": 2, "eos_token_id": 0, "bos_token_id": 0}, 1024, 1024, "learned positions"),
}


def build_shaped(out: Path, config: dict, tokenizer_dir: Path) -> Path:
    """A tiny random model whose config.json is exactly `config` (plus the vocabulary size)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from metabench.tokenizer import load_tokenizer

    out.mkdir(parents=True)
    shipped = {**config, "vocab_size": load_tokenizer(tokenizer_dir).backend.get_vocab_size()}
    (out / "config.json").write_text(json.dumps(shipped))
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(out)).save_pretrained(out)
    (out / "config.json").write_text(json.dumps(shipped))  # as shipped, not as transformers re-spells it
    for f in Path(tokenizer_dir).iterdir():
        shutil.copy(f, out / f.name)
    return out


@pytest.fixture(scope="module")
def shaped(tmp_path_factory, bytelevel_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shapes")
    return {name: build_shaped(root / name, cfg, bytelevel_dir) for name, (cfg, *_) in SHAPES.items()}


@pytest.mark.parametrize("name", list(SHAPES))
def test_one_x_of_each_config_shape(name, shaped):
    cfg, one_x, pretrained, words = SHAPES[name]
    window = read_window(json.loads((shaped[name] / "config.json").read_text()))
    assert (window.context, window.pretrained) == (one_x, pretrained)
    assert words in window.source
    assert window.positions == ("learned" if name == "learned" else "rope")
    assert window.sliding_window == (512 if name == "sliding" else None)


@pytest.mark.parametrize("name", list(SHAPES))
def test_lm_eval_tasks_take_the_same_one_x(name, shaped):
    from metabench.lm_eval.settings import resolve_context

    assert resolve_context({"pretrained": str(shaped[name])}) == SHAPES[name][1]


def test_nested_text_config_is_read():
    cfg = {"model_type": "gemma3", "text_config": {"max_position_embeddings": 131072, "rope_theta": 1e6,
                                                   "rope_scaling": {"rope_type": "linear", "factor": 8.0}}}
    window = read_window(cfg)
    assert window.context == 131072 * 8 and window.rope["rope_theta"] == 1e6


def _window(name: str):
    return read_window(SHAPES[name][0])


def test_rope_composes_with_the_configs_own_scaling():
    ext = extend(_window("llama3"), {"rope_type": "llama3", "factor": 8})
    assert ext.window == 8192  # 1024 pre-extension x 8
    assert ext.rope_parameters == {**LLAMA3, "factor": 8, "rope_theta": 500000.0}  # nothing unnamed reset
    assert ext.overrides["max_position_embeddings"] == 8192
    ext = extend(_window("yarn"), {"rope_type": "yarn", "factor": 8, "beta_fast": 16})
    assert ext.window == 8192 and ext.rope_parameters["rope_theta"] == 1e6 and ext.rope_parameters["beta_fast"] == 16
    ext = extend(_window("plain"), {"rope_type": "yarn", "factor": 2})
    assert ext.window == 2048 and ext.rope_parameters == {"rope_type": "yarn", "factor": 2, "rope_theta": 500000.0,
                                                         "original_max_position_embeddings": 1024}
    ext = extend(_window("linear"), {"rope_type": "linear", "factor": 4})
    assert ext.window == 4096 and "max_position_embeddings" not in ext.overrides  # linear scales the config's own 1024


@pytest.mark.parametrize("name, rope, message", [
    ("llama3", {"rope_type": "yarn", "factor": 2}, "already scales RoPE with llama3 (factor 4, 1024 -> 4096 tokens) and a "
     "model has one scaling; pass --rope llama3:factor=8 to stretch it to 8192 tokens"),
    ("yarn", {"rope_type": "linear", "factor": 2}, "pass --rope yarn:factor=8"),
    ("longrope", {"rope_type": "longrope", "factor": 2}, "cannot be stretched"),
    ("learned", {"rope_type": "yarn", "factor": 2}, "learned positions"),
    ("llama3", {"rope_type": "llama3", "factor": 2}, "gives 2048 tokens, no more than the 4096"),
    ("plain", {"rope_type": "yarn", "factor": 1}, "needs factor > 1"),
])
def test_rope_refusals_say_what_to_pass(name, rope, message):
    with pytest.raises(MetabenchError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        extend(_window(name), rope)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "metabench", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_run_and_generate_agree_on_one_x(shaped, tmp_path):
    """`run` on a llama3-scaled model takes 1x = 4096 and says so; `generate --context-from` the same."""
    r = _cli("run", "--quiet", "--model", f"hf:{shaped['llama3']}", "--tasks", "parity", "--samples", "1",
             "--lengths", "0.25x", "--dtype", "float32", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines()[0] == "1x = 4096 tokens (max_position_embeddings 4096 (llama3 scaling of 1024); pre-extension 1024)"
    model = json.loads((tmp_path / "run" / "summary.json").read_text())["model"]
    assert (model["context"], model["native_context"], model["window"], model["rope_type"]) == (4096, 1024, 4096, "llama3")
    assert "llama3 scaling of 1024" in model["context_source"]
    r = _cli("report", str(tmp_path / "run"), "--no-samples", "--out", str(tmp_path / "board" / "index.html"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert model["context_source"] in (tmp_path / "board" / "index.html").read_text()
    r = _cli("generate", "--context-from", str(shaped["llama3"]), "--tasks", "parity", "--samples", "1",
             "--lengths", "0.25x", "--out", str(tmp_path / "data.jsonl"))
    assert r.returncode == 0, r.stderr[-2000:]
    sample = json.loads((tmp_path / "data.jsonl").read_text().splitlines()[0])
    assert sample["length"] == 1024
    r = _cli("run", "--quiet", "--model", f"hf:{shaped['llama3']}", "--rope", "yarn:factor=2", "--out", str(tmp_path / "refused"))
    assert r.returncode == 2 and "pass --rope llama3:factor=8" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "refused").exists()


@pytest.mark.parametrize("text, tokens", [("4096", 4096), ("128k", 131072), ("1M", 1048576)])
def test_context_accepts_k_and_m(text, tokens):
    from metabench.cli import _tokens

    assert _tokens(text) == tokens


def test_context_refuses_a_multiple(tmp_path):
    r = _cli("generate", "--context", "2x", "--out", str(tmp_path / "x.jsonl"))
    assert r.returncode == 2 and "the context is tokens: 4096, 128k or 1M" in r.stderr and r.stderr.count("\n") == 1
