"""`metabench import-lm-eval`: an lm-eval run (`--log_samples`) -> a metabench results folder.

lm-eval writes, under its --output_path, one folder per model holding
`results_<time>.json` (configs, model args, versions) and, with
--log_samples, `samples_<task>_<time>.jsonl` (each doc, the model's
response, the per-doc metrics). Our docs are metabench samples (dataset.py),
so each logged record becomes a results.jsonl row through the same
results.result_row that `metabench run` uses, and summary.json comes from
summarize_rows: the run shows on leaderboards and in `metabench check` like
any other, with `lm-eval:` in its model spec.

Scores are recomputed with metabench.scoring from the logged prediction and
compared with what lm-eval logged; a difference is an error (the run used
another version's metrics), never averaged away. lm-eval logs no output
token counts or latencies: those fields are null. Tasks of the run that are
not metabench's are left out and reported. A record logged twice counts
once (results.unique_rows), and the repeated ids are named.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from metabench import __version__
from metabench.errors import MetabenchError
from metabench.lm_eval.dataset import from_doc
from metabench.lm_eval.scores import find_results
from metabench.lm_eval.settings import LM_EVAL_KEYS
from metabench.reasoning import Thinking, split
from metabench.results import SUMMARY_FORMAT, result_row, summarize_rows, unique_rows, write_json
from metabench.schema import dumps
from metabench.scoring import score

SAMPLE_KEYS = ("id", "entry", "task", "variant", "index", "length", "length_label", "prompt", "prompt_tokens",
               "target", "answers", "metrics", "seed", "tokenizer")
_MULT = re.compile(r"^(\d+(?:\.\d+)?)x$")


@dataclass(frozen=True)
class Imported:
    out: Path
    rows: int
    tasks: tuple[str, ...]
    skipped: tuple[str, ...]  # tasks of the run that are not metabench's


def _records(results: Path, task: str) -> list[dict[str, Any]]:
    """The task's logged records (filter `none`), each checked to hold a metabench sample."""
    path = results.with_name(f"samples_{task}_{results.stem[len('results_'):]}.jsonl")
    if not path.is_file():
        raise MetabenchError(f"{path} is missing: rerun lm-eval with --log_samples (metabench needs every prediction)")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise MetabenchError(f"{path}:{n}: not a JSON line (a torn or edited file); rerun lm-eval") from None
            if not isinstance(record, dict) or not isinstance(record.get("doc"), dict):
                raise MetabenchError(f"{path}:{n}: not an lm-eval sample record (an object with a 'doc')")
            if record.get("filter", "none") != "none":
                continue
            missing = [k for k in SAMPLE_KEYS if k not in record.get("doc", {})]
            if missing:
                raise MetabenchError(f"{path}:{n}: the doc lacks {', '.join(missing)}; not a metabench task's log")
            out.append(record)
    return out


def to_row(record: dict[str, Any], where: str) -> dict[str, Any]:
    """One logged record -> one results.jsonl row; its scores must equal those lm-eval logged."""
    doc = from_doc(record["doc"])
    prediction = record["filtered_resps"][0]
    if not isinstance(prediction, str):
        raise MetabenchError(f"{where}: sample {doc['id']} has a non-text response {prediction!r}")
    raw, prediction = prediction, split(prediction, None, Thinking(), doc["prompt"]).answer  # as doc_scores scored it
    scores = score(doc, prediction)
    for metric, value in scores.items():
        logged = record.get(metric)
        if logged is None or abs(float(logged) - value) > 1e-9:
            raise MetabenchError(
                f"{where}: sample {doc['id']}: lm-eval logged {metric}={logged} but metabench scores {value}; "
                "the run used another version of metabench's tasks"
            )
    return result_row(doc, prediction, scores, output_tokens=None, latency_s=None, raw_output=raw)


def _context(docs: list[dict[str, Any]], metadata: dict[str, Any]) -> int | None:
    """The context that lengths were resolved against: a multiple's tokens over its factor, else --metadata context."""
    for d in docs:
        if m := _MULT.match(str(d["length_label"])):
            return round(d["length"] / float(m.group(1)))
    value = metadata.get("context")
    return value if isinstance(value, int) else None


def _command(cfg: dict[str, Any], tasks: list[str], metadata: dict[str, Any]) -> str:
    model_args = cfg.get("model_args") or {}
    args = model_args if isinstance(model_args, str) else ",".join(f"{k}={v}" for k, v in model_args.items())
    parts = ["lm_eval", "--include_path", "tasks", "--tasks", ",".join(tasks), "--model", str(cfg.get("model"))]
    parts += ["--model_args", args] if args else []
    parts += ["--metadata", json.dumps(metadata, sort_keys=True)] if metadata else []
    parts += ["--gen_kwargs", json.dumps(cfg["gen_kwargs"], sort_keys=True)] if cfg.get("gen_kwargs") else []
    return shlex.join(parts + ["--log_samples", "--output_path", "OUTPUT_DIR"])


def _asked(run: dict[str, Any], ours: list[str]) -> list[str]:
    """The task or group names the run was started with, as far as they hold our tasks."""
    groups: dict[str, list[str]] = run.get("group_subtasks") or {}
    inner = {t for subtasks in groups.values() for t in subtasks}
    asked = [g for g, subtasks in groups.items() if g not in inner and (g in ours or set(subtasks) & set(ours))]
    return asked or ours


def _one(values: set, what: str, where: Path) -> Any:
    if len(values) != 1:
        raise MetabenchError(f"{where}: the run's samples have several {what} ({sorted(map(str, values))}); import runs one by one")
    return next(iter(values))


def import_run(source: str | Path, out: str | Path, name: str | None = None) -> Imported:
    """Write `out`/config.json, results.jsonl and summary.json from an lm-eval run with --log_samples."""
    results_path = find_results(source)
    try:
        run = json.loads(results_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MetabenchError(f"{results_path} is not valid JSON: {exc}") from exc
    if not isinstance(run, dict):
        raise MetabenchError(f"{results_path} holds a {type(run).__name__}, not lm-eval's results object")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MetabenchError(f"{out} already exists and is not an empty folder; choose a new --out folder")
    configs: dict[str, dict] = run.get("configs") or {}
    # lm-eval's results keep the order tasks were given in (a group's YAML order); configs are sorted.
    ours = [t for t in [*(run.get("results") or {}), *configs]
            if (configs.get(t, {}).get("dataset_kwargs") or {}).get("entries")]
    ours = list(dict.fromkeys(ours))
    skipped = tuple(sorted(set(configs) - set(ours)))
    if not ours:
        raise MetabenchError(f"{results_path}: no metabench task in this run (tasks: {', '.join(sorted(configs)) or 'none'})")

    records = [r for task in ours for r in _records(results_path, task)]
    if not records:
        raise MetabenchError(f"{results_path}: the logged samples are empty")
    rows = unique_rows((to_row(r, str(results_path)) for r in records), f"{results_path.parent} (logged samples)")
    docs = {d["id"]: d for d in (from_doc(r["doc"]) for r in records)}
    present = {d["entry"] for d in docs.values()}
    order = [e for t in ours for e in configs[t]["dataset_kwargs"]["entries"] if e in present]
    entry_rank = {e: i for i, e in enumerate(dict.fromkeys([*order, *sorted(present)]))}
    rows.sort(key=lambda r: (entry_rank[r["entry"]], r["length"], r["index"]))

    cfg = run.get("config") or {}
    model_args = cfg["model_args"] if isinstance(cfg.get("model_args"), dict) else {}
    metadata = {k: v for k, v in (configs[ours[0]].get("metadata") or {}).items()
                if k not in model_args and k not in LM_EVAL_KEYS}
    model_name = str(run.get("model_name") or model_args.get("pretrained") or model_args.get("model") or "model")
    context = _context(list(docs.values()), metadata)
    seed = _one({d["seed"] for d in docs.values()}, "seeds", results_path)
    options = {"marker": _one({d["marker"] for d in docs.values()}, "markers", results_path),
               "chat_template": _one({d["chat_template"] for d in docs.values()}, "chat_template settings", results_path)}
    entries = []
    for e in entry_rank:
        first = next(d for d in docs.values() if d["entry"] == e)
        entries.append({"name": e, "task": first["task"], "variant": first["variant"], "params": first["params"],
                        "samples": 1 + max(d["index"] for d in docs.values() if d["entry"] == e)})
    lengths = {d["length_label"]: d["length"] for d in sorted(docs.values(), key=lambda d: d["length"])}
    model = {"name": name or Path(model_name.rstrip("/")).name, "spec": f"lm-eval:{cfg.get('model')}:{model_name}",
             "context": context, "native_context": context, "window": run.get("max_length")}
    suite = {"name": "lm-eval:" + ",".join(ours), "seed": seed, "source": str(results_path.resolve()),
             "lengths": lengths, "entries": entries}
    tokenizer = {"path": str(model_args.get("tokenizer") or model_args.get("pretrained") or ""),
                 "fingerprint": _one({d["tokenizer"] for d in docs.values()}, "tokenizers", results_path)}
    backend = {"backend": "lm-eval", "model": cfg.get("model"), "model_args": cfg.get("model_args"),
               "gen_kwargs": cfg.get("gen_kwargs"), "max_length": run.get("max_length"),
               "versions": {"lm_eval": run.get("lm_eval_version"), "transformers": run.get("transformers_version")}}
    identity = {"model": model["spec"], "tokenizer": tokenizer["fingerprint"],
                "suite": {"name": suite["name"], "seed": seed, "entries": entries}, "lengths": lengths,
                "context": context, "options": options, "backend": {"lm_eval": backend}}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    provenance = {
        "metabench_version": __version__, "command": _command(cfg, _asked(run, ours), metadata), "backend": backend,
        "tokenizer": tokenizer, "options": options, "imported_from": str(results_path.resolve()), "imported_at": now,
        "lm_eval_date": run.get("date"), "skipped_tasks": list(skipped),
    }

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {"identity": identity, "created_at": now, "metabench_version": __version__})
    with open(out / "results.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(dumps(r) + "\n")
    write_json(out / "summary.json", {"format": SUMMARY_FORMAT, "model": model, "suite": suite,
                                      "provenance": provenance, "cells": summarize_rows(rows)})
    return Imported(out, len(rows), tuple(ours), skipped)
