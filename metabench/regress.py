"""Baselines and regression checks: a checkpoint's results against a stored baseline, for CI.

A baseline (`metabench baseline RESULTS --out FILE`, format metabench.baseline/2)
keeps the run's suite identity (name, seed, lengths in tokens, entries without
their sample counts), its model, and per summary cell the primary metric's n,
mean, sample sd, whether every score was 0/1 and, if so, the successes; per
(entry, length) cell also every sample's id and primary score ("outcomes"),
so a later run of the same suite and seed can be compared sample by sample.
Baselines in format metabench.baseline/1 (no outcomes) are still read.

`check` compares the (entry, length) cells pooled over depths; depth cells
are finer views of the same samples and would only multiply the tests. A cell
is a regression when its drop (baseline minus results, in points) is both
beyond the tolerance (default 2 points) and significant at alpha (default 0.05,
one-sided). The test (metabench/stats.py, scipy.stats):

- paired, when every baseline sample id is among the results' (same suite,
  seed and tokenizer give the same samples): McNemar's exact test for 0/1
  scores, the paired t-test for graded ones, over the baseline's samples;
- unpaired otherwise, and the report says so: a two-proportion z-test for
  0/1 scores, Welch's t-test for graded ones.

Requiring both keeps noise on small samples and tiny but certain drops from
failing a build. `--correction holm` adjusts p-values across cells
(Holm-Bonferroni) for a family-wise alpha; it is off by default because a real
drop that one cell shows clearly should fail.

The rule lives in `compare_cells`, which training-checkpoint series
(metabench/series.py, `check --series`) share: a checkpoint's cells against
the best earlier checkpoint's, by the same tests and tolerance.

lm-eval's results_*.json (metabench/lm_eval/scores.py) work as results and as
baselines: one cell per task and "metric,filter" key, tested with a z-test on
the two values and their `_stderr`. A value of "N/A" or -1 is missing, never
zero: such a cell fails as missing. A cell without a standard error is
judged by the tolerance alone, and the report says so.

A rise in answers cut off at the token cap (finish_reason length) is a
finding of its own ("more_truncated", exit 1), by the same rule: beyond the
tolerance in points of the cell's samples and significant (one-sided
two-proportion z-test). Where either side records no finish reasons (an
lm-eval import, a baseline from before they were recorded) it is not tested.

Nothing passes silently: a baseline cell missing from the results and a cell
with fewer samples than the baseline fail with their reason (exit 1). A
different suite, seed, lengths, entries or primary metric, or a baseline with
no cell for some (entry, length) of the results (or none at all), makes the
comparison meaningless: "unusable input", exit 2, reported in every output
format.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree as ET

from metabench import stats as st
from metabench.errors import MetabenchError
from metabench.lm_eval.scores import is_lm_eval_output, read_scores
from metabench.results import check_counts, load_rows, read_summary, write_json

BASELINE_FORMAT = "metabench.baseline/2"
READABLE_FORMATS = ("metabench.baseline/1", BASELINE_FORMAT)
Format = Literal["text", "markdown", "github", "junit"]
Status = Literal["ok", "regression", "missing", "fewer_samples", "more_truncated"]
Key = tuple[str, str, "float | None"]  # (entry, length label, depth); lm-eval: (task, "metric,filter", None)


@dataclass(frozen=True)
class CellStats:
    entry: str
    label: str
    length: int  # tokens; 0 for an lm-eval cell
    depth: float | None
    primary: str
    n: int
    mean: float
    sd: float  # sample sd (n - 1), 0 for n = 1
    binary: bool  # every score was 0 or 1
    successes: int | None  # when binary
    stderr: float | None = None  # lm-eval cells: the reported standard error (None: "N/A")
    outcomes: dict[str, float] | None = None  # (entry, length) cells: primary score per sample id
    truncated: int | None = None  # answers cut off at the token cap; None where rows record no finish_reason
    percent: bool | None = None  # lm-eval cells: the task reported percents (divided by 100); None: not lm-eval

    @property
    def key(self) -> Key:
        return (self.entry, self.label, self.depth)

    @property
    def name(self) -> str:
        if self.length == 0:
            return f"{self.entry} {self.label}"
        where = f"{self.entry} @ {self.label} ({self.length} tokens)"
        return where if self.depth is None else f"{where} depth {self.depth:g}"

    @property
    def side(self) -> st.Side:
        return st.Side(self.n, self.mean, self.sd, self.binary)


def cell_stats(rows: list[dict[str, Any]]) -> dict[Key, CellStats]:
    """Primary-metric statistics per (entry, length) and per (entry, length, depth), as summarize_rows groups."""
    groups: dict[Key, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["entry"], r["length_label"], None), []).append(r)
        if r.get("depth") is not None:
            groups.setdefault((r["entry"], r["length_label"], float(r["depth"])), []).append(r)
    out = {}
    for key, rs in groups.items():
        primary = rs[0]["primary"]
        v = [float(r["scores"][primary]) for r in rs]
        s = st.side(v)
        outcomes = {r["id"]: x for r, x in zip(rs, v)} if key[2] is None else None
        known = [r["finish_reason"] for r in rs if r.get("finish_reason")]
        out[key] = CellStats(key[0], key[1], int(rs[0]["length"]), key[2], primary, s.n, s.mean, s.sd, s.binary,
                             int(sum(v)) if s.binary else None, outcomes=outcomes,
                             truncated=known.count("length") if known else None)
    return out


def suite_identity(suite: dict[str, Any]) -> dict[str, Any]:
    """What two runs must share to be compared: sample counts excluded (checked per cell)."""
    entries = [{k: v for k, v in e.items() if k != "samples"} if isinstance(e, dict) else e
               for e in suite.get("entries", [])]
    return {"name": suite.get("name"), "seed": suite.get("seed"), "lengths": suite.get("lengths"), "entries": entries}


@dataclass(frozen=True)
class Run:
    """What a check reads from a results folder or an lm-eval results file."""

    suite: dict[str, Any]  # suite_identity
    model: dict[str, Any] | None
    provenance: dict[str, Any]
    stats: dict[Key, CellStats]
    absent: dict[Key, str]  # cells present with no value (lm-eval's "N/A" or -1): key -> what was there


def _read_lm_eval(source: str | Path) -> Run:
    path, identity, scores = read_scores(source)
    stats: dict[Key, CellStats] = {}
    absent: dict[Key, str] = {}
    for s in scores:
        if s.value is None:
            absent[(s.task, s.key, None)] = "no value (N/A or -1)"
            continue
        stats[(s.task, s.key, None)] = CellStats(s.task, s.key, 0, None, s.metric, s.n, s.value, 0.0, False, None,
                                                 stderr=s.stderr, percent=s.percent)
    return Run(identity, None, {"source": str(path)}, stats, absent)


def read_run(folder: str | Path) -> Run:
    """A results folder (summary.json and per-cell stats from results.jsonl, checked against each other) or lm-eval output."""
    if is_lm_eval_output(folder):
        return _read_lm_eval(folder)
    folder = Path(folder)
    summary = read_summary(folder)
    rows_path = folder / "results.jsonl"
    if not rows_path.is_file():
        raise MetabenchError(f"{folder}: no results.jsonl; baselines and checks need the per-sample scores")
    rows = load_rows(rows_path)
    check_counts(summary, rows, folder)
    return Run(suite_identity(summary.get("suite", {})), summary.get("model"), summary.get("provenance", {}),
               cell_stats(rows), {})


def make_baseline(results: str | Path) -> dict[str, Any]:
    run = read_run(results)
    out = {
        "format": BASELINE_FORMAT,
        "source": str(results),
        "model": run.model,
        "suite": run.suite,
        "provenance": run.provenance,
        "cells": [asdict(s) for s in run.stats.values()],
    }
    if run.absent:  # not in the baseline, so not checked: said here and by the CLI
        out["left_out"] = sorted(f"{k[0]} {k[1]}: {why}" for k, why in run.absent.items())
    return out


def write_baseline(results: str | Path, out: str | Path) -> Path:
    write_json(out, make_baseline(results))
    return Path(out)


def load_baseline(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MetabenchError(f"baseline {path} does not exist (make one with `metabench baseline RESULTS --out {path}`)") from None
    except json.JSONDecodeError as exc:
        raise MetabenchError(f"baseline {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
        raise MetabenchError(f"{path} is not a metabench baseline (format {BASELINE_FORMAT!r})")
    try:
        data["cells"] = [CellStats(**c) for c in data["cells"]]
    except (KeyError, TypeError) as exc:
        raise MetabenchError(f"baseline {path}: bad cell ({exc})") from None
    return data


# --- the comparison of one cell -----------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    p: float | None  # one-sided; None: untestable (no standard error), the tolerance decides
    test: str  # a key of stats.TEST_NAMES, or "" when untestable
    detail: str  # what was compared, for the report


def compare(base: CellStats, cur: CellStats) -> Comparison:
    """The one-sided test of 'cur is worse than base': paired when the samples match, else unpaired."""
    if base.length == 0 or cur.length == 0:  # lm-eval cells: a value and its standard error
        if base.stderr is None or cur.stderr is None:
            return Comparison(None, "", "no standard error (N/A): judged by the tolerance alone")
        p, test = st.stderr_drop_p(base.mean, base.stderr, cur.mean, cur.stderr)
        return Comparison(p, test, f"stderr {base.stderr:.3g} -> {cur.stderr:.3g}")
    if base.outcomes and cur.outcomes and base.outcomes.keys() <= cur.outcomes.keys():
        ids = list(base.outcomes)
        b, c = [base.outcomes[i] for i in ids], [cur.outcomes[i] for i in ids]
        p, test = st.paired_drop_p(b, c)
        lost, gained = sum(x > y for x, y in zip(b, c)), sum(y > x for x, y in zip(b, c))
        return Comparison(p, test, f"paired on {len(ids)} samples: {lost} worse, {gained} better")
    why = "the baseline has no per-sample scores" if not base.outcomes else "the sample ids differ"
    if not (base.side.binary and cur.side.binary) and min(base.n, cur.n) < 2:
        return Comparison(None, "", f"unpaired: {why}; one graded sample has no variance: judged by the tolerance alone")
    p, test = st.unpaired_drop_p(base.side, cur.side)
    return Comparison(p, test, f"unpaired: {why}")


# --- the check ------------------------------------------------------------------

@dataclass(frozen=True)
class CheckOptions:
    tolerance: float = 2.0  # points (percent)
    alpha: float = 0.05
    correction: Literal["none", "holm"] = "none"

    def __post_init__(self) -> None:
        if not self.tolerance >= 0:
            raise MetabenchError(f"--tolerance is a drop in points, >= 0; got {self.tolerance}")
        if not 0 < self.alpha < 1:
            raise MetabenchError(f"--alpha must be in (0, 1), got {self.alpha}")
        if self.correction not in ("none", "holm"):
            raise MetabenchError(f"--correction must be none or holm, got {self.correction!r}")


@dataclass(frozen=True)
class CellResult:
    base: CellStats
    cur: CellStats | None
    status: Status
    drop: float | None  # points, positive = worse
    p: float | None
    test: str
    reason: str

    @property
    def failed(self) -> bool:
        return self.status != "ok"


@dataclass(frozen=True)
class CheckReport:
    results: str
    baseline: str
    options: CheckOptions
    suite: dict[str, Any]
    problems: tuple[str, ...]  # unusable input
    cells: tuple[CellResult, ...]
    notes: tuple[str, ...] = ()  # how cells were tested, when not paired: shown in every format
    against: str = "the baseline"  # what the cells were held against, in the verdict

    @property
    def failures(self) -> tuple[CellResult, ...]:
        return tuple(c for c in self.cells if c.failed)

    @property
    def exit_code(self) -> int:
        return 2 if self.problems else (1 if self.failures else 0)

    def verdict(self) -> str:
        if self.problems:
            return f"UNUSABLE: {len(self.problems)} problem(s) with the input: {self.problems[0]}"
        n = sum(1 for c in self.cells if c.status != "more_truncated")  # findings of their own, not cells
        if not self.failures:
            return f"PASS: {n} cells hold against {self.against}"
        counts: dict[str, int] = {}
        for c in self.failures:
            counts[c.status] = counts.get(c.status, 0) + 1
        return "FAIL: " + ", ".join(f"{k} {s.replace('_', ' ')}" for s, k in counts.items()) + f" of {n} cells"


def identity_problems(base: dict[str, Any], cur: dict[str, Any]) -> list[str]:
    out = []
    for key, what in (("name", "suite"), ("seed", "seed"), ("lengths", "lengths (label: tokens)")):
        if base.get(key) != cur.get(key):
            out.append(f"different {what}: baseline {base.get(key)!r}, results {cur.get(key)!r}")
    if base.get("entries") != cur.get("entries"):
        out.append(f"different suite entries: baseline {json.dumps(base.get('entries'))}, results {json.dumps(cur.get('entries'))}")
    return out


def coverage_problems(base_cells: list[CellStats], stats: dict[Key, CellStats]) -> list[str]:
    """A baseline must hold a cell for every (entry, length) of the results: a check of nothing passes nothing."""
    covered = {b.key for b in base_cells if b.depth is None}
    if not covered:
        return ["the baseline holds no cells; make it again with `metabench baseline RESULTS --out FILE`"]
    bare = [f"{s.entry} @ {s.label}" for key, s in stats.items() if key[2] is None and key not in covered]
    if not bare:
        return []
    more = f" and {len(bare) - 3} more" if len(bare) > 3 else ""
    return [f"the baseline has no cell for {len(bare)} of the results' (entry, length) pairs "
            f"({', '.join(bare[:3])}{more}); make it from a run of the same suite and lengths"]


def check(results: str | Path, baseline: str | Path, options: CheckOptions = CheckOptions()) -> CheckReport:
    base = load_baseline(baseline)
    run = read_run(results)
    problems = identity_problems(base["suite"], run.suite) + coverage_problems(base["cells"], run.stats)
    more, cells, notes = compare_cells(base["cells"], run, options)
    return CheckReport(str(results), str(baseline), options, run.suite, tuple(problems + more), cells, notes)


def compare_cells(base_cells: list[CellStats], run: Run, options: CheckOptions
                  ) -> tuple[list[str], tuple[CellResult, ...], tuple[str, ...]]:
    """Every (entry, length) cell of `base_cells` against the run's: (problems, cell results and findings, notes).

    The one rule of a regression, shared by `check` and by checkpoint series (metabench/series.py)."""
    problems: list[str] = []
    tested: list[tuple[CellStats, CellStats, float, Comparison]] = []
    cells: list[CellResult] = []
    for b in (c for c in base_cells if c.depth is None):
        c = run.stats.get(b.key)
        if c is not None and b.percent is not None and c.percent != b.percent:
            if not b.percent:
                problems.append(f"{b.name}: the baseline's values read as fractions, the results' as percents; "
                                "cannot tell which the task reports: make the baseline from a run that scored above 1%")
                continue
            # every value of the task is at most 1 in the results: percents under one point, not fractions
            c = dataclasses.replace(c, mean=c.mean / 100, stderr=None if c.stderr is None else c.stderr / 100,
                                    percent=True)
        if c is None:
            why = run.absent.get(b.key, "not in the results")
            cells.append(CellResult(b, None, "missing", None, None, "", f"in the baseline (n={b.n}) but {why}"))
        elif c.primary != b.primary:
            problems.append(f"{b.name}: primary metric {c.primary!r}, baseline {b.primary!r}")
        elif c.n < b.n:
            cells.append(CellResult(b, c, "fewer_samples", 100 * (b.mean - c.mean), None, "",
                                    f"{c.n} samples, fewer than the baseline's {b.n}"))
        else:  # round: 80%-78% is 2.000...02
            tested.append((b, c, round(100 * (b.mean - c.mean), 9), compare(b, c)))
    findings = [f for b, c, *_ in tested if (f := truncation_finding(b, c, options))]
    raw = [t[3].p for t in tested if t[3].p is not None]
    adjusted = iter(st.holm(raw) if options.correction == "holm" else raw)
    for b, c, drop, cmp in tested:
        p = next(adjusted) if cmp.p is not None else None
        bad = drop > options.tolerance and (p is None or p < options.alpha)
        test = f"one-sided {st.TEST_NAMES[cmp.test]} test p={p:.3g}" if p is not None else "untested"
        why = (f"{100 * b.mean:.1f}% -> {100 * c.mean:.1f}% ({0.0 - drop:+.1f} points; n {b.n} -> {c.n}; "
               f"{cmp.detail}; {test})")
        cells.append(CellResult(b, c, "regression" if bad else "ok", drop, p, cmp.test, why))
    return problems, tuple(cells + findings), _notes(tested)


def _notes(tested: list[tuple[CellStats, CellStats, float, Comparison]]) -> tuple[str, ...]:
    """What the reader must know about how cells were tested: unpaired fallbacks, untestable cells."""
    by_detail: dict[str, int] = {}
    for _, _, _, cmp in tested:
        if cmp.detail.startswith("unpaired") or cmp.p is None:
            by_detail[cmp.detail] = by_detail.get(cmp.detail, 0) + 1
    return tuple(f"{d} ({n} of {len(tested)} cells)" for d, n in by_detail.items())


def truncation_finding(b: CellStats, c: CellStats, options: CheckOptions) -> CellResult | None:
    """A rise in answers cut off at the token cap, tested like a drop in score (tolerance, one-sided z)."""
    if b.truncated is None or c.truncated is None:
        return None  # a side that records no finish reasons (an older baseline, an lm-eval import)
    rise = round(100 * (c.truncated / c.n - b.truncated / b.n), 9)
    finished = [st.side([0.0] * k + [1.0] * (n - k)) for k, n in ((b.truncated, b.n), (c.truncated, c.n))]
    p, _ = st.unpaired_drop_p(*finished)  # a drop in answers that finished
    if not (rise > options.tolerance and p < options.alpha):
        return None
    why = (f"answers cut off at the token cap rose from {b.truncated}/{b.n} to {c.truncated}/{c.n} "
           f"({rise:+.1f} points; one-sided z test p={p:.3g}); raise --max-tokens or look at the outputs")
    return CellResult(b, c, "more_truncated", None, p, "z", why)


# --- output formats ---------------------------------------------------------------

def _gh(text: str, prop: bool = False) -> str:
    """Escape for a GitHub workflow command (data, or a property value with prop=True)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def format_report(report: CheckReport, fmt: Format = "text") -> str:
    o = report.options
    setting = f"tolerance {o.tolerance:g} points, alpha {o.alpha:g} one-sided" + (", Holm" if o.correction == "holm" else "")
    head = f"metabench check: {report.verdict()}"
    where = f"results {report.results} vs baseline {report.baseline} (suite {report.suite.get('name')}, seed {report.suite.get('seed')}; {setting})"
    if fmt == "text":
        lines = [head, f"  {where}"] + [f"  NOTE         {n}" for n in report.notes]
        lines += [f"  UNUSABLE     {p}" for p in report.problems]
        lines += [f"  {c.status.upper():<12} {c.base.name}: {c.reason}" for c in report.failures]
        return "\n".join(lines) + "\n"
    if fmt == "github":
        lines = [f"::warning title={_gh('metabench check', True)}::{_gh(n)}" for n in report.notes]
        lines += [f"::error title={_gh('metabench check: unusable input', True)}::{_gh(p)}" for p in report.problems]
        lines += [f"::error title={_gh(f'metabench {c.status}: {c.base.name}', True)}::{_gh(c.reason)}" for c in report.failures]
        if report.exit_code == 0:
            lines.append(f"::notice title={_gh('metabench check passed', True)}::{_gh(report.verdict() + '; ' + where)}")
        return "\n".join(lines) + "\n"
    if fmt == "markdown":
        icon = {0: "✅", 1: "❌", 2: "⚠️"}[report.exit_code]
        out = [f"### {icon} {_md(head)}", "", _md(where), ""]
        out += [f"- note: {_md(n)}" for n in report.notes]
        out += [f"- **unusable input**: {_md(p)}" for p in report.problems]
        table = ["| status | cell | baseline | results | change (points) | p |", "|---|---|---:|---:|---:|---:|"]
        for c in sorted(report.cells, key=lambda c: (not c.failed, -(c.drop or 0))):
            cur = f"{100 * c.cur.mean:.1f}% (n={c.cur.n})" if c.cur else "missing"
            table.append(f"| {'**' + c.status + '**' if c.failed else c.status} | {_md(c.base.name)} | "
                         f"{100 * c.base.mean:.1f}% (n={c.base.n}) | {cur} | "
                         f"{'' if c.drop is None else f'{0.0 - c.drop:+.1f}'} | {'' if c.p is None else f'{c.p:.3g}'} |")
        if report.failures:
            out += [*table[:2], *table[2:2 + len(report.failures)], ""]
        out += ["<details><summary>All cells</summary>", "", *table, "", "</details>"]
        return "\n".join(out) + "\n"
    if fmt == "junit":
        suite = ET.Element("testsuite", name="metabench check", tests=str(len(report.cells) + len(report.problems)),
                           failures=str(len(report.failures)), errors=str(len(report.problems)))
        props = ET.SubElement(suite, "properties")
        for k, v in (("results", report.results), ("baseline", report.baseline), ("setting", setting),
                     *((f"note {i + 1}", n) for i, n in enumerate(report.notes))):
            ET.SubElement(props, "property", name=k, value=v)
        for i, p in enumerate(report.problems):
            case = ET.SubElement(suite, "testcase", classname="metabench.input", name=f"input {i + 1}")
            ET.SubElement(case, "error", message=p, type="unusable").text = p
        for c in report.cells:
            case = ET.SubElement(suite, "testcase", classname=f"metabench.{c.base.entry}",
                                 name=f"{c.base.label} ({c.base.length} tokens)")
            if c.failed:
                ET.SubElement(case, "failure", message=f"{c.status}: {c.reason}", type=c.status).text = c.reason
            else:
                ET.SubElement(case, "system-out").text = c.reason
        root = ET.Element("testsuites")
        root.append(suite)
        ET.indent(root)
        return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
    raise MetabenchError(f"unknown format {fmt!r}: choose text, markdown, github or junit")
