"""Training-checkpoint series: one model's checkpoints, ordered by step, and where each cell first fell.

A series is the results folders of one model name, suite name, seed and
scoring whose summaries carry a training step (`metabench run --step N`, or
the step read from a checkpoint folder's name: checkpoint-N, step-N,
global_stepN). A model named after its checkpoint folder (the default name
of `--model hf:runs/x/checkpoint-500`) belongs to the series named after the
folder above it (`x`), so the checkpoints of one run group without --name.

Per (entry, length) cell, pooled over depths as `check` pools them, a series
gives the points (step, mean, 95% interval of the primary metric, from
summary.json) and marks the FIRST checkpoint whose drop from the best earlier
checkpoint is a regression by `check`'s own rule (regress.compare_cells:
beyond the tolerance and significant at alpha, one-sided; paired McNemar /
paired t when the sample ids are shared, else unpaired, and it says so; Holm
across the cells of one comparison when asked). "Best earlier" is, per cell,
the earlier checkpoint with the highest mean; a tie goes to the later step,
the most recent evidence of that level. A later recovery does not unmark a
drop: the first one is what a reader of a training run looks for.

`check_series` holds the LAST checkpoint against the best earlier one per
cell, as `metabench check --series` does: every failure `check` knows
(regression, missing, fewer_samples, more_truncated) fails it, so a cell the
last checkpoint lacks but an earlier one had is a finding, never silence; a
cell only the last checkpoint has cannot be judged and makes the input
unusable.

What makes a series unusable is a one-line error saying what to fix: a
folder without a step beside folders of the same model that have one (pass
--step), two folders at one step, checkpoints run with other suite lengths or
entries, and, for check, folders of several series or of mixed scoring
(generate vs loglik: greedy_match is not exact_match) or fewer than two
checkpoints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from metabench.errors import MetabenchError
from metabench.regress import (CellResult, CellStats, CheckOptions, CheckReport, Run, compare_cells,
                               identity_problems, read_run)
from metabench.results import expand_folders, read_summary, scoring_of, step_of

SeriesKey = tuple[str, str, "int | None", str]  # (model name, suite name, seed, scoring)
CellKey = tuple[str, str]  # (entry, length label)


@dataclass(frozen=True)
class Checkpoint:
    """A results folder as a series sees it: its summary, step and series."""

    folder: Path
    step: int | None
    key: SeriesKey
    summary: dict[str, Any]

    @property
    def at(self) -> int:
        """The step of a checkpoint in a series (`group` keeps only those that have one)."""
        if self.step is None:
            raise MetabenchError(f"{self.folder} carries no training step: rerun it with `metabench run --step N`")
        return self.step


@dataclass(frozen=True)
class Point:
    step: int
    mean: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class Drop:
    """The first checkpoint of a cell whose drop from the best earlier one is a regression by check's rule."""

    step: int
    best_step: int
    result: CellResult  # drop (points), p, test and check's reason


@dataclass(frozen=True)
class CellSeries:
    entry: str
    label: str
    length: int
    primary: str
    points: tuple[Point, ...]  # by step; a checkpoint without the cell has no point
    drop: Drop | None

    @property
    def name(self) -> str:
        return f"{self.entry} @ {self.label}"


@dataclass(frozen=True)
class Series:
    key: SeriesKey
    checkpoints: tuple[Checkpoint, ...]  # by step
    cells: tuple[CellSeries, ...]
    options: CheckOptions

    @property
    def name(self) -> str:
        return self.key[0]

    @property
    def steps(self) -> tuple[int, ...]:
        return tuple(c.at for c in self.checkpoints)


def series_name(model: dict[str, Any]) -> str:
    """The model's name, or the folder above its checkpoint folder when the name is the checkpoint's (checkpoint-500)."""
    name = str(model.get("name") or "")
    if step_of(name) is None:
        return name
    spec = str(model.get("spec") or "")
    kind, colon, target = spec.partition(":")
    above = Path(target.partition("@")[0]).parent.name if colon and kind in ("hf", "vllm") else ""
    return above or name


def checkpoint(folder: str | Path) -> Checkpoint:
    """A results folder's summary, step and series key (its rows are read only for the tests)."""
    folder = Path(folder)
    summary = read_summary(folder)
    step = summary.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise MetabenchError(f"{folder}/summary.json: step {step!r} is not a training step (a whole number >= 0)")
    suite = summary.get("suite") or {}
    key = (series_name(summary.get("model") or {}), str(suite.get("name")), suite.get("seed"),
           scoring_of(summary))
    return Checkpoint(folder, step, key, summary)


def _describe(key: SeriesKey) -> str:
    return f"model {key[0]!r}, suite {key[1]}, seed {key[2]}, scoring {key[3]}"


def group(checkpoints: Sequence[Checkpoint]) -> list[list[Checkpoint]]:
    """Checkpoints with steps grouped by series (first seen first), each by step. A series of one is kept;
    folders without a step and no series are left alone (a report's ordinary runs)."""
    groups: dict[SeriesKey, list[Checkpoint]] = {}
    for c in checkpoints:
        groups.setdefault(c.key, []).append(c)
    out = []
    for key, members in groups.items():
        stepped = [c for c in members if c.step is not None]
        if not stepped:
            continue
        bare = [c for c in members if c.step is None]
        if bare:
            raise MetabenchError(f"{bare[0].folder} carries no training step but belongs to the series of "
                                 f"{stepped[0].folder} ({_describe(key)}): rerun it with `metabench run --step N`, "
                                 "or give it another --name")
        stepped.sort(key=lambda c: c.at)
        for a, b in zip(stepped, stepped[1:]):
            if a.step == b.step:
                raise MetabenchError(f"{a.folder} and {b.folder} are both step {a.step} of {_describe(key)}: "
                                     "keep one, or pass the right --step to the other's run")
        out.append(stepped)
    return out


def _point(cell: dict[str, Any], step: int, where: Path) -> Point:
    try:
        m = cell["metrics"][cell["primary"]]
        return Point(step, float(m["mean"]), float(m["ci_low"]), float(m["ci_high"]), int(cell["n"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise MetabenchError(f"{where}/summary.json: a cell lacks or has a bad {exc}") from None


def best_earlier(earlier: Sequence[tuple[Checkpoint, Run]]) -> dict[CellKey, tuple[int, CellStats]]:
    """Per (entry, length) cell, the earlier checkpoint with the highest mean (ties: the later step)."""
    best: dict[CellKey, tuple[int, CellStats]] = {}
    for cp, run in earlier:  # by step, so >= lets a tie go to the later step
        for (entry, label, depth), s in run.stats.items():
            if depth is None and ((entry, label) not in best or s.mean >= best[entry, label][1].mean):
                best[entry, label] = (cp.at, s)
    return best


def against_best(earlier: Sequence[tuple[Checkpoint, Run]], run: Run, options: CheckOptions
                 ) -> tuple[list[str], list[tuple[int, CellResult]], tuple[str, ...]]:
    """One checkpoint's cells against the best earlier ones, by check's rule: (problems, (best step, result), notes)."""
    best = best_earlier(earlier)
    problems, results, notes = compare_cells([s for _, s in best.values()], run, options)
    step_of_base = {k: step for k, (step, _) in best.items()}
    return problems, [(step_of_base[r.base.entry, r.base.label], r) for r in results], notes


def build(members: Sequence[Checkpoint], options: CheckOptions = CheckOptions()) -> Series:
    """A series from its checkpoints (one series, by step): points per cell and each cell's first drop."""
    runs = [read_run(c.folder) for c in members]
    for cp, run in zip(members[1:], runs[1:]):
        differ = identity_problems(runs[0].suite, run.suite)
        if differ:
            raise MetabenchError(f"{cp.folder} and {members[0].folder} ran other suites ({differ[0]}): "
                                 "run every checkpoint of a series with the same suite and lengths")
    drops: dict[CellKey, Drop] = {}
    for k in range(1, len(members)):
        problems, results, _ = against_best(list(zip(members[:k], runs[:k])), runs[k], options)
        if problems:
            raise MetabenchError(f"{members[k].folder}: {problems[0]}")
        for best_step, r in results:
            if r.status == "regression" and (r.base.entry, r.base.label) not in drops:
                drops[r.base.entry, r.base.label] = Drop(members[k].at, best_step, r)
    points: dict[CellKey, list[Point]] = {}
    shape: dict[CellKey, tuple[int, str]] = {}
    for cp in members:
        for cell in cp.summary.get("cells", []):
            if cell.get("depth") is None:
                key = (str(cell.get("entry")), str(cell.get("length_label")))
                points.setdefault(key, []).append(_point(cell, cp.at, cp.folder))
                shape.setdefault(key, (int(cell.get("length") or 0), str(cell.get("primary"))))
    cells = tuple(CellSeries(e, label, shape[e, label][0], shape[e, label][1], tuple(pts), drops.get((e, label)))
                  for (e, label), pts in points.items())
    return Series(members[0].key, tuple(members), cells, options)


def load_series(folders: Sequence[str | Path], options: CheckOptions = CheckOptions()) -> list[Series]:
    """The series of two or more checkpoints among results folders (or folders of them), for a report; other
    folders are left alone."""
    return [build(g, options) for g in group([checkpoint(f) for f in expand_folders(folders)]) if len(g) >= 2]


def series_members(dirs: Sequence[str | Path]) -> list[Checkpoint]:
    """The checkpoints of exactly one series, by step, from results folders or folders of them."""
    cps = [checkpoint(f) for f in expand_folders(dirs)]
    bare = [c for c in cps if c.step is None]
    if bare:
        raise MetabenchError(f"{bare[0].folder} carries no training step: rerun it with `metabench run --step N` "
                             "(or from a folder named checkpoint-N)")
    keys = list(dict.fromkeys(c.key for c in cps))
    if len({k[3] for k in keys}) > 1:
        by = {k[3]: next(c.folder for c in cps if c.key[3] == k[3]) for k in keys}
        raise MetabenchError("mixed scoring: " + ", ".join(f"{f} is {s}" for s, f in by.items())
                             + "; greedy_match is not exact_match: check one scoring's checkpoints at a time")
    if len(keys) > 1:
        raise MetabenchError(f"the folders hold {len(keys)} series ({'; '.join(map(_describe, keys))}): "
                             "pass the checkpoints of one model, suite, seed and scoring")
    (members,) = group(cps)
    if len(members) < 2:
        raise MetabenchError(f"a series needs two or more checkpoints; found {len(members)} "
                             f"({', '.join(str(c.folder) for c in members)})")
    return members


def check_series(dirs: Sequence[str | Path], options: CheckOptions = CheckOptions()) -> CheckReport:
    """The last checkpoint against the best earlier one per cell, by check's rule (see the module docstring)."""
    members = series_members(dirs)
    runs = [read_run(c.folder) for c in members]
    last, run = members[-1], runs[-1]
    problems = [f"{cp.folder}: {d}" for cp, r in zip(members[:-1], runs[:-1])
                for d in identity_problems(r.suite, run.suite)[:1]]
    earlier = list(zip(members[:-1], runs[:-1]))
    more, results, notes = against_best(earlier, run, options)
    seen = {(k[0], k[1]) for r in runs[:-1] for k in r.stats if k[2] is None}
    new = [f"{k[0]} @ {k[1]}" for k in run.stats if k[2] is None and (k[0], k[1]) not in seen]
    if new:
        problems.append(f"no earlier checkpoint has {len(new)} of the last one's cells ({', '.join(new[:3])}): "
                        "run the same suite on every checkpoint")
    cells = []
    for best_step, r in results:
        if r.status == "missing":
            reason = f"step {best_step} had it (n={r.base.n}) but the last checkpoint, step {last.step}, does not"
        else:
            reason = f"best earlier step {best_step} -> step {last.step}: {r.reason}"
        cells.append(dataclasses.replace(r, reason=reason))
    steps = ", ".join(str(c.step) for c in members[:-1])
    return CheckReport(f"{last.folder} (step {last.step})", f"the best earlier checkpoint per cell (steps {steps})",
                       options, run.suite, tuple(problems + more), tuple(cells), notes,
                       against="the best earlier checkpoint")
