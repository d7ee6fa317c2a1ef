"""Results folders as the report sees them: typed cells, provenance, a few samples.

A report reads summary.json (cells with 95% intervals, model, suite,
provenance) and, only when it shows a sample browser, results.jsonl. The
browser keeps at most `per_cell` samples per (entry, length), failures
first (primary score below 1, in index order), then successes: failures are
what a reader wants to see, and the bound keeps a 20-model page small.
Prompt excerpts and long strings are cut to `EXCERPT` characters with the
cut marked, never silently.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from metabench.errors import MetabenchError
from metabench.results import check_counts, expand_folders, load_rows, read_summary, scoring_of

EXCERPT = 240  # characters kept of each prompt end, target and prediction


@dataclass(frozen=True)
class Cell:
    """One summary cell's primary metric."""

    entry: str
    task: str
    variant: str
    length: int
    label: str
    depth: float | None
    n: int
    primary: str
    chance: float
    mean: float
    low: float
    high: float
    truncated: int | None = None  # answers cut off at the token cap (None: not recorded, e.g. imported)
    errors: int | None = None
    empty: int = 0

    @classmethod
    def from_summary(cls, c: dict[str, Any], where: str) -> "Cell":
        try:
            m = c["metrics"][c["primary"]]
            return cls(
                entry=str(c["entry"]), task=str(c["task"]), variant=str(c["variant"]), length=int(c["length"]),
                label=str(c["length_label"]), depth=None if c["depth"] is None else float(c["depth"]),
                n=int(c["n"]), primary=str(c["primary"]), chance=float(c.get("chance") or 0.0),
                mean=float(m["mean"]), low=float(m["ci_low"]), high=float(m["ci_high"]),
                truncated=_count(c.get("truncated")), errors=_count(c.get("errors")), empty=_count(c.get("empty")) or 0,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MetabenchError(f"{where}: a cell lacks or has a bad {exc} (cell: {str(c)[:120]})") from None


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class SampleView:
    entry: str
    label: str
    length: int
    depth: float | None
    index: int
    prompt_head: str
    prompt_tail: str
    target: str
    prediction: str
    score: float


@dataclass(frozen=True)
class Run:
    folder: Path
    name: str  # the model's name, made unique among the report's runs
    spec: str
    context: int | None  # 1x in tokens (window.py): the lengths' multiples count from it
    context_source: str  # which number 1x was, from summary.json; '' for older summaries
    suite: dict[str, Any]
    provenance: dict[str, Any]
    cells: tuple[Cell, ...]
    samples: tuple[SampleView, ...] | None  # None: no sample browser


def cut(text: str, keep: int = EXCERPT, end: bool = False) -> str:
    """At most `keep` characters, with the cut marked: 'abc… (+120 chars)' or '(+120 chars) …xyz'."""
    text = str(text)
    if len(text) <= keep:
        return text
    more = f"(+{len(text) - keep} chars)"
    return f"{more} …{text[-keep:]}" if end else f"{text[:keep]}… {more}"


def pick_samples(rows: Sequence[dict[str, Any]], per_cell: int) -> tuple[SampleView, ...]:
    """Up to `per_cell` rows per (entry, length): failures first, then successes, each by index."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["entry"], r["length"]), []).append(r)
    out: list[SampleView] = []
    for rs in groups.values():
        rs = sorted(rs, key=lambda r: (float(r["scores"][r["primary"]]) >= 1.0, r["index"]))
        for r in rs[:per_cell]:
            out.append(SampleView(
                entry=str(r["entry"]), label=str(r["length_label"]), length=int(r["length"]), depth=r.get("depth"),
                index=int(r["index"]), prompt_head=cut(r.get("prompt_head", "")),
                prompt_tail=cut(r.get("prompt_tail", ""), end=True), target=cut(r.get("target", "")),
                prediction=cut(r.get("prediction", "")), score=float(r["scores"][r["primary"]]),
            ))
    return tuple(out)


def load_run(folder: str | Path, per_cell: int | None) -> Run:
    """One results folder; `per_cell` None skips results.jsonl (no sample browser)."""
    folder = Path(folder)
    summary = read_summary(folder)
    where = str(folder / "summary.json")
    for key in ("model", "suite", "cells"):
        if key not in summary:
            raise MetabenchError(f"{where}: missing key {key!r}")
    cells = tuple(Cell.from_summary(c, where) for c in summary["cells"])
    if not any(c.depth is None for c in cells):
        raise MetabenchError(f"{where}: no cells; the run scored no samples")
    model = summary["model"]
    context = model.get("context")
    samples = None
    rows_path = folder / "results.jsonl"
    if per_cell is not None and not rows_path.is_file():
        raise MetabenchError(f"{folder}: no results.jsonl for the sample browser (pass --no-samples to leave it out)")
    if rows_path.is_file():  # the cells' n are checked against the rows whenever they are there
        rows = load_rows(rows_path)
        check_counts(summary, rows, folder)
        samples = pick_samples(rows, per_cell) if per_cell is not None else None
    name = str(model.get("name") or folder.name)
    if scoring_of(summary) != "generate":  # greedy_match is not exact_match: never ranked as one
        name += f" [{scoring_of(summary)}]"
    return Run(
        folder=folder, name=name, spec=str(model.get("spec") or ""),
        context=int(context) if context else None, context_source=str(model.get("context_source") or ""),
        suite=dict(summary["suite"]),
        provenance=dict(summary.get("provenance") or {}), cells=cells, samples=samples,
    )


def load_runs(paths: Sequence[str | Path], per_cell: int | None) -> list[Run]:
    """Runs in the given order; two runs of one model name are told apart by their folder."""
    runs = [load_run(p, per_cell) for p in expand_folders(paths)]
    names = [r.name for r in runs]
    return [
        dataclasses.replace(r, name=f"{r.name} ({r.folder.name})") if names.count(r.name) > 1 else r
        for r in runs
    ]
