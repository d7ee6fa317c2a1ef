"""metabench: a long-context evaluation harness.

Importing this package is cheap: torch, transformers, vLLM and lm-eval are
imported only inside the modules that need them (backends, model, tokenizer
loading), never here. `metabench.evaluate` (metabench/api.py) is imported
on first use.
"""

import sys
from typing import Any

__version__ = "0.1.0"


def _register_if_loaded() -> None:
    """Register the reference model with transformers' Auto classes when torch and
    transformers are already imported (then it costs nothing). Otherwise the
    backends call `metabench.model.register()` before loading a model, and saved
    checkpoints also load with `trust_remote_code=True` through their auto_map."""
    if "torch" in sys.modules and "transformers" in sys.modules:
        from metabench.model import register

        register()


_register_if_loaded()


def __getattr__(name: str) -> Any:
    """`metabench.evaluate` and `metabench.Evaluation`, imported when first used (import metabench stays cheap)."""
    if name in ("evaluate", "Evaluation"):
        from metabench import api

        return getattr(api, name)
    raise AttributeError(f"module 'metabench' has no attribute {name!r}")
