"""Tiny real models for tests, built in seconds with no network.

A module of its own (not conftest.py) so tests can import it by a name no
other file in tests/ shares.
"""

from __future__ import annotations

from pathlib import Path

from metabench.tokenizer import load_tokenizer


def build_tiny_llama(out_dir: Path, tokenizer_dir: Path, steps: int = 150, context: int = 1024, seed: int = 0,
                     **config_overrides) -> Path:
    """A real transformers Llama (2 layers, head_dim 64 so vLLM's CPU kernels take it),
    trained a few steps on procedural text so its logits are far from uniform.
    `config_overrides` go to LlamaConfig (e.g. rope_parameters)."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from metabench.haystack import procedural_sentences

    tok = load_tokenizer(tokenizer_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=tok.backend.get_vocab_size(), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, head_dim=64, max_position_embeddings=context,
        bos_token_id=None, eos_token_id=0, pad_token_id=0, tie_word_embeddings=True, torch_dtype="float32",
        **config_overrides,
    )
    model = LlamaForCausalLM(config)
    import random as _random

    text = " ".join(procedural_sentences(_random.Random(seed), 4000))
    ids = torch.tensor(tok.encode(text))
    block = 128
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - block - 1, (8,), generator=g)
        batch = torch.stack([ids[s : s + block] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.config.final_loss = float(loss.detach())
    model.save_pretrained(out_dir, safe_serialization=True)
    for f in Path(tokenizer_dir).iterdir():
        shutil.copy(f, out_dir / f.name)
    return out_dir
