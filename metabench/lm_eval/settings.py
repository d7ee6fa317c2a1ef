"""What a metabench lm-eval task is asked for: `--metadata` and `--model_args`, read into Settings.

lm-eval hands a task's `custom_dataset` function ONE dict: the YAML's own
`metadata` (version, config_source), then `--model_args`, then `--metadata`
(later wins), then the YAML's `dataset_kwargs`. Origins are lost, so:

- metabench's keys (`METADATA_KEYS`) are read and validated;
- the model's keys that matter here are read, never refused: `pretrained`,
  `model`, `tokenizer` (which tokenizer measures lengths), `max_length`,
  `max_model_len`, `base_url` (how far lm-eval will let a prompt go);
- any other key may be a model argument (HF forwards unknown ones to
  `from_pretrained`), so it cannot be refused as unknown in general. A key
  that reads as a misspelling of a metabench key (`sample`, `lengths`,
  `max_seq_length`, `samlpes`) and is not a parameter of any lm-eval model
  is refused with the key named and the right one suggested.

No silent truncation: lm-eval left-truncates prompts that exceed its
`max_length` (HF, vLLM and API models alike) with a log line at most.
`check_fits` computes the limit lm-eval will apply, by lm-eval's own rules,
and refuses lengths beyond it with the `--model_args` to pass instead.
`check_specials` refuses the one other way lm-eval would send a prompt other
than the sample: an API model dropping the BOS the tokenizer adds.
"""

from __future__ import annotations

import ast
import difflib
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from metabench.errors import LengthError, MetabenchError
from metabench.lengths import Length, parse_lengths
from metabench.source import is_hub_id, tokenizer_folder
from metabench.tokenizer import Tokenizer
from metabench.window import read_window

METADATA_KEYS: dict[str, str] = {
    "max_seq_lengths": "lengths: tokens (1024, 4k) or context multiples (0.5x, 2x); default [0.25x, 0.5x, 1x]",
    "context": "the model's context in tokens, for multiples; default: 1x of the model's config.json, as `metabench run` reads it",
    "samples": "samples per task entry and length; default 20",
    "data_seed": "seed of the generated data; default 0 (`seed` is left to the model: vLLM and API models take one)",
    "marker": "meta-token string inserted at each task's meta-token positions; default none",
    "chat_template": "true: wrap prompts in the tokenizer's chat template, counted in the length; default false",
    "tokenizer": "tokenizer folder measuring lengths; default the model's (`pretrained`, else `model`)",
    "thinking_tokens": "tokens a reasoning model may think, on top of each sample's answer budget "
                       "(the reasoning is taken out before scoring); default 0",
}
DEFAULTS: dict[str, Any] = {
    "max_seq_lengths": ("0.25x", "0.5x", "1x"),  # fit every model's own max_length: no flag needed
    "samples": 20,
    "data_seed": 0,
    "marker": None,
    "chat_template": False,
    "thinking_tokens": 0,
}
MODEL_KEYS = ("pretrained", "model", "tokenizer", "max_length", "max_model_len", "base_url")
LM_EVAL_KEYS = ("version", "config_source", "entries", "scoring")  # lm-eval's task metadata; our YAMLs' dataset_kwargs
# Words users bring from RULER or metabench's own CLI, and what they mean here.
MEANT: dict[str, str] = {
    "lengths": "max_seq_lengths",
    "seq_lengths": "max_seq_lengths",
    "max_seq_length": "max_seq_lengths",
    "num_samples": "samples",
    "samples_per_length": "samples",
    "sample": "samples",
    "meta_token": "marker",
}
TOKENIZER_INFINITY = int(1e30)  # transformers: model_max_length when a tokenizer sets none
LM_EVAL_DEFAULT_MAX_LENGTH = 2048  # HFLM, VLLM and TemplateAPI fall back to this


@dataclass(frozen=True)
class Limit:
    """The most tokens (prompt + answer) lm-eval lets a request have before it cuts the prompt."""

    tokens: int
    source: str  # where the number comes from, for messages
    flag: str  # the model argument that raises it
    reserve: int = 0  # tokens the backend keeps back from `flag`'s value (API models: 1)


@dataclass(frozen=True)
class Settings:
    entries: tuple[str, ...]  # "family/variant"
    lengths: tuple[Length, ...]
    samples: int
    seed: int
    marker: str | None
    chat_template: bool
    tokenizer: str  # local folder
    context: int | None
    limit: Limit
    thinking_tokens: int = 0  # added to every doc's max_gen_toks, and counted against the limit
    loglik: bool = False  # the `_ll` tasks (dataset_kwargs scoring: loglik): docs carry the gold continuation
    # An API model (base_url) sending token ids without a BOS: lm-eval's TemplateAPI default, unlike HF and vLLM.
    api_without_bos: bool = False

    @property
    def suite(self) -> dict[str, Any]:
        """The suite these settings describe, in metabench's suite YAML form."""
        return {
            "name": "lm-eval",
            "seed": self.seed,
            "lengths": [l.label for l in self.lengths],
            "samples": self.samples,
            "tasks": [dict(zip(("task", "variant"), e.split("/", 1))) for e in self.entries],
        }


@functools.cache
def lm_eval_model_parameters() -> frozenset[str]:
    """Parameter names of every lm-eval model class's __init__, read from source (nothing imported)."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval.models")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    names: set[str] = set()
    for folder in spec.submodule_search_locations:
        for path in Path(folder).glob("*.py"):
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (OSError, SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef) and node.name == "__init__":
                    a = node.args
                    names.update(x.arg for x in a.posonlyargs + a.args + a.kwonlyargs)
    return frozenset(names - {"self"})


def check_keys(kwargs: Mapping[str, Any]) -> None:
    """Refuse keys that read as misspelled metabench keys (see the module docstring)."""
    ours = set(METADATA_KEYS) | set(MODEL_KEYS) | set(LM_EVAL_KEYS)
    for key in kwargs:
        if key in ours or key in lm_eval_model_parameters():
            continue
        meant = MEANT.get(key) or next(iter(difflib.get_close_matches(key, list(METADATA_KEYS), n=1, cutoff=0.8)), None)
        if meant:
            raise MetabenchError(
                f"unknown --metadata key {key!r} for metabench tasks; did you mean {meant!r}? "
                f"({meant}: {METADATA_KEYS[meant]})"
            )


def _local_folder(name: str) -> Path | None:
    """A local folder for `name`: the path itself, or a hub id's snapshot (config and tokenizer files only)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if not is_hub_id(name):
        return None
    try:
        return Path(tokenizer_folder(name))  # huggingface_hub's cache; HF_HUB_OFFLINE applies
    except MetabenchError:  # not on the hub, not cached offline: there is no folder
        return None


def resolve_tokenizer(kwargs: Mapping[str, Any]) -> str:
    """The tokenizer folder: `tokenizer`, else `pretrained`, else `model` (lm-eval's RULER order)."""
    for key in ("tokenizer", "pretrained", "model"):
        value = kwargs.get(key)
        if isinstance(value, str) and value:
            folder = _local_folder(value)
            if folder is None:
                hint = "" if key != "model" else " (for API models `model` is the served name)"
                raise MetabenchError(
                    f"{key}={value!r} is neither a local folder nor a hub model{hint}; "
                    "pass --model_args tokenizer=<tokenizer folder or hub id>"
                )
            return str(folder)
    raise MetabenchError(
        "metabench tasks build prompts to exact lengths with the evaluated model's tokenizer: pass "
        "`pretrained` or `tokenizer` in --model_args (a local folder or a hub id)"
    )


def _config_positions(folder: Path) -> tuple[int, str] | None:
    """The context config.json states, read as lm-eval reads it (lm_eval.models.utils.resolve_max_length)."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text(encoding="utf-8"))
    for c in (cfg.get("text_config"), cfg):
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            if isinstance(c, dict) and c.get(attr) is not None:
                return int(c[attr]), f"{attr} in {path}"
    return None


def _tokenizer_max_length(folder: Path) -> tuple[int, str] | None:
    """lm-eval's next source when the config states none: the tokenizer's model_max_length, unless 'unlimited'."""
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8")).get("model_max_length")
    if value is None or int(value) >= TOKENIZER_INFINITY // 2:
        return None
    return int(value), f"model_max_length in {path}"


def _model_folder(kwargs: Mapping[str, Any]) -> Path | None:
    """The model's local folder: `pretrained`, or `model` / `tokenizer` when they are folders (API models)."""
    for key in ("pretrained", "model", "tokenizer"):
        value = kwargs.get(key)
        if isinstance(value, str) and value and (folder := _local_folder(value)):
            if key == "pretrained" or (folder / "config.json").is_file():
                return folder
    return None


def resolve_context(kwargs: Mapping[str, Any]) -> int | None:
    """`--metadata context`, else 1x of the model's config, as `metabench run` reads it (window.py)."""
    value = kwargs.get("context")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise MetabenchError(f"--metadata context must be a positive number of tokens, got {value!r}")
        return value
    folder = _model_folder(kwargs)
    if folder is None or not (folder / "config.json").is_file():
        return None
    window = read_window(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    return window.context if window else None


def resolve_limit(kwargs: Mapping[str, Any]) -> Limit:
    """The limit lm-eval will apply, by its own rules for the backend these model args belong to.

    HF and vLLM: `max_length` (vLLM also `max_model_len`), else the config's
    n_positions / max_position_embeddings / n_ctx, else the tokenizer's
    model_max_length, else 2048; a request may use all of it. API models
    (`base_url` given): `max_length`, else 2048, minus the one token TemplateAPI
    always keeps back.
    """
    api = "base_url" in kwargs
    for key in ("max_length",) if api else ("max_model_len", "max_length"):
        value = kwargs.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise MetabenchError(f"--model_args {key} must be a positive number of tokens, got {value!r}")
            if api:
                return Limit(value - 1, f"max_length={value} less the token lm-eval's API models keep back", "max_length", 1)
            return Limit(value, f"{key}={value}", key)
    if api:
        return Limit(LM_EVAL_DEFAULT_MAX_LENGTH - 1,
                     f"lm-eval's default max_length {LM_EVAL_DEFAULT_MAX_LENGTH} for API models, less one token", "max_length", 1)
    folder = _model_folder(kwargs)
    found = (_config_positions(folder) or _tokenizer_max_length(folder)) if folder else None
    if found:
        return Limit(found[0], found[1], "max_length")
    if folder is not None:
        return Limit(LM_EVAL_DEFAULT_MAX_LENGTH, f"lm-eval's default max_length {LM_EVAL_DEFAULT_MAX_LENGTH}", "max_length")
    raise MetabenchError(
        "cannot tell which max_length lm-eval will use for this model (no local model folder): "
        "pass --model_args ...,max_length=N so that prompts are checked against it"
    )


def _length_items(value: Any) -> list[Any]:
    """`[1024, 2048]`, `["0.5x", "1x"]`, `"0.5x,1x"`, `"[0.5x, 1x]"` (lm-eval keeps that one as text), `4096`."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    if isinstance(value, str):
        return [p for p in re.sub(r"^\s*\[|\]\s*$", "", value).split(",")]
    raise MetabenchError(f"--metadata max_seq_lengths must be a list such as [0.5x, 1x, 2x] or [1024, 4096], got {value!r}")


def resolve_lengths(value: Any, context: int | None) -> tuple[Length, ...]:
    items = [str(int(x)) if isinstance(x, float) and x.is_integer() else str(x).strip().strip("'\"") for x in _length_items(value)]
    if context is None and any(s.lower().endswith("x") for s in items):
        raise MetabenchError(
            f"--metadata max_seq_lengths={value!r} has context multiples but the model's context is unknown: pass "
            "--metadata context=N, or a local model folder with config.json as `pretrained`"
        )
    try:
        return tuple(parse_lengths(items, context))
    except MetabenchError as exc:
        raise MetabenchError(f"--metadata max_seq_lengths={value!r}: {exc}") from None


def _flag(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise MetabenchError(f"--metadata {key} must be true or false, got {value!r}")


def _count(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MetabenchError(f"--metadata {key} must be an integer >= {minimum}, got {value!r}")
    return value


def read_settings(kwargs: Mapping[str, Any]) -> Settings:
    """Settings from the merged kwargs lm-eval passes to custom_dataset; every error names its key."""
    check_keys(kwargs)
    entries = kwargs.get("entries")
    if not entries or not isinstance(entries, (list, tuple)):
        raise MetabenchError("a metabench task YAML must list its entries in dataset_kwargs: {entries: [family/variant, ...]}")
    get = lambda k: kwargs[k] if kwargs.get(k) is not None else DEFAULTS.get(k)  # noqa: E731
    if str(kwargs.get("enable_thinking", "")).lower() == "true":
        raise MetabenchError(
            "enable_thinking acts only through lm-eval's --apply_chat_template, which rewrites prompts after "
            "metabench fitted them to their lengths; use --metadata chat_template=true (the tokenizer's template, "
            "thinking as it defaults) with thinking_tokens=N, and think_end_token if you like"
        )
    tokenizer = resolve_tokenizer(kwargs)  # first: without a tokenizer nothing else can be measured
    context = resolve_context(kwargs)
    marker = get("marker")
    if marker is not None and (not isinstance(marker, str) or not marker):
        raise MetabenchError(f"--metadata marker must be a non-empty string, got {marker!r}")
    return Settings(
        entries=tuple(str(e) for e in entries),
        lengths=resolve_lengths(get("max_seq_lengths"), context),
        samples=_count(get("samples"), "samples", 1),
        seed=_count(get("data_seed"), "data_seed", 0),
        marker=marker,
        chat_template=_flag(get("chat_template"), "chat_template"),
        tokenizer=tokenizer,
        context=context,
        limit=resolve_limit(kwargs),
        thinking_tokens=_count(get("thinking_tokens"), "thinking_tokens", 0),
        loglik=kwargs.get("scoring") == "loglik",
        api_without_bos="base_url" in kwargs and kwargs.get("add_bos_token") is not True
        and kwargs.get("tokenized_requests") is not False,
    )


def check_specials(settings: Settings, tok: Tokenizer, task: str = "metabench") -> None:
    """Refuse an API model that would drop the BOS metabench counts in every prompt (and HF and vLLM send)."""
    if settings.api_without_bos and not settings.chat_template and tok.special_overhead() > 0:
        raise MetabenchError(
            f"{task}: the tokenizer {settings.tokenizer} adds special tokens (a BOS) that metabench counts in every "
            "length, but lm-eval's API models send prompts without them by default: pass --model_args ...,add_bos_token=True"
        )


def check_fits(settings: Settings, task: str = "metabench") -> None:
    """Refuse lengths that lm-eval would cut: a sample of length L needs prompt + answer budget <= L, and
    L + thinking_tokens <= limit."""
    extra = settings.thinking_tokens
    over = [l for l in settings.lengths if l.tokens + extra > settings.limit.tokens]
    if not over:
        return
    need = max(l.tokens for l in settings.lengths) + extra + settings.limit.reserve
    labels = ", ".join(f"{l.label} ({l.tokens} tokens{f' + {extra} thinking' if extra else ''})" for l in over)
    raise LengthError(
        f"{task}: lengths {labels} exceed the {settings.limit.tokens} tokens lm-eval allows this model "
        f"({settings.limit.source}); lm-eval would silently cut the start of those prompts. "
        f"Pass --model_args ...,{settings.limit.flag}={need} to evaluate them whole "
        f"(beyond the trained context this relies on the model's position encoding), or drop them from max_seq_lengths"
    )
