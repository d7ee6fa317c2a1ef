"""Tiny real models for tests, built in seconds with no network.

A module of its own (not conftest.py) so tests can import it by a name no
other file in tests/ shares. `llama_config`, `fit` and `save_with_tokenizer`
are the parts every tiny Llama here is built from (also tests/reasoning_model.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from metabench.tokenizer import load_tokenizer


def llama_config(vocab_size: int, context: int, head_dim: int = 64, **overrides):
    """A 2-layer LlamaConfig of hidden size 128; vLLM's CPU attention takes head_dim 32 or 64 (not 16).
    `overrides` go to LlamaConfig (e.g. rope_parameters)."""
    from transformers import LlamaConfig

    heads = 128 // head_dim
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=heads, num_key_value_heads=heads, head_dim=head_dim, max_position_embeddings=context,
        bos_token_id=None, eos_token_id=0, pad_token_id=0, tie_word_embeddings=True, torch_dtype="float32",
        **overrides,
    )


def fit(model, batch: Callable[[], dict[str, Any]], steps: int, lr: float = 3e-3) -> float:
    """`steps` AdamW steps on `batch()` (the model's forward kwargs, labels included); returns the last loss."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        loss = model(**batch()).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return float(loss.detach())


def save_with_tokenizer(model, out_dir: Path, tokenizer_dir: Path) -> Path:
    """The model's weights (safetensors) and config, beside a copy of the tokenizer's files."""
    model.save_pretrained(out_dir, safe_serialization=True)
    for f in Path(tokenizer_dir).iterdir():
        shutil.copy(f, Path(out_dir) / f.name)
    return Path(out_dir)


def build_tiny_llama(out_dir: Path, tokenizer_dir: Path, steps: int = 150, context: int = 1024, seed: int = 0,
                     **config_overrides) -> Path:
    """A real transformers Llama (2 layers, head_dim 64 so vLLM's CPU kernels take it),
    trained a few steps on procedural text so its logits are far from uniform.
    `config_overrides` go to LlamaConfig (e.g. rope_parameters)."""
    import random

    import torch
    from transformers import LlamaForCausalLM

    from metabench.haystack import procedural_sentences

    tok = load_tokenizer(tokenizer_dir)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(tok.backend.get_vocab_size(), context, **config_overrides))
    text = " ".join(procedural_sentences(random.Random(seed), 4000))
    ids = torch.tensor(tok.encode(text))
    block = 128
    g = torch.Generator().manual_seed(seed)

    def batch() -> dict[str, Any]:
        starts = torch.randint(0, len(ids) - block - 1, (8,), generator=g)
        rows = torch.stack([ids[s : s + block] for s in starts])
        return {"input_ids": rows, "labels": rows}

    model.config.final_loss = fit(model, batch, steps)
    return save_with_tokenizer(model, out_dir, tokenizer_dir)
