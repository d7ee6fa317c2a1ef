"""metabench: a long-context evaluation harness.

Importing this package is cheap: torch, transformers, vLLM and lm-eval are
imported only inside the modules that need them (backends, model, tokenizer
loading), never here.
"""

__version__ = "0.1.0"
