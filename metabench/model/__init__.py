"""The reference meta-token model (arXiv 2509.16278), YaRN, and their transformers wiring.

Importing this package is cheap: torch and transformers load only when a name
below is first used, or when `register()` runs.

    model.py              GPTConfig, MetaGPT: the pure-torch model
    rope.py               RopeConfig, rope_frequencies: RoPE and YaRN
    configuration_meta.py MetaConfig (transformers, model_type "metabench_meta")
    modeling_meta.py      MetaForCausalLM, MetaCache
    checkpoint.py         loud checks of checkpoint directories
    extend.py             extend(): YaRN context extension of a checkpoint
"""

from __future__ import annotations

import importlib
from typing import Any

MODEL_TYPE = "metabench_meta"

_LAZY = {
    "GPTConfig": "model",
    "MetaGPT": "model",
    "PAPER_GPT2": "model",
    "RopeConfig": "rope",
    "rope_frequencies": "rope",
    "MetaConfig": "configuration_meta",
    "MetaForCausalLM": "modeling_meta",
    "MetaCache": "modeling_meta",
    "extend": "extend",
}

__all__ = ["MODEL_TYPE", "register", *_LAZY]


def register() -> None:
    """Register MetaConfig / MetaForCausalLM with AutoConfig and AutoModelForCausalLM.

    Idempotent. Needed to load checkpoints by model_type without
    trust_remote_code; checkpoints also load with trust_remote_code alone.
    """
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from .configuration_meta import MetaConfig
    from .modeling_meta import MetaForCausalLM

    if MODEL_TYPE in CONFIG_MAPPING:
        if CONFIG_MAPPING[MODEL_TYPE] is not MetaConfig:
            raise ValueError(f"model_type {MODEL_TYPE!r} is already registered to {CONFIG_MAPPING[MODEL_TYPE]}")
        return
    AutoConfig.register(MODEL_TYPE, MetaConfig)
    AutoModelForCausalLM.register(MetaConfig, MetaForCausalLM)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
