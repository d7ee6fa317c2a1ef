"""The one registry of task families and their named variants.

`FAMILIES[name]` is the family's variants: a dict of variant name -> spec
instance. Variants are data, not code: a variant is a spec with other
parameters, and users derive more with `resolve(family, variant, params)`.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

from metabench.errors import MetabenchError
from metabench.tasks import (common_words, copy, frequent_words, kv_recall, list_recall, mrcr, needle, parity,
                             segment_count, twohop, variable_tracking)
from metabench.tasks.base import Layout, TaskSpec

FAMILIES: dict[str, dict[str, TaskSpec]] = {
    "list_recall": list_recall.VARIANTS,
    "kv_recall": kv_recall.VARIANTS,
    "copy": copy.VARIANTS,
    "needle": {**needle.VARIANTS, **twohop.VARIANTS},
    "segment_count": segment_count.VARIANTS,
    "parity": parity.VARIANTS,
    "variable_tracking": variable_tracking.VARIANTS,
    "common_words": common_words.VARIANTS,
    "frequent_words": frequent_words.VARIANTS,
    "mrcr": mrcr.VARIANTS,
}


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"{hint} (choose from: {', '.join(options)})"


def _coerce(spec: TaskSpec, name: str, value: Any) -> Any:
    """Turn a YAML/CLI value into the field's type (lists -> tuples, '3' -> 3)."""
    hint = typing.get_type_hints(type(spec))[name]
    origin = typing.get_origin(hint)
    try:
        if origin is tuple:
            items = value if isinstance(value, (list, tuple)) else str(value).split(",")
            return tuple(float(v) for v in items)
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if hint is float:
            return float(value)
    except (TypeError, ValueError):
        raise MetabenchError(f"{spec.family}: parameter {name} must be {getattr(hint, '__name__', hint)}, got {value!r}")
    return value


def resolve(family: str, variant: str = "", params: dict[str, Any] | None = None) -> TaskSpec:
    """The spec for `family/variant`, with `params` overriding its fields; errors name what exists."""
    if family not in FAMILIES:
        raise MetabenchError(f"unknown task {family!r}" + _suggest(family, list(FAMILIES)))
    variants = FAMILIES[family]
    variant = variant or next(iter(variants))
    if variant not in variants:
        raise MetabenchError(f"unknown variant {variant!r} of task {family}" + _suggest(variant, list(variants)))
    spec = variants[variant]
    if params:
        names = [f.name for f in dataclasses.fields(spec)]
        for key in params:
            if key not in names:
                raise MetabenchError(f"{family} has no parameter {key!r}" + _suggest(key, names))
        coerced = {k: _coerce(spec, k, v) for k, v in params.items()}
        try:
            spec = dataclasses.replace(spec, **coerced)
        except ValueError as exc:
            raise MetabenchError(str(exc)) from exc
    return spec


def parse_task(text: str) -> tuple[str, str]:
    """'needle:multikey' or 'needle/multikey' -> ('needle', 'multikey'); 'needle' -> ('needle', '')."""
    for sep in (":", "/"):
        if sep in text:
            family, variant = text.split(sep, 1)
            return family.strip(), variant.strip()
    return text.strip(), ""


__all__ = ["FAMILIES", "Layout", "TaskSpec", "resolve", "parse_task"]
