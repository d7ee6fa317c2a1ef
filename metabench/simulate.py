"""Realistic results folders without a model: for report and check tests, and the report benchmark.

A simulated model answers each sample correctly with a chosen probability
per (entry, length, depth). Rows are built by metabench.results.result_row
(as the runner builds them) and scored with metabench.scoring, and
summary.json comes from metabench.results.summarize_rows, so these folders
exercise the same code paths as real runs.

`exact=True` (the default) makes the accuracy exact rather than sampled:
in every (entry, length, depth) group, round(p * n) samples, chosen by a
seeded RNG that does not depend on p, are right. Two folders that differ
in one cell's accuracy then differ in that cell only, which is how the
check tests inject a known drop. Entries with several answers score
string_match_all as a fraction (a non-binary primary metric).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from metabench.results import SUMMARY_FORMAT, result_row, summarize_rows, write_json
from metabench.schema import dumps
from metabench.scoring import score

Accuracy = Callable[[str, int, "float | None"], float]  # (entry, length tokens, depth) -> p in [0, 1]


@dataclass(frozen=True)
class SimEntry:
    name: str
    task: str
    variant: str
    metrics: tuple[str, ...]  # the first is primary, as in the task specs
    answers: int = 1  # >1: string_match_all scores the fraction of answers found
    depths: tuple[float, ...] | None = None
    chance: float = 0.0


ENTRIES: tuple[SimEntry, ...] = (
    SimEntry("list_recall/easy", "list_recall", "easy", ("exact_match",), chance=0.1),
    SimEntry("kv_recall/single", "kv_recall", "single", ("string_match_all", "exact_match")),
    SimEntry("copy/short", "copy", "short", ("exact_match", "token_accuracy")),
    SimEntry("needle/single", "needle", "single", ("string_match_all", "exact_match"), depths=(0.0, 0.25, 0.5, 0.75, 1.0)),
    SimEntry("segment_count/default", "segment_count", "default", ("exact_match",), chance=0.2),
    SimEntry("parity/default", "parity", "default", ("exact_match",), chance=0.5),
)
MULTIVALUE = SimEntry("needle/multivalue", "needle", "multivalue", ("string_match_all", "exact_match"), answers=4,
                      depths=(0.0, 0.5, 1.0))
LENGTHS: dict[str, int] = {"0.5x": 2048, "1x": 4096, "2x": 8192}


def decay(context: int, top: float = 0.95, half: float = 1.5, steep: float = 4.0) -> Accuracy:
    """Accuracy that holds near `top` and falls to half of it at `half` x context."""

    def p(entry: str, length: int, depth: float | None) -> float:
        dip = 0.05 if depth is not None and 0.2 < depth < 0.8 else 0.0  # lost in the middle
        return max(0.0, top / (1 + math.exp(steep * math.log2(length / (half * context)))) - dip)

    return p


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz") + rng.choice("aeiou") for _ in range(3))


def _hits(rng: random.Random, n: int, p: float, exact: bool) -> list[bool]:
    if not exact:
        return [rng.random() < p for _ in range(n)]
    order = list(range(n))
    rng.shuffle(order)  # the same order whatever p is
    right = set(order[: round(p * n)])
    return [i in right for i in range(n)]


def simulate_rows(
    entries: Sequence[SimEntry] = ENTRIES,
    lengths: dict[str, int] = LENGTHS,
    samples: int = 20,
    seed: int = 0,
    accuracy: Accuracy | float = 0.8,
    exact: bool = True,
    mutate: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """results.jsonl rows of a simulated model; `mutate(row)` may edit a row before it is scored."""
    acc: Accuracy = (lambda e, n, d: float(accuracy)) if isinstance(accuracy, (int, float)) else accuracy
    rows = []
    for entry in entries:
        for label, length in lengths.items():
            depths = [entry.depths[i % len(entry.depths)] if entry.depths else None for i in range(samples)]
            outcome: dict[int, float] = {}
            for depth in dict.fromkeys(depths):
                idx = [i for i in range(samples) if depths[i] == depth]
                rng = random.Random(f"{seed}/{entry.name}/{length}/{depth}")
                p = acc(entry.name, length, depth)
                if entry.answers == 1:
                    outcome.update({i: float(h) for i, h in zip(idx, _hits(rng, len(idx), p, exact))})
                else:  # found answers: exactly round(p * n * answers) in all, spread at random
                    slots = _hits(rng, len(idx) * entry.answers, p, exact)
                    outcome.update({i: sum(slots[k * entry.answers:(k + 1) * entry.answers]) / entry.answers
                                    for k, i in enumerate(idx)})
            for i in range(samples):
                rng = random.Random(f"{seed}/{entry.name}/{length}/{i}/text")
                answers = [_word(rng) for _ in range(entry.answers)]
                found = round(outcome[i] * entry.answers)
                prediction = ", ".join(answers[:found]) if found else f"I do not know {_word(rng)}"
                if entry.task == "copy" and not found:
                    prediction = " ".join(answers[:1] + [_word(rng)])
                prompt = f"[{entry.name} sample {i} of about {length} tokens] " + " ".join(_word(rng) for _ in range(60))
                sample = {"id": f"{entry.name}/{label}/{i}", "entry": entry.name, "task": entry.task,
                          "variant": entry.variant, "index": i, "length": length, "length_label": label,
                          "depth": depths[i], "prompt": prompt, "prompt_tokens": length - 32,
                          "target": ", ".join(answers), "answers": answers, "metrics": list(entry.metrics),
                          "chance": entry.chance}
                row = result_row(sample, prediction, {}, output_tokens=8, latency_s=0.01 * (1 + length / 4096))
                if mutate:
                    mutate(row)
                row["scores"] = score({**row, "metrics": list(entry.metrics)}, row["prediction"])
                rows.append(row)
    return rows


def write_results(
    folder: str | Path,
    model: str = "sim-model",
    context: int = 4096,
    entries: Sequence[SimEntry] = ENTRIES,
    lengths: dict[str, int] | None = None,
    samples: int = 20,
    seed: int = 0,
    suite: str = "smoke",
    accuracy: Accuracy | float | None = None,
    exact: bool = True,
    mutate: Callable[[dict[str, Any]], None] | None = None,
    provenance: dict[str, Any] | None = None,
    step: int | None = None,
    scoring: str | None = None,
) -> Path:
    """A results folder (config.json, results.jsonl, summary.json) of a simulated model; `step` and `scoring`
    are written to summary.json only when given, as a checkpoint's run records them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lengths = lengths or {label: int(float(label[:-1]) * context) for label in ("0.5x", "1x", "2x")}
    rows = simulate_rows(entries, lengths, samples, seed, decay(context) if accuracy is None else accuracy, exact, mutate)
    suite_info = {
        "name": suite, "seed": seed, "lengths": lengths,
        "entries": [{"name": e.name, "task": e.task, "variant": e.variant, "samples": samples} for e in entries],
    }
    model_info = {"name": model, "spec": f"hf:models/{model}", "context": context}
    config = {"model": model_info, "suite": suite_info}
    (folder / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    with open(folder / "results.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(dumps(r) + "\n")
    prov = {
        "metabench": "0.1.0", "commit": "0123456789abcdef0123456789abcdef01234567", "python": "3.11.2",
        "config_sha256": hashlib.sha256(dumps(config).encode()).hexdigest(), "seed": seed,
        "command": f"metabench run --model hf:models/{model} --suite {suite} --seed {seed} --out {folder}",
    }
    summary = {
        "format": SUMMARY_FORMAT, "model": model_info, "suite": suite_info,
        "provenance": prov if provenance is None else provenance, "cells": summarize_rows(rows),
    }
    summary.update({k: v for k, v in (("step", step), ("scoring", scoring)) if v is not None})
    write_json(folder / "summary.json", summary)
    return folder
