"""A model's window: what `1x` means, read once from its config.json for every entry point.

`metabench run` (every backend), the lm-eval tasks, `metabench generate
--context-from MODEL` and the report all take `1x` from `read_window`:

    1x = the window the checkpoint is configured to serve
       = max_position_embeddings after any RoPE scaling its config states.

The window before any extension (the pre-training window) is recorded beside
it, and `Window.source` says in words which number 1x was. The rules follow
how serving engines size a model's window (vLLM's max_model_len), so `1x`
is the longest prompt the model's own config promises to handle:

| config shape                    | example                 | 1x                                  | pre-extension                  |
| ------------------------------- | ----------------------- | ----------------------------------- | ------------------------------ |
| plain RoPE                      | Llama-2, Mistral v0.3   | max_position_embeddings             | the same                       |
| llama3 scaling                  | Llama-3.1 (factor 8)    | max_position_embeddings (131072)    | original_max_position_embeddings (8192) |
| YaRN in the config              | Qwen2.5 + YaRN factor 4 | original_max_position_embeddings x factor (32768 x 4), or max_position_embeddings when larger | original_max_position_embeddings |
| linear, dynamic                 | Vicuna-16k (linear 4)   | max_position_embeddings x factor    | max_position_embeddings        |
| longrope                        | Phi-3-*-128k            | max_position_embeddings (131072)    | original_max_position_embeddings (4096) |
| sliding window                  | Mistral v0.1            | max_position_embeddings; `sliding_window` recorded | the same        |
| learned positions               | GPT-2                   | n_positions (or max_position_embeddings) | the same                  |

Qwen's instructions add YaRN to config.json without raising
max_position_embeddings; transformers reads YaRN from its own parameters
either way, but vLLM sizes its window from max_position_embeddings, so the
vLLM backend is told the scaled window (`Window.overrides`).

A config nesting its language model in `text_config` (multimodal models) is
read there. Old (`rope_scaling`, `type`, top-level `rope_theta`) and new
(`rope_parameters`, `rope_type`) spellings are both read.

`--rope` composes with the scaling a config already has (`extend`): the keys
the user names replace the config's, every other key (`rope_theta`,
`low_freq_factor`, `beta_fast`, ...) is kept, and the factor always counts
from the pre-extension window. A different rope type than the config's, any
longrope model, or a model without RoPE is refused with the flag to pass
instead: a model has one scaling, and replacing it silently changes every
position the model has learned to read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from metabench.errors import MetabenchError

Positions = Literal["rope", "learned", "unknown"]
# Families whose configs may state no RoPE key at all (old Llama-style files default rope_theta).
ROPE_MODEL_TYPES = frozenset({
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "phi3", "gemma", "gemma2",
    "gemma3_text", "gpt_neox", "olmo", "olmo2", "granite", "stablelm", "starcoder2", "internlm2", "deepseek_v3",
})
LEARNED_MODEL_TYPES = frozenset({"gpt2", "gpt_bigcode", "opt", "gpt_neo", "biogpt", "xglm"})
# Types whose scaled window is max_position_embeddings x factor (the config states the pre-scaling window).
MULTIPLIED = frozenset({"linear", "dynamic"})
# Types that read the pre-extension window from `original_max_position_embeddings` and are told the
# extended one through max_position_embeddings (transformers and vLLM alike).
ORIGINAL_KEYED = frozenset({"yarn", "llama3", "longrope"})
LENGTH_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "n_ctx", "seq_length")


@dataclass(frozen=True)
class Window:
    context: int  # 1x: the window the checkpoint is configured to serve
    pretrained: int  # the window before any extension in the config (== context without one)
    source: str  # which number 1x was, in words: "max_position_embeddings 131072 (llama3 scaling of 8192)"
    positions: Positions = "rope"
    rope: dict[str, Any] = field(default_factory=dict)  # the config's rope parameters, new spelling; {} without
    sliding_window: int | None = None
    stated: int = 0  # the length key's own value (max_position_embeddings, n_positions, ...)

    @property
    def overrides(self) -> dict[str, Any]:
        """Config attributes that make an engine serve 1x: a YaRN config that left max_position_embeddings unscaled."""
        return {"max_position_embeddings": self.context} if self.rope_type == "yarn" and self.stated < self.context else {}

    @property
    def rope_type(self) -> str:
        return str(self.rope.get("rope_type", "default"))

    def record(self) -> dict[str, Any]:
        """The fields summary.json's `model` keeps about the config's window (see results.py)."""
        return {"native_context": self.pretrained, "positions": self.positions, "rope_type": self.rope_type,
                "sliding_window": self.sliding_window}


@dataclass(frozen=True)
class Extension:
    """What a backend is told for a `--rope` override: the full rope parameters and the new window."""

    rope_parameters: dict[str, Any]
    window: int  # the longest prompt + answer the extended model serves
    overrides: dict[str, Any]  # config attributes to set (transformers) / hf_overrides (vLLM)


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    text = config.get("text_config")
    if isinstance(text, dict) and any(text.get(k) for k in LENGTH_KEYS):
        return text
    return config


def config_rope(config: dict[str, Any]) -> dict[str, Any]:
    """The config's rope parameters in transformers' current spelling (`rope_parameters`, `rope_type`)."""
    c = _text_config(config)
    rope = dict(c.get("rope_parameters") or c.get("rope_scaling") or {})
    if "type" in rope:
        rope.setdefault("rope_type", rope.pop("type"))
    if c.get("rope_theta") is not None:
        rope.setdefault("rope_theta", c["rope_theta"])
    if not rope and _positions(c) != "rope":
        return {}
    rope.setdefault("rope_type", "default")
    if c.get("original_max_position_embeddings") and rope["rope_type"] in ORIGINAL_KEYED:
        rope.setdefault("original_max_position_embeddings", c["original_max_position_embeddings"])  # Phi-3 keeps it outside
    return rope


def _positions(c: dict[str, Any]) -> Positions:
    if c.get("position_encoding") in ("absolute", "learned"):
        return "learned"
    if c.get("rope_parameters") or c.get("rope_scaling") or c.get("rope_theta") is not None:
        return "rope"
    if c.get("position_encoding") == "rope" or c.get("model_type") in ROPE_MODEL_TYPES:
        return "rope"
    if c.get("model_type") in LEARNED_MODEL_TYPES or "n_positions" in c:
        return "learned"
    return "unknown"


def read_window(config: dict[str, Any]) -> Window | None:
    """The window a config.json dict states; None when it states no length at all."""
    c = _text_config(config)
    key = next((k for k in LENGTH_KEYS if isinstance(c.get(k), int) and c[k] > 0), None)
    if key is None:
        return None
    stated = int(c[key])
    positions = _positions(c)
    rope = config_rope(config) if positions == "rope" else {}
    kind = str(rope.get("rope_type", "default"))
    factor = float(rope.get("factor") or 1.0)
    original = rope.get("original_max_position_embeddings")
    sliding = c.get("sliding_window") if isinstance(c.get("sliding_window"), int) else None
    source = f"{key} {stated}"
    context, pretrained = stated, stated
    if kind == "yarn" and factor > 1:
        pretrained = int(original or stated)
        context = max(stated, int(round(pretrained * factor)))
        source = (f"{key} {stated} (YaRN scaling of {pretrained})" if context == stated
                  else f"original_max_position_embeddings {pretrained} x YaRN factor {factor:g}")
    elif kind in MULTIPLIED and factor > 1:
        context = int(round(stated * factor))
        source = f"{key} {stated} x {kind} factor {factor:g}"
    elif kind in ("llama3", "longrope") and original:
        pretrained = int(original)
        source = f"{key} {stated} ({kind} scaling of {pretrained})"
    elif positions == "learned":
        source = f"{key} {stated} (learned positions)"
    if sliding and sliding < context:
        source += f"; sliding window {sliding}"
    return Window(context, pretrained, source, positions, rope, sliding, stated)


def context_source(window: Window | None, context: int, given: bool) -> str:
    """Which number 1x was, for summary.json and the printed table: the config's window or --context."""
    if window is None:
        return "--context" if given else "the server's max_model_len"
    if given and context != window.context:
        return f"--context; the config serves {window.context}: {window.source}"
    extra = f"; pre-extension {window.pretrained}" if window.pretrained != window.context else ""
    return window.source + extra


def _factor_text(f: float) -> str:
    return f"{f:g}"


def extend(window: Window, rope: dict[str, Any], model: str = "the model") -> Extension:
    """Compose a `--rope` override with the config's scaling (see the module docstring), or refuse."""
    kind = str(rope.get("rope_type") or rope.get("type") or "")
    if window.positions == "learned":
        raise MetabenchError(
            f"--rope: {model} has learned positions ({window.source}), which RoPE scaling cannot extend; "
            "drop --rope (and pass --allow-beyond-context to evaluate past 1x)"
        )
    if kind == "longrope" or window.rope_type == "longrope":
        raise MetabenchError(
            f"--rope {kind}: longrope's per-dimension factors are fitted to {window.pretrained} -> {window.context} "
            "tokens and cannot be stretched by a factor; drop --rope (and pass --allow-beyond-context to evaluate past 1x)"
        )
    have = window.rope_type
    if have != "default" and kind != have:
        factor = float(window.rope.get("factor") or window.context / window.pretrained)
        raise MetabenchError(
            f"--rope {kind}: {model}'s config already scales RoPE with {have} (factor {_factor_text(factor)}, "
            f"{window.pretrained} -> {window.context} tokens) and a model has one scaling; pass "
            f"--rope {have}:factor={_factor_text(2 * factor)} to stretch it to {2 * window.context} tokens"
        )
    factor = rope.get("factor")
    if not isinstance(factor, (int, float)) or isinstance(factor, bool) or factor <= 1:
        raise MetabenchError(f"--rope {kind} needs factor > 1 (the new window over {window.pretrained}), e.g. {kind}:factor=2")
    params = {**window.rope, **{k: v for k, v in rope.items() if k != "type"}, "rope_type": kind}
    # A config without rope_theta leaves it to the model class's default; the backends fill it from the
    # loaded config (transformers knows each class's default), so it is never guessed here.
    if kind in MULTIPLIED:
        base = window.context if have == "default" else int(round(window.context / float(window.rope.get("factor", 1))))
        new = int(round(base * float(factor)))
        overrides: dict[str, Any] = {"rope_parameters": params}  # both read max_position_embeddings as the base
    else:
        base = int(params.get("original_max_position_embeddings") or window.pretrained)
        params["original_max_position_embeddings"] = base
        new = int(round(base * float(factor)))
        overrides = {"rope_parameters": params, "max_position_embeddings": new}
    if new <= window.context:
        raise MetabenchError(
            f"--rope {kind}:factor={_factor_text(float(factor))} gives {new} tokens, no more than the "
            f"{window.context} {model} already serves ({window.source}); pass a larger factor"
        )
    return Extension(params, new, overrides)
