"""lm-eval's results_*.json as per-metric scores, for `metabench baseline` and `check`.

lm-eval writes, per task, `"results": {task: {"METRIC,FILTER": value,
"METRIC_stderr,FILTER": stderr, "alias": ...}}` and `"n-samples": {task:
{"original", "effective"}}`. Any task's results can be checked this way, not
only metabench's (whose per-sample logs `import-lm-eval` reads instead).

A value of "N/A", -1, null or a non-number is missing, never zero: RULER's
port fills lengths it did not run with -1, and lm-eval prints "N/A" for a
standard error it cannot compute (custom aggregations). Groups (aggregates
of their subtasks, which are read themselves) are left out, and so are
metrics lm-eval marks lower-is-better (perplexities: a drop is no regression).
Scores are fractions, as in metabench's files: a task with a value above 1
reports percents (RULER, BLEU), so its values and standard errors are
divided by 100. A file cannot show that a task whose every value is at most 1
reports percents (a collapse to under one point looks like a fraction), so
each Score says which reading it took; `check` reads the results the way the
baseline was read, and refuses a pair it cannot tell apart.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metabench.errors import MetabenchError


@dataclass(frozen=True)
class Score:
    task: str
    key: str  # "exact_match,none": lm-eval's metric and filter
    n: int  # the task's evaluated samples
    value: float | None  # None: missing ("N/A", -1)
    stderr: float | None  # None: missing
    percent: bool = False  # the task reported percents (some value above 1), divided by 100 here

    @property
    def metric(self) -> str:
        return self.key.partition(",")[0]


def find_results(source: str | Path) -> Path:
    """The one results_*.json under `source` (a file, a model folder or lm-eval's --output_path)."""
    source = Path(source)
    if source.is_file():
        return source
    if not source.is_dir():
        raise MetabenchError(f"{source} does not exist: give lm-eval's --output_path folder or a results_*.json in it")
    found = sorted(source.rglob("results_*.json"))
    if not found:
        raise MetabenchError(f"no results_*.json under {source}: is it lm-eval's --output_path of a finished run?")
    if len(found) > 1:
        listing = "\n  ".join(str(p) for p in found)
        raise MetabenchError(f"{source} holds {len(found)} lm-eval runs; give one of these files instead:\n  {listing}")
    return found[0]


def is_lm_eval_output(source: str | Path) -> bool:
    """A results_*.json, or a folder holding one and no metabench summary.json."""
    source = Path(source)
    if source.is_file():
        return source.name.startswith("results_") and source.suffix == ".json"
    return source.is_dir() and not (source / "summary.json").exists() and any(source.rglob("results_*.json"))


def number(value: Any) -> float | None:
    """A score, or None for lm-eval's and RULER's placeholders ("N/A", -1, null, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return None if value == -1 or math.isnan(value) else value


def read_scores(source: str | Path) -> tuple[Path, dict[str, Any], list[Score]]:
    """(the results file, what a comparison must share, one Score per task and metric)."""
    path = find_results(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MetabenchError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise MetabenchError(f"{path} has no \"results\": not an lm-eval results file")
    groups = set(data.get("groups") or {}) | set(data.get("group_subtasks") or {})
    n_samples = data.get("n-samples") or {}
    better = data.get("higher_is_better") or {}
    scores = []
    for task, metrics in data["results"].items():
        if task in groups and task not in n_samples:
            continue
        if task not in n_samples:
            raise MetabenchError(f"{path}: task {task} has no \"n-samples\" entry; the file is incomplete")
        n = int(n_samples[task].get("effective", n_samples[task].get("original", 0)))
        keys = [k for k in metrics if "," in k and not k.partition(",")[0].endswith("_stderr")
                and (better.get(task) or {}).get(k.partition(",")[0], True) is not False]
        scale = 100.0 if any((number(metrics[k]) or 0.0) > 1 for k in keys) else 1.0
        for key in keys:
            metric, _, filt = key.partition(",")
            value, stderr = number(metrics[key]), number(metrics.get(f"{metric}_stderr,{filt}"))
            scores.append(Score(task, key, n, None if value is None else value / scale,
                                None if stderr is None else stderr / scale, scale == 100.0))
    identity = {
        "name": "lm-eval", "seed": (data.get("config") or {}).get("random_seed"), "lengths": None,
        "entries": sorted([t, (data.get("versions") or {}).get(t)] for t in {s.task for s in scores}),
    }
    return path, identity, scores
