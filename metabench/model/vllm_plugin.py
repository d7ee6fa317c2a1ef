"""vLLM plugin: serve MetaForCausalLM checkpoints with no extra flags.

metabench's pyproject declares `register` under the `vllm.general_plugins`
entry point, so every vLLM process (front end, engine core, workers, the
registry's inspection subprocess) calls it before reading a checkpoint. It

- registers MetaConfig with transformers' AutoConfig (model_type
  "metabench_meta"), so vLLM reads config.json without trust_remote_code;
- registers the architecture name checkpoints carry in config.json
  (`architectures: ["MetaForCausalLM"]`) with vllm.ModelRegistry, lazily as a
  "module:Class" string, so vLLM imports vllm_model.py only when it loads one.

Idempotent: vLLM may call it several times per process.
"""

from __future__ import annotations

ARCHITECTURE = "MetaForCausalLM"  # MetaForCausalLM.__name__, written by save_pretrained
VLLM_MODEL = "metabench.model.vllm_model:MetaForCausalLMVLLM"


def register() -> None:
    from vllm import ModelRegistry

    from metabench.model import register as register_transformers

    register_transformers()  # AutoConfig / AutoModelForCausalLM for model_type "metabench_meta"
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, VLLM_MODEL)
