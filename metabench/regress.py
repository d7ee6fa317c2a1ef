"""Baselines and regression checks: a checkpoint's results against a stored baseline, for CI.

A baseline (`metabench baseline RESULTS --out FILE`, format metabench.baseline/1)
keeps the run's suite identity (name, seed, lengths in tokens, entries without
their sample counts), its model, and per summary cell the primary metric's n,
mean, sample sd, whether every score was 0/1 and, if so, the successes: enough
to test a later run against it without the baseline's rows.

`check` compares the (entry, length) cells pooled over depths; depth cells
are finer views of the same samples and would only multiply the tests. A cell
is a regression when its drop (baseline minus results, in points) is both
beyond the tolerance (default 2 points) and significant at alpha (default 0.05,
one-sided): a two-proportion z-test with pooled variance when both sides' scores
are all 0/1, otherwise Welch's t-test on the stored means and sds. Requiring
both keeps noise on small samples (a 6-point drop on 50 samples has p ~ 0.24)
and tiny but certain drops from failing a build. `--correction holm` adjusts
p-values across cells (Holm-Bonferroni) for a family-wise alpha; it is off by
default because a real 10-point drop on 200 samples (p ~ 0.01) should fail.

Nothing passes silently: a baseline cell missing from the results and a cell
with fewer samples than the baseline fail with their reason (exit 1). A
different suite, seed, lengths, entries or primary metric makes the comparison
meaningless: "unusable input", exit 2, reported in every output format.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree as ET

from metabench.errors import MetabenchError
from metabench.results import read_rows, read_summary, write_json

BASELINE_FORMAT = "metabench.baseline/1"
Format = Literal["text", "markdown", "github", "junit"]
Status = Literal["ok", "regression", "missing", "fewer_samples"]
Key = tuple[str, str, "float | None"]  # (entry, length label, depth)


@dataclass(frozen=True)
class CellStats:
    entry: str
    label: str
    length: int
    depth: float | None
    primary: str
    n: int
    mean: float
    sd: float  # sample sd (n - 1), 0 for n = 1
    binary: bool  # every score was 0 or 1
    successes: int | None  # when binary

    @property
    def key(self) -> Key:
        return (self.entry, self.label, self.depth)

    @property
    def name(self) -> str:
        where = f"{self.entry} @ {self.label} ({self.length} tokens)"
        return where if self.depth is None else f"{where} depth {self.depth:g}"


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
        n, mean = len(v), sum(v) / len(v)
        binary = all(x in (0.0, 1.0) for x in v)
        sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else 0.0
        out[key] = CellStats(key[0], key[1], int(rs[0]["length"]), key[2], primary, n, mean, sd, binary,
                             int(sum(v)) if binary else None)
    return out


def suite_identity(suite: dict[str, Any]) -> dict[str, Any]:
    """What two runs must share to be compared: sample counts excluded (checked per cell)."""
    entries = [{k: v for k, v in e.items() if k != "samples"} if isinstance(e, dict) else e
               for e in suite.get("entries", [])]
    return {"name": suite.get("name"), "seed": suite.get("seed"), "lengths": suite.get("lengths"), "entries": entries}


def read_run(folder: str | Path) -> tuple[dict[str, Any], dict[Key, CellStats]]:
    """summary.json and per-cell stats from results.jsonl, checked against each other."""
    folder = Path(folder)
    summary = read_summary(folder)
    rows_path = folder / "results.jsonl"
    if not rows_path.is_file():
        raise MetabenchError(f"{folder}: no results.jsonl; baselines and checks need the per-sample scores")
    try:
        stats = cell_stats(list(read_rows(rows_path)))
    except KeyError as exc:
        raise MetabenchError(f"{rows_path}: a row lacks key {exc}") from None
    for c in summary.get("cells", []):
        s = stats.get((c["entry"], c["length_label"], c["depth"]))
        if s is None or s.n != c["n"]:
            raise MetabenchError(f"{folder}: summary.json and results.jsonl disagree on cell {c['entry']} @ "
                                 f"{c['length_label']} (n {c['n']} vs {s.n if s else 0}); the run is incomplete or edited")
    return summary, stats


def make_baseline(results: str | Path) -> dict[str, Any]:
    summary, stats = read_run(results)
    return {
        "format": BASELINE_FORMAT,
        "source": str(results),
        "model": summary.get("model"),
        "suite": suite_identity(summary.get("suite", {})),
        "provenance": summary.get("provenance", {}),
        "cells": [asdict(s) for s in stats.values()],
    }


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
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise MetabenchError(f"{path} is not a metabench baseline (format {BASELINE_FORMAT!r})")
    try:
        data["cells"] = [CellStats(**c) for c in data["cells"]]
    except (KeyError, TypeError) as exc:
        raise MetabenchError(f"baseline {path}: bad cell ({exc})") from None
    return data


# --- statistics -----------------------------------------------------------------

def normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df degrees of freedom."""
    tail = 0.5 * betainc(df / 2, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def drop_p_value(base: CellStats, cur: CellStats) -> tuple[float, str]:
    """One-sided p-value for 'the results are worse than the baseline', and the test's name."""
    if base.binary and cur.binary:
        pooled = (base.successes + cur.successes) / (base.n + cur.n)
        se = math.sqrt(pooled * (1 - pooled) * (1 / base.n + 1 / cur.n))
        if se == 0:  # both 0% or both 100%: identical
            return 1.0, "z"
        return normal_sf((base.mean - cur.mean) / se), "z"
    a, b = base.sd ** 2 / base.n, cur.sd ** 2 / cur.n
    if a + b == 0:  # no spread on either side: the means are exact
        return (0.0 if base.mean > cur.mean else 1.0), "welch"
    num = (a + b) ** 2
    den = (a * a / (base.n - 1) if base.n > 1 else 0.0) + (b * b / (cur.n - 1) if cur.n > 1 else 0.0)
    df = num / den if den > 0 else 1.0
    return t_sf((base.mean - cur.mean) / math.sqrt(a + b), df), "welch"


def holm(p: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


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

    @property
    def failures(self) -> tuple[CellResult, ...]:
        return tuple(c for c in self.cells if c.failed)

    @property
    def exit_code(self) -> int:
        return 2 if self.problems else (1 if self.failures else 0)

    def verdict(self) -> str:
        if self.problems:
            return f"UNUSABLE: {len(self.problems)} problem(s) with the input: {self.problems[0]}"
        if not self.failures:
            return f"PASS: {len(self.cells)} cells hold against the baseline"
        counts: dict[str, int] = {}
        for c in self.failures:
            counts[c.status] = counts.get(c.status, 0) + 1
        return "FAIL: " + ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items()) + f" of {len(self.cells)} cells"


def identity_problems(base: dict[str, Any], cur: dict[str, Any]) -> list[str]:
    out = []
    for key, what in (("name", "suite"), ("seed", "seed"), ("lengths", "lengths (label: tokens)")):
        if base.get(key) != cur.get(key):
            out.append(f"different {what}: baseline {base.get(key)!r}, results {cur.get(key)!r}")
    if base.get("entries") != cur.get("entries"):
        out.append(f"different suite entries: baseline {json.dumps(base.get('entries'))}, results {json.dumps(cur.get('entries'))}")
    return out


def check(results: str | Path, baseline: str | Path, options: CheckOptions = CheckOptions()) -> CheckReport:
    base = load_baseline(baseline)
    summary, stats = read_run(results)
    cur_suite = suite_identity(summary.get("suite", {}))
    problems = identity_problems(base["suite"], cur_suite)
    tested: list[tuple[CellStats, CellStats, float, float, str]] = []
    cells: list[CellResult] = []
    for b in (c for c in base["cells"] if c.depth is None):
        c = stats.get(b.key)
        if c is None:
            cells.append(CellResult(b, None, "missing", None, None, "", f"in the baseline (n={b.n}) but not in the results"))
        elif c.primary != b.primary:
            problems.append(f"{b.name}: primary metric {c.primary!r}, baseline {b.primary!r}")
        elif c.n < b.n:
            cells.append(CellResult(b, c, "fewer_samples", 100 * (b.mean - c.mean), None, "",
                                    f"{c.n} samples, fewer than the baseline's {b.n}"))
        else:
            p, test = drop_p_value(b, c)
            tested.append((b, c, round(100 * (b.mean - c.mean), 9), p, test))  # round: 80%-78% is 2.000...02
    adjusted = holm([t[3] for t in tested]) if options.correction == "holm" else [t[3] for t in tested]
    for (b, c, drop, _, test), p in zip(tested, adjusted):
        bad = drop > options.tolerance and p < options.alpha
        why = (f"{100 * b.mean:.1f}% -> {100 * c.mean:.1f}% ({0.0 - drop:+.1f} points; n {b.n} -> {c.n}; "
               f"one-sided {'z' if test == 'z' else 'Welch t'}-test p={p:.3g})")
        cells.append(CellResult(b, c, "regression" if bad else "ok", drop, p, test, why))
    return CheckReport(str(results), str(baseline), options, cur_suite, tuple(problems), tuple(cells))


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
        lines = [head, f"  {where}"] + [f"  UNUSABLE     {p}" for p in report.problems]
        lines += [f"  {c.status.upper():<12} {c.base.name}: {c.reason}" for c in report.failures]
        return "\n".join(lines) + "\n"
    if fmt == "github":
        lines = [f"::error title={_gh('metabench check: unusable input', True)}::{_gh(p)}" for p in report.problems]
        lines += [f"::error title={_gh(f'metabench {c.status}: {c.base.name}', True)}::{_gh(c.reason)}" for c in report.failures]
        if report.exit_code == 0:
            lines.append(f"::notice title={_gh('metabench check passed', True)}::{_gh(report.verdict() + '; ' + where)}")
        return "\n".join(lines) + "\n"
    if fmt == "markdown":
        icon = {0: "✅", 1: "❌", 2: "⚠️"}[report.exit_code]
        out = [f"### {icon} {_md(head)}", "", _md(where), ""]
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
        for k, v in (("results", report.results), ("baseline", report.baseline), ("setting", setting)):
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
