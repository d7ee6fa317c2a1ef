"""Results folders: the one format that runs write and reports, checks and imports read.

A results folder (`metabench run --out results/NAME`, or `metabench
import-lm-eval`) holds:

    config.json     {"identity": what defines the run (model, weights and tokenizer
                    fingerprints, suite, seed, lengths, options), "weights": the
                    weights' hashes with each file's [size, mtime_ns], ...};
                    a resumed run must match the identity exactly
    .lock           while a run writes: its PID, under flock (metabench.lock)
    results.jsonl   one row per scored sample, appended and flushed as it finishes
    summary.json    scores per cell with 95% confidence intervals, plus provenance

A row (results.jsonl):

    {"id", "entry", "task", "variant", "index", "length", "length_label",
     "depth", "prompt_sha256", "prompt_tokens", "target", "answers",
     "prediction", "scores": {metric: value in [0, 1]}, "primary": metric,
     "chance", "output_tokens", "max_new_tokens", "finish_reason", "server_prompt_tokens",
     "raw_output", "reasoning_field", "reasoning_tokens", "answer_logprob",
     "latency_s", "prompt_head", "prompt_tail"}

`max_new_tokens` is the generation cap the backend was given;
`finish_reason` is stop, length (cut off at that cap) or error (the
engine or server aborted it); `server_prompt_tokens` is the server's own
count of the prompt (usage.prompt_tokens), null where none was reported.
`prediction` is the answer that was scored: `raw_output` with any reasoning
taken out (metabench/reasoning.py); `reasoning_field` is reasoning a server
sent apart (null otherwise) and `reasoning_tokens` the reasoning's length in
the run's tokenizer (null: no reasoning found). `answer_logprob` is the gold
answer's mean log-probability per token under `--scoring loglik`
(metabench/loglik.py: such rows score `greedy_match` and `answer_prob`,
and their prediction is the argmax at the answer's positions), null when
the answer was generated. Rows imported from lm-eval
have no cap, finish reason or server count (null).

Every writer (the runner, the lm-eval import, any backend-specific path)
builds its rows with `result_row`, so the fields, their order and the
prompt excerpts (`PROMPT_EXCERPT` characters of each end) are defined here
only. `output_tokens` and `latency_s` are null where the writer cannot know
them (lm-eval logs neither).

summary.json:

    {"format": "metabench.summary/1",
     "model": {"name", "spec",
               "context",          1x in tokens: the lengths' multiples count from it (window.py)
               "context_source",   which number 1x was, in words ("max_position_embeddings
                                   131072 (llama3 scaling of 8192); pre-extension 8192", "--context")
               "native_context",   the window before any extension in the config
               "window",           the most the model served as loaded (1x, or a --rope extension)
               "positions", "rope_type", "sliding_window"},   the config's, when known
     "suite": {"name", "seed", "lengths": {label: tokens}, "entries": [...]},
     "scoring": "generate" | "loglik",   how rows were scored (absent in older summaries: generate)
     "step": int | null,   the training step of the checkpoint: `run --step N`, else read
                           from the model folder's name by `step_of` (checkpoint-N, step-N,
                           global_stepN); null when unknown
     "provenance": {...},
     "cells": [{"entry", "task", "variant", "length", "length_label", "depth",
                "n", "primary", "chance",
                "metrics": {metric: {"mean", "ci_low", "ci_high"}},
                "truncated", "errors", "empty",
                "prompt_tokens": {"intended", "measured"}}]}

A cell counts its `truncated` answers (finish_reason length: cut off at the
cap, also while still thinking), `errors` (finish_reason error) and `empty`
answers (nothing left to score); truncated and errors are null when no row
of the cell records a finish_reason. `prompt_tokens` is the mean prompt
length the harness measured ("intended") beside the server's own count
("measured", null where the server reports none): a tokenizer that differs
from the served model's shows here.

Every reader takes rows through `load_rows`: a line that is not an object with
the keys in ROW_KEYS is an error naming the line, and each sample id counts
once. A row repeated verbatim (latency aside: two writers into one folder,
a copied line) is kept once and the repeated ids are named on stderr; one id
with two different rows means the folder mixes two runs, and is an error.

Scores are fractions in [0, 1] everywhere in files; reports show percent.
Cells: one per (entry, length) over all depths, with "depth": null; entries
whose samples have depths (needles, ...) also get one cell per (entry,
length, depth). Intervals: Wilson for 0/1 metrics, otherwise the normal
approximation of the mean (clipped to [0, 1]).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from metabench.errors import MetabenchError, warn

SUMMARY_FORMAT = "metabench.summary/1"
SCORINGS = ("generate", "loglik")
# Checkpoint folder names that carry a training step: transformers' Trainer
# (checkpoint-500), common loops (step-500, step_500) and DeepSpeed (global_step500).
_STEP_NAME = re.compile(r"(?:checkpoint|step)[-_]?(\d+)|global_step(\d+)")
ROW_KEYS = ("id", "entry", "task", "variant", "index", "length", "length_label", "scores", "primary")
Z95 = 1.959963984540054
PROMPT_EXCERPT = 400  # characters of prompt head and tail kept per row, for the report's sample browser


def result_row(sample: Mapping[str, Any], prediction: str, scores: Mapping[str, float],
               output_tokens: int | None, latency_s: float | None, *, max_new_tokens: int | None = None,
               finish_reason: str | None = None, server_prompt_tokens: int | None = None,
               raw_output: str | None = None, reasoning_field: str | None = None,
               reasoning_tokens: int | None = None, answer_logprob: float | None = None) -> dict[str, Any]:
    """One results.jsonl row from a sample (a Sample's fields as a mapping), its prediction (the answer that was
    scored) and scores; the keyword fields are null where the writer cannot know them."""
    prompt: str = sample["prompt"]
    return {
        "id": sample["id"], "entry": sample["entry"], "task": sample["task"], "variant": sample["variant"],
        "index": sample["index"], "length": sample["length"], "length_label": sample["length_label"],
        "depth": sample.get("depth"),
        "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest(), "prompt_tokens": sample["prompt_tokens"],
        "target": sample["target"], "answers": sample["answers"], "prediction": prediction,
        "scores": dict(scores), "primary": sample["metrics"][0], "chance": sample.get("chance", 0.0),
        "output_tokens": output_tokens, "max_new_tokens": max_new_tokens, "finish_reason": finish_reason,
        "server_prompt_tokens": server_prompt_tokens, "raw_output": prediction if raw_output is None else raw_output,
        "reasoning_field": reasoning_field, "reasoning_tokens": reasoning_tokens,
        "answer_logprob": None if answer_logprob is None else round(answer_logprob, 6),
        "latency_s": None if latency_s is None else round(latency_s, 4),
        "prompt_head": prompt[:PROMPT_EXCERPT],
        "prompt_tail": prompt[-PROMPT_EXCERPT:] if len(prompt) > PROMPT_EXCERPT else "",
    }


def scoring_of(summary: Mapping[str, Any]) -> str:
    """How a summary's rows were scored; summaries from before the key existed were generated."""
    return str(summary.get("scoring", "generate"))


def step_of(name: str) -> int | None:
    """The training step a checkpoint folder's name carries (checkpoint-500, step-500, global_step500), else None."""
    m = _STEP_NAME.fullmatch(name)
    return None if m is None else int(m.group(1) or m.group(2))


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_ci(values: list[float], z: float = Z95) -> dict[str, float]:
    """Mean and 95% interval: Wilson for 0/1 values, normal approximation otherwise."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci of no values")
    mean = sum(values) / n
    if all(v in (0.0, 1.0) for v in values):
        lo, hi = wilson(sum(values), n, z)
    elif n == 1:
        lo, hi = 0.0, 1.0
    else:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        lo, hi = max(0.0, mean - z * sd / math.sqrt(n)), min(1.0, mean + z * sd / math.sqrt(n))
    return {"mean": mean, "ci_low": lo, "ci_high": hi}


def summarize_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cells per (entry, length) and per (entry, length, depth); ordered as the rows first appear."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    order: list[tuple] = []
    for r in rows:
        keys = [(r["entry"], r["length"], None)]
        if r.get("depth") is not None:
            keys.append((r["entry"], r["length"], r["depth"]))
        for k in keys:
            if k not in groups:
                order.append(k)
            groups[k].append(r)
    cells = []
    for key in order:
        rs = groups[key]
        first = rs[0]
        metrics = sorted({m for r in rs for m in r["scores"]})
        cells.append({
            "entry": first["entry"],
            "task": first["task"],
            "variant": first["variant"],
            "length": first["length"],
            "length_label": first["length_label"],
            "depth": key[2],
            "n": len(rs),
            "primary": first["primary"],
            "chance": first.get("chance", 0.0),
            "metrics": {m: mean_ci([float(r["scores"][m]) for r in rs if m in r["scores"]]) for m in metrics},
            **outcome_counts(rs),
        })
    # Stable, readable order: entry as first seen, then length, then depth (overall first).
    entry_rank = {e: i for i, e in enumerate(dict.fromkeys(c["entry"] for c in cells))}
    cells.sort(key=lambda c: (entry_rank[c["entry"]], c["length"], c["depth"] is not None, c["depth"] or 0.0))
    return cells


def outcome_counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """truncated / errors / empty answers and intended vs measured prompt tokens of one cell's rows."""
    known = [r["finish_reason"] for r in rows if r.get("finish_reason")]
    measured = [r["server_prompt_tokens"] for r in rows if r.get("server_prompt_tokens") is not None]
    intended = [r["prompt_tokens"] for r in rows if r.get("prompt_tokens") is not None]
    return {
        "truncated": known.count("length") if known else None,
        "errors": known.count("error") if known else None,
        "empty": sum(1 for r in rows if not str(r.get("prediction", "")).strip()),
        "prompt_tokens": {"intended": sum(intended) / len(intended) if intended else None,
                          "measured": sum(measured) / len(measured) if measured else None},
    }


def truncation_warnings(cells: list[dict[str, Any]]) -> list[str]:
    """One line per depth-pooled cell where more than a fifth of the answers hit the token cap."""
    return [
        f"{c['truncated']} of {c['n']} answers of {c['entry']} @ {c['length_label']} were cut off at the token cap; "
        f"each is scored on what it wrote before the cap; if the answer may come later, raise --max-tokens"
        for c in cells if c["depth"] is None and (c.get("truncated") or 0) * 5 > c["n"]
    ]


def read_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a results.jsonl. A last line without its newline (a writer killed
    mid-line) is ignored; a damaged line anywhere else is an error."""
    path = Path(path)
    complete, _, _torn = path.read_text(encoding="utf-8").rpartition("\n")
    for i, line in enumerate(complete.split("\n")):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            raise MetabenchError(f"{path}: line {i + 1} is not valid JSON; the file is damaged") from None


def _named(ids: list[str], limit: int = 3) -> str:
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def unique_rows(rows: Iterable[Any], where: str) -> list[dict[str, Any]]:
    """`rows` checked for ROW_KEYS, each id once (see the module docstring); `where` names the source in messages."""
    out: dict[str, dict[str, Any]] = {}
    repeated: list[str] = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise MetabenchError(f"{where}: row {n} is {type(row).__name__}, not a result object; the file is damaged")
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise MetabenchError(f"{where}: row {n} lacks {', '.join(missing)}; the file is damaged or not a results file")
        first = out.setdefault(row["id"], row)
        if first is row:
            continue
        if {**first, "latency_s": None} != {**row, "latency_s": None}:
            raise MetabenchError(f"{where}: sample {row['id']} has two different rows; the folder mixes two runs "
                                 "(rerun into a new --out folder)")
        repeated.append(row["id"])
    if repeated:
        warn(f"{where}: {len(repeated)} repeated row(s) counted once ({_named(sorted(set(repeated)))})")
    return list(out.values())


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a results.jsonl as every reader should see them: checked, each sample once."""
    return unique_rows(read_rows(path), str(path))


def check_counts(summary: dict[str, Any], rows: list[dict[str, Any]], folder: str | Path) -> None:
    """Refuse a summary.json whose cells count other samples than the rows do (edited, stale or double-counted)."""
    counts: dict[tuple, int] = defaultdict(int)
    for r in rows:
        counts[(r["entry"], r["length_label"], None)] += 1
        if r.get("depth") is not None:
            counts[(r["entry"], r["length_label"], float(r["depth"]))] += 1
    listed = set()
    for c in summary.get("cells", []):
        depth = None if c.get("depth") is None else float(c["depth"])
        key = (c.get("entry"), c.get("length_label"), depth)
        listed.add(key)
        n = counts.get(key, 0)
        if n != c.get("n"):
            raise MetabenchError(
                f"{folder}: summary.json counts n={c.get('n')} for {c.get('entry')} @ {c.get('length_label')} but "
                f"results.jsonl holds {n} samples; rerun the run's command to rebuild summary.json from the rows"
            )
    missing = sorted((e, l) for e, l, d in set(counts) - listed if d is None)
    if missing:
        raise MetabenchError(
            f"{folder}: summary.json has no cell for {missing[0][0]} @ {missing[0][1]}, which results.jsonl holds; "
            "rerun the run's command to rebuild summary.json from the rows"
        )


def read_summary(folder: str | Path) -> dict[str, Any]:
    """summary.json of a results folder, with a clear error when it is not one."""
    folder = Path(folder)
    path = folder / "summary.json" if folder.is_dir() else folder
    if not path.is_file():
        raise MetabenchError(f"{folder} is not a results folder: no summary.json (run `metabench run --out {folder}` first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MetabenchError(f"{path} is not valid JSON: {exc}") from exc
    if data.get("format") != SUMMARY_FORMAT:
        raise MetabenchError(f"{path} has format {data.get('format')!r}, expected {SUMMARY_FORMAT!r}")
    return data


def expand_folders(paths: Sequence[str | Path]) -> list[Path]:
    """Results folders; a folder without summary.json stands for its sub-folders that have one.
    A folder named twice (directly or through its parent) is read once."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and not (p / "summary.json").exists():
            children = sorted(c for c in p.iterdir() if (c / "summary.json").is_file())
            if not children:
                raise MetabenchError(f"{p} is not a results folder and holds none (no summary.json in it or its sub-folders)")
            out.extend(children)
        else:
            out.append(p)
    if not out:
        raise MetabenchError("no results folders given")
    first: dict[Path, Path] = {}
    for p in out:
        first.setdefault(p.resolve(), p)
    if len(first) < len(out):
        twice = [str(p) for key, p in first.items() if sum(q.resolve() == key for q in out) > 1]
        warn(f"results folder(s) given more than once, shown once: {', '.join(twice)}")
    return list(first.values())


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    from metabench.schema import atomic_writer

    with atomic_writer(path) as f:
        f.write(json.dumps(data, indent=1, sort_keys=True) + "\n")
