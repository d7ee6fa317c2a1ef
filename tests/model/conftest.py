"""Fixtures for the reference-model tests: tiny random models, no downloads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
from torch import nn

from metabench.model.configuration_meta import MetaConfig
from metabench.model.model import GPTConfig
from metabench.model.modeling_meta import MetaForCausalLM

VOCAB = 300
META = 299  # the meta-token id of every tiny model
TINY = GPTConfig(vocab_size=VOCAB, block_size=64, n_layer=2, n_head=2, n_embd=64, meta_token_id=META)


def sharpen(module: nn.Module, seed: int = 0, std: float = 0.3) -> nn.Module:
    """Re-draw all weights large, so attention is far from uniform and every path shows in outputs.

    With GPT-2's 0.02 init the outputs of a fresh model barely depend on its
    inputs, and an equivalence test at 1e-5 would pass for wrong code.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            for name, p in sub.named_parameters(recurse=False):
                scale = 0.2 if isinstance(sub, nn.LayerNorm) else std
                p.copy_(scale * torch.randn(p.shape, generator=gen))
                if isinstance(sub, nn.LayerNorm) and name == "weight":
                    p.add_(1.0)
    return module


def ids_with_meta(rows: list[list[int]], length: int, seed: int = 0) -> torch.Tensor:
    """(len(rows), length) random ids, none of them META, with META at each row's listed positions."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, META, (len(rows), length), generator=gen)
    for b, positions in enumerate(rows):
        ids[b, positions] = META
    return ids


@pytest.fixture
def gpt_config() -> Callable[..., GPTConfig]:
    """GPTConfig of the tiny model, with overrides."""
    return lambda **overrides: replace(TINY, **overrides)


@pytest.fixture
def hf_model() -> Callable[..., MetaForCausalLM]:
    """A tiny, sharpened MetaForCausalLM in eval mode, with GPTConfig overrides."""

    def make(seed: int = 0, **overrides: object) -> MetaForCausalLM:
        torch.manual_seed(seed)
        config = MetaConfig.from_gpt_config(replace(TINY, **overrides))
        return sharpen(MetaForCausalLM(config), seed).eval()

    return make


@pytest.fixture
def meta_id() -> int:
    return META


@pytest.fixture(name="sharpen")
def sharpen_fixture() -> Callable[..., nn.Module]:
    return sharpen


@pytest.fixture(name="ids_with_meta")
def ids_with_meta_fixture() -> Callable[..., torch.Tensor]:
    return ids_with_meta
