"""Fixtures: tokenizers built here, in seconds, with no network.

Two different tokenizers check every length claim: a GPT-2-like byte-level
BPE, and a SentencePiece-like (metaspace) BPE that prepends a BOS and has a
chat template.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from metabench.reference_tokenizer import corpus
from metabench.tokenizer import load_tokenizer, train_bpe
from tiny_models import build_tiny_llama
from vllm_server import serve

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="session")
def small_corpus() -> list[str]:
    return corpus(n_sentences=3000, n_layouts=100)


@pytest.fixture(scope="session")
def bytelevel_dir(tmp_path_factory, small_corpus) -> Path:
    return train_bpe(small_corpus, tmp_path_factory.mktemp("bytelevel"), vocab_size=1200,
                     special_tokens=("<|endoftext|>", "<|meta|>"))


@pytest.fixture(scope="session")
def metaspace_dir(tmp_path_factory, small_corpus) -> Path:
    out = train_bpe(small_corpus, tmp_path_factory.mktemp("metaspace"), vocab_size=900,
                    special_tokens=("<unk>", "<|end|>", "<|user|>", "<|assistant|>"), bos_token="<s>",
                    style="metaspace")
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    cfg["chat_template"] = CHAT_TEMPLATE
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    return out


@pytest.fixture(scope="session")
def bytelevel(bytelevel_dir):
    return load_tokenizer(bytelevel_dir)


@pytest.fixture(scope="session")
def metaspace(metaspace_dir):
    return load_tokenizer(metaspace_dir)


@pytest.fixture(params=["bytelevel", "metaspace"])
def any_tok(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, bytelevel_dir) -> Path:
    """A tiny trained Llama with the byte-level fixture tokenizer; context 1024 tokens."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny_llama"), bytelevel_dir)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, bytelevel_dir) -> Path:
    """A random GPT-2 with learned absolute positions (n_positions=256, as many as its embedding table has)."""
    import shutil

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    out = tmp_path_factory.mktemp("tiny_gpt2")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=load_tokenizer(bytelevel_dir).backend.get_vocab_size(), n_positions=256,
                        n_embd=64, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(out, safe_serialization=True)
    for f in Path(bytelevel_dir).iterdir():
        shutil.copy(f, out / f.name)
    return out


def build_tiny_meta(out_dir: Path, seed: int = 0, **overrides) -> Path:
    """A random MetaForCausalLM checkpoint (2 layers x 2 heads, block 256) with the bundled tokenizer.

    Weights are re-drawn large (std 0.3) so that attention is far from uniform and
    the analyses' numbers differ across layers and heads; a 0.02 init gives nearly
    equal entropies everywhere, and a report test could not tell cells apart.
    """
    import shutil

    import torch

    from metabench.model.configuration_meta import MetaConfig
    from metabench.model.model import GPTConfig
    from metabench.model.modeling_meta import MetaForCausalLM
    from metabench.reference_tokenizer import BUNDLED

    tok = load_tokenizer(BUNDLED)
    config = GPTConfig(vocab_size=tok.backend.get_vocab_size(), block_size=256, n_layer=2, n_head=2, n_embd=64,
                       meta_token_id=tok.backend.token_to_id("<|meta|>"), **overrides)
    torch.manual_seed(seed)
    model = MetaForCausalLM(MetaConfig.from_gpt_config(config)).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.3 * torch.randn(param.shape, generator=gen))
    model.save_pretrained(out_dir)
    for f in Path(BUNDLED).iterdir():
        shutil.copy(f, out_dir / f.name)
    return out_dir


@pytest.fixture(scope="session")
def analysis_dirs(tmp_path_factory) -> dict[str, Path]:
    """`metabench analyze` output folders of two tiny random checkpoints, by the real CLI:
    "meta" with the zeroed-positional-encoding ablation, "nometa" (no meta-attention) without it."""
    from metabench.cli import main

    root = tmp_path_factory.mktemp("analyses")
    out = {}
    plans = (("meta", 0, [], {}), ("nometa", 1, ["--no-ablation"], {"meta_attention": False}))
    for name, seed, extra, overrides in plans:
        ckpt = build_tiny_meta(root / "models" / name, seed, **overrides)
        out[name] = root / "analysis" / name
        assert main(["analyze", str(ckpt), "--out", str(out[name]), "--samples", "2", *extra]) == 0
    return out




@pytest.fixture(scope="session")
def vllm_server(tiny_llama_dir, tmp_path_factory):
    """vLLM's OpenAI server serving the tiny Llama as "tiny"."""
    with serve(tiny_llama_dir, tmp_path_factory.mktemp("vllm") / "server.log") as url:
        yield url


@pytest.fixture(scope="session")
def config_only_model(tmp_path_factory, bytelevel_dir) -> Path:
    """A model folder that everything before loading weights can read: tokenizer and config.json (1024 positions)."""
    out = tmp_path_factory.mktemp("config_model")
    for f in bytelevel_dir.iterdir():
        shutil.copy(f, out / f.name)
    (out / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 1024}))
    return out
