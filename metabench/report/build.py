"""Build the leaderboard: results folders -> one self-contained HTML file.

The page must open offline and travel as a single CI artifact, so it has no
external resource at all: CSS and JS are inline in the template, charts are
inline SVG, and nothing is fetched. Every string from a results folder
(model names, entry names, prompts, predictions, provenance) reaches the page
through jinja2 autoescape; the template marks nothing `|safe` and the page's
script reads data from the DOM only, never from interpolated strings.

Runs are ranked by average score, ties broken by the increasing-weight
average, then by name; every column of the tables can be re-sorted in the
page. Output is deterministic (no timestamps): the same folders give the
same bytes, so a committed leaderboard only changes when results do.

Results folders that carry training steps, two or more checkpoints of one
model, suite, seed and scoring (metabench/series.py), add a Series section:
per series a table of score against step per task and length, each cell's
first significant drop from its best earlier checkpoint in words (check's
rule, at check's default tolerance and alpha), and a chart per task and
length with the 95% band and the drop marked.

`metabench analyze` results, when given, add an Analyses section (see
analyses.py): the entropy drop per layer and head as a heatmap on one
diverging colour scale for the whole page, so models compare by colour.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import jinja2
import markupsafe

from metabench.errors import MetabenchError
from metabench.report.analyses import Analysis, load_analyses
from metabench.report.charts import (LayerChart, LineChart, StepChart, diverging_colour, layer_chart, line_chart,
                                     multiple, score_colour, short_steps, short_tokens, step_chart)
from metabench.report.leaderboard import CATEGORY_ORDER, Standing, category_of, standing
from metabench.report.runs import Cell, Run, load_runs
from metabench.series import CellSeries, Point, Series, load_series

TEMPLATE = "template.html.j2"


@dataclass(frozen=True)
class ReportOptions:
    title: str = "metabench leaderboard"
    threshold: float = 85.6  # percent: RULER's absolute effective-length threshold
    relative: float = 85.0  # percent of the run's shortest-length score
    samples: bool = True  # include the sample browsers
    per_cell: int = 4  # samples shown per (entry, length)

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 100:
            raise MetabenchError(f"--threshold is a percent in (0, 100], got {self.threshold}")
        if not 0 < self.relative <= 100:
            raise MetabenchError(f"--relative is a percent of the shortest-length score in (0, 100], got {self.relative}")
        if self.per_cell <= 0:
            raise MetabenchError(f"--samples-per-cell must be positive, got {self.per_cell}")


@dataclass(frozen=True)
class Score:
    """One coloured table cell, in percent."""

    pct: float
    colour: str
    low: float | None = None
    high: float | None = None
    n: int | None = None
    note: str = ""  # answers cut off, failed or empty, when there are any


@dataclass(frozen=True)
class Column:
    length: int
    label: str
    tokens: str  # '4k'
    multiple: str  # '2x' of the native context, '' when unknown
    beyond: bool  # longer than the native context


@dataclass(frozen=True)
class Row:
    name: str
    cells: tuple[Score | None, ...]
    average: Score | None


@dataclass(frozen=True)
class Grid:
    """A task x length table or a depth x length heatmap."""

    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    footer: Row | None


@dataclass(frozen=True)
class RunView:
    id: str
    rank: int
    run: Run
    standing: Standing
    by_label: dict[str, Score]  # the leaderboard's per-length-label columns
    table: Grid
    categories: Grid
    heatmaps: tuple[Grid, ...]
    charts: tuple[LineChart, ...]
    provenance: tuple[tuple[str, str], ...]
    command: str
    command_recorded: bool
    entries: tuple[str, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Heat:
    """One heatmap cell of a signed value."""

    value: float
    colour: str


@dataclass(frozen=True)
class AnalysisView:
    id: str
    analysis: Analysis
    heads: tuple[int, ...]  # the heatmap's columns
    heatmap: tuple[tuple[int, tuple[Heat | None, ...]], ...]  # (layer, entropy drop per head)
    cosine: LayerChart


@dataclass(frozen=True)
class SeriesRow:
    """One task and length of a series: its score at each step, and its first significant drop in words."""

    name: str
    scores: tuple[Score | None, ...]  # one per step of the series
    drop_step: int | None
    drop: str  # '' when none


@dataclass(frozen=True)
class SeriesView:
    id: str
    series: Series
    steps: tuple[str, ...]  # column headers
    rows: tuple[SeriesRow, ...]
    charts: tuple[tuple[StepChart, SeriesRow], ...]  # a chart per row, whose drop it marks


def score(mean: float, cell: Cell | None = None) -> Score:
    if cell is None:
        return Score(100 * mean, score_colour(mean))
    return Score(100 * mean, score_colour(mean), 100 * cell.low, 100 * cell.high, cell.n, outcome_note(cell))


def outcome_note(cell: Cell) -> str:
    """'3 cut off · 1 empty' for a cell's answers that could not score; '' when every answer finished."""
    parts = [f"{n} {what}" for n, what in ((cell.truncated, "cut off"), (cell.errors, "failed"), (cell.empty, "empty")) if n]
    return " · ".join(parts)


def columns(run: Run) -> tuple[Column, ...]:
    pairs = sorted({(c.length, c.label) for c in run.cells if c.depth is None})
    return tuple(
        Column(n, label, short_tokens(n), multiple(n, run.context), bool(run.context and n > run.context))
        for n, label in pairs
    )


def task_table(run: Run, st: Standing) -> Grid:
    cols = columns(run)
    cells = {(c.entry, c.length): c for c in run.cells if c.depth is None}
    entries = list(dict.fromkeys(c.entry for c in run.cells))
    rows = tuple(
        Row(e, tuple(score(cells[e, col.length].mean, cells[e, col.length]) if (e, col.length) in cells else None
                     for col in cols), score(st.task_scores[e]))
        for e in entries
    )
    footer = Row("average", tuple(score(p.score) for p in st.points), score(st.average))
    return Grid("tasks x lengths", cols, rows, footer)


def category_table(run: Run, st: Standing) -> Grid:
    """Category x length: each cell the mean over the category's entries at that length."""
    cols = columns(run)
    means: dict[tuple[str, int], list[float]] = {}
    for c in run.cells:
        if c.depth is None:
            means.setdefault((category_of(c.task, c.variant), c.length), []).append(c.mean)
    rows = tuple(
        Row(cat, tuple(score(sum(m) / len(m)) if (m := means.get((cat, col.length))) else None for col in cols),
            score(avg))
        for cat, avg in st.category_scores.items()
    )
    return Grid("categories x lengths", cols, rows, None)


def heatmaps(run: Run) -> tuple[Grid, ...]:
    """Depth x length for every entry that has depth cells (needles)."""
    out = []
    cols = columns(run)
    for entry in dict.fromkeys(c.entry for c in run.cells if c.depth is not None):
        cells = {(c.depth, c.length): c for c in run.cells if c.entry == entry and c.depth is not None}
        depths = sorted({d for d, _ in cells})
        rows = []
        for d in depths:
            row = tuple(score(cells[d, col.length].mean, cells[d, col.length]) if (d, col.length) in cells else None
                        for col in cols)
            means = [s.pct / 100 for s in row if s is not None]
            rows.append(Row(f"{100 * d:g}%", row, score(sum(means) / len(means))))
        out.append(Grid(entry, cols, tuple(rows), None))
    return tuple(out)


def charts(run: Run, threshold: float) -> tuple[LineChart, ...]:
    by_entry: dict[str, list[tuple[int, float, float, float]]] = {}
    for c in run.cells:
        if c.depth is None:
            by_entry.setdefault(c.entry, []).append((c.length, c.mean, c.low, c.high))
    return tuple(line_chart(e, pts, run.context, threshold) for e, pts in by_entry.items())


def provenance(run: Run) -> tuple[tuple[tuple[str, str], ...], str, bool]:
    """Provenance as (key, text) pairs, and the command that reproduces the run."""
    items = tuple(
        (k, v if isinstance(v, str) else json.dumps(v, indent=1, sort_keys=True, ensure_ascii=False))
        for k, v in sorted(run.provenance.items()) if k != "command"  # the command is shown on its own
    )
    command = run.provenance.get("command")
    if isinstance(command, list):
        command = shlex.join(map(str, command))
    if command:
        return items, str(command), True
    suite = run.suite
    parts = ["metabench", "run", "--model", run.spec or run.name, "--suite", str(suite.get("name", "?"))]
    if suite.get("seed") is not None:
        parts += ["--seed", str(suite["seed"])]
    return items, shlex.join(parts + ["--out", str(run.folder)]), False


def rank(runs: Sequence[Run], standings: Sequence[Standing]) -> list[int]:
    """Indices of runs, best first."""
    return sorted(range(len(runs)), key=lambda i: (-standings[i].average, -standings[i].weighted_inc, runs[i].name))


def label_order(views: Sequence[RunView]) -> list[str]:
    """Length labels across runs, ordered by their mean position within each run."""
    pos: dict[str, list[int]] = {}
    for v in views:
        for i, p in enumerate(v.standing.points):
            pos.setdefault(p.label, []).append(i)
    return sorted(pos, key=lambda label: (sum(pos[label]) / len(pos[label]), label))


def views(runs: Sequence[Run], options: ReportOptions) -> list[RunView]:
    th, rel = options.threshold / 100, options.relative / 100
    standings = [standing(r.cells, th, rel) for r in runs]
    out = []
    for place, i in enumerate(rank(runs, standings), start=1):
        run, st = runs[i], standings[i]
        items, command, recorded = provenance(run)
        out.append(RunView(
            id=f"run-{i}", rank=place, run=run, standing=st,
            by_label={p.label: score(p.score) for p in st.points},
            table=task_table(run, st), categories=category_table(run, st), heatmaps=heatmaps(run), charts=charts(run, th),
            provenance=items, command=command, command_recorded=recorded,
            entries=tuple(dict.fromkeys(c.entry for c in run.cells)),
            labels=tuple(p.label for p in st.points),
        ))
    return out


def point_score(p: Point) -> Score:
    return Score(100 * p.mean, score_colour(p.mean), 100 * p.ci_low, 100 * p.ci_high, p.n)


def drop_words(cell: CellSeries) -> str:
    """'against step 1000: 80.0% -> 55.0% (...; one-sided McNemar exact test p=...)'; '' when none."""
    d = cell.drop
    return "" if d is None else f"against step {d.best_step}: {d.result.reason}"


def series_views(series: Sequence[Series]) -> list[SeriesView]:
    out = []
    for i, s in enumerate(series):
        rows = []
        for c in s.cells:
            at = {p.step: p for p in c.points}
            rows.append(SeriesRow(c.name, tuple(point_score(at[n]) if n in at else None for n in s.steps),
                                  c.drop.step if c.drop else None, drop_words(c)))
        charts = tuple((step_chart(c.name, [(p.step, p.mean, p.ci_low, p.ci_high) for p in c.points],
                                   c.drop.step if c.drop else None), r) for c, r in zip(s.cells, rows))
        out.append(SeriesView(f"series-{i}", s, tuple(short_steps(n) for n in s.steps), tuple(rows), charts))
    return out


def drop_scale(analyses: Sequence[Analysis]) -> float:
    """Nats at which the entropy-drop colour is full: the largest |drop| on the page."""
    return max((abs(h.entropy_drop) for a in analyses for h in a.heads), default=0.0)


def analysis_views(analyses: Sequence[Analysis]) -> list[AnalysisView]:
    scale = drop_scale(analyses)
    out = []
    for i, a in enumerate(analyses):
        drops = {(h.layer, h.head): Heat(h.entropy_drop, diverging_colour(h.entropy_drop, scale)) for h in a.heads}
        heads = tuple(sorted({h.head for h in a.heads}))
        layers = sorted({h.layer for h in a.heads})
        cosine = layer_chart(f"{a.name}: residual cosine", [c.layer for c in a.cosine],
                             [("meta-token positions", "s-meta", [c.meta for c in a.cosine]),
                              ("other positions", "s-other", [c.other for c in a.cosine])])
        out.append(AnalysisView(f"analysis-{i}", a, heads,
                                tuple((n, tuple(drops.get((n, h)) for h in heads)) for n in layers), cosine))
    return out


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent),
        autoescape=True,  # every string from a results folder is text, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "–" if v is None else f"{v:.1f}"
    env.filters["tokens"] = lambda n: f"{n:,}"
    # a line may break after each "/" of a task name (needle/<wbr>multikey): column headers stay narrow
    env.filters["wbr"] = lambda s: markupsafe.escape(s).replace("/", markupsafe.Markup("/<wbr>"))
    # The page's Content-Security-Policy names its one inline script by hash.
    env.filters["csp_hash"] = lambda s: "'sha256-%s'" % base64.b64encode(hashlib.sha256(str(s).encode()).digest()).decode()
    return env


def render(runs: Sequence[Run], options: ReportOptions, analyses: Sequence[Analysis] = (),
           series: Sequence[Series] = ()) -> str:
    from metabench import __version__

    vs = views(runs, options)
    all_entries = list(dict.fromkeys(e for v in vs for e in v.entries))
    all_categories = [c for c in CATEGORY_ORDER if any(c in v.standing.category_scores for v in vs)]
    return environment().get_template(TEMPLATE).render(
        title=options.title, options=options, views=vs, labels=label_order(vs), entries=all_entries,
        categories=all_categories,
        analyses=analysis_views(analyses), drop_scale=drop_scale(analyses), series=series_views(series),
        version=__version__, short_tokens=short_tokens, multiple=multiple, score=score,
    )


def build_report(
    results: Sequence[str | Path],
    out: str | Path,
    options: ReportOptions = ReportOptions(),
    analyses: Sequence[str | Path] = (),
) -> Path:
    """Read results folders (and `[NAME=]PATH` analyses), write the leaderboard HTML to `out`, return its path."""
    from metabench.schema import atomic_writer

    runs = load_runs(results, options.per_cell if options.samples else None)
    html = render(runs, options, load_analyses(analyses), load_series([r.folder for r in runs]))
    with atomic_writer(out) as f:
        f.write(html)
    return Path(out)

