"""metabench report --analysis: the Analyses section against the analysis.json files it shows.

The files come from the real `metabench analyze` on tiny random checkpoints
(conftest.analysis_dirs). Every number in the section is read back from the
HTML and compared with the file it came from, so nothing here is a number
typed by hand. The page in Chromium is covered by test_report.py, whose
page carries analyses too.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from metabench.analysis import PAPER_ENTROPY_DROP
from metabench.cli import main
from metabench.report import ReportOptions, build_report
from metabench.simulate import write_results


class Tables(HTMLParser):
    """Text of every cell of every table with an id, row by row, and the text of elements by class."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.by_class: dict[str, list[str]] = {}
        self.titles: list[str] = []  # SVG <title> texts, in page order
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._span: tuple[str, list[str]] | None = None
        self._title: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "b" and a.get("class"):
            self._span = (a["class"], [])
        elif tag == "title":
            self._title = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "b" and self._span:
            self.by_class.setdefault(self._span[0], []).append("".join(self._span[1]))
            self._span = None
        elif tag == "title" and self._title is not None:
            self.titles.append("".join(self._title))
            self._title = None

    def handle_data(self, data):
        for sink in (self._cell, self._span[1] if self._span else None, self._title):
            if sink is not None:
                sink.append(data)


def parse(html: str) -> Tables:
    t = Tables()
    t.feed(html)
    return t


def body(table: list[list[str]]) -> list[list[str]]:
    """Rows below the header (a thead of one row)."""
    return table[1:]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return write_results(tmp_path_factory.mktemp("results") / "alpha", model="alpha-7b", context=4096, samples=5)


def load(folder: Path) -> dict:
    return json.loads((folder / "analysis.json").read_text())


def check_section(html: str, names: list[str], files: list[dict]) -> None:
    """Every number of the Analyses section equals the file it came from, at the precision printed."""
    page = parse(html)
    summary = body(page.tables["analysis-summary"])
    assert [r[0] for r in summary] == names
    for i, (row, a) in enumerate(zip(summary, files)):
        att = a["attention"]
        heads = att["per_head"]
        drop = sum(h["entropy_drop"] for h in heads) / len(heads)  # the mean, from the per-head rows
        assert row[1:6] == [f"{att['mean_entropy_meta']:.3f}", f"{att['mean_entropy_other']:.3f}", f"{drop:+.3f}",
                            f"{PAPER_ENTROPY_DROP:.2f}", f"{att['mean_max_logit_diff']:+.3f}"]
        assert page.by_class["entropy-drop"][i] == f"{drop:+.3f}"
        assert page.by_class["induction-first"][i] == f"{a['induction']['first']:.3f}"
        assert page.by_class["induction-second"][i] == f"{a['induction']['second']:.3f}"
        # Per layer and head: meta, other, drop, max logits, in the file's sign conventions.
        rows = body(page.tables[f"analysis-{i}-heads"])
        want = sorted(heads, key=lambda h: (h["layer"], h["head"]))
        assert rows[:-1] == [[str(h["layer"]), str(h["head"])] + [
            f"{h[k]:.3f}" for k in ("entropy_meta", "entropy_other")] + [f"{h['entropy_drop']:+.3f}"] + [
            f"{h[k]:.3f}" for k in ("max_logit_meta", "max_logit_other")] + [f"{h['max_logit_diff']:+.3f}"]
            for h in want]
        assert rows[-1][3] == f"{drop:+.3f}"  # the footer's mean
        # Heatmap: layer x head of the drop.
        grid = {(int(r[0]), j): v for r in body(page.tables[f"analysis-{i}-heatmap"]) for j, v in enumerate(r[1:])}
        assert grid == {(h["layer"], h["head"]): f"{h['entropy_drop']:+.3f}" for h in heads}
        # Residual cosine: one tooltip per layer and series.
        tips = [t for t in page.titles if t.startswith("layer ")]
        for c in a["residual_cosine"]:
            assert f"layer {c['layer']}, meta-token positions: {c['cos_meta']:.3f}" in tips
            assert f"layer {c['layer']}, other positions: {c['cos_other']:.3f}" in tips
        # The zeroed-PE ablation, the paper's Table 2 layout, in percent.
        if "zero_position_ablation" not in a:
            assert f"analysis-{i}-ablation" not in page.tables
            continue
        table = body(page.tables[f"analysis-{i}-ablation"])
        assert [[r[0], r[1], r[3], r[4], r[5]] for r in table] == [
            [z["entry"], z["length"], f"{100 * z['full']:.1f}", f"{100 * z['zeroed']:.1f}",
             f"{100 * (z['zeroed'] - z['full']):+.1f}"] for z in a["zero_position_ablation"]]


@pytest.mark.slow
def test_section_shows_the_files_numbers(run, analysis_dirs, tmp_path):
    out = build_report([run], tmp_path / "index.html", ReportOptions(samples=False),
                       analyses=[analysis_dirs["meta"], analysis_dirs["nometa"] / "analysis.json"])
    files = [load(analysis_dirs["meta"]), load(analysis_dirs["nometa"])]
    assert files[0]["attention"]["per_head"][0]["entropy_drop"] != files[0]["attention"]["per_head"][1]["entropy_drop"]
    check_section(out.read_text(encoding="utf-8"), ["meta", "nometa"], files)  # named by the checkpoint folder


@pytest.mark.slow
def test_ablation_numbers_come_from_the_file(run, analysis_dirs, tmp_path):
    """A random model scores 0 everywhere; distinct scores show the table reads each row's own."""
    a = load(analysis_dirs["meta"])
    for k, row in enumerate(a["zero_position_ablation"]):
        row["full"], row["zeroed"] = (k + 3) / 8, k / 8
    (tmp_path / "edited.json").write_text(json.dumps(a))
    out = build_report([run], tmp_path / "index.html", ReportOptions(samples=False),
                       analyses=[f"edited={tmp_path / 'edited.json'}"])
    check_section(out.read_text(encoding="utf-8"), ["edited"], [a])
    assert "-37.5" in out.read_text(encoding="utf-8")  # (k - (k + 3)) / 8 for every k


@pytest.mark.slow
def test_cli_builds_the_same_bytes_twice(run, analysis_dirs, tmp_path, capsys):
    pages = []
    for k in range(2):
        out = tmp_path / f"site{k}" / "index.html"
        args = ["--analysis", f"tiny meta={analysis_dirs['meta']}", "--analysis", str(analysis_dirs["nometa"])]
        assert main(["report", str(run), "--out", str(out), "--title", "t", *args]) == 0
        pages.append(out.read_bytes())
    assert pages[0] == pages[1]
    html = pages[0].decode()
    assert '<a href="#analyses">Analyses</a>' in html and html.count('<article class="analysis"') == 2
    assert '<a href="#analysis-0"><bdi>tiny meta</bdi></a>' in html
    without = tmp_path / "plain.html"
    assert main(["report", str(run), "--out", str(without)]) == 0
    assert 'id="analyses"' not in without.read_text() and "s-other" not in without.read_text()  # nor its CSS


def _mutations(good: dict) -> list[tuple[str, object, str]]:
    """(what, JSON content, the words the error must say)."""
    missing = json.loads(json.dumps(good))
    del missing["attention"]["per_head"][1]["entropy_meta"]
    text = json.loads(json.dumps(good))
    text["residual_cosine"][0]["cos_meta"] = "0.5"
    twice = json.loads(json.dumps(good))
    twice["attention"]["per_head"].append(twice["attention"]["per_head"][0])
    nan = json.loads(json.dumps(good))
    nan["zero_position_ablation"][0]["full"] = float("nan")
    return [
        ("a list", [good], "the top level is list, not an object"),
        ("a results summary", {"cells": []}, "attention is missing"),
        ("no entropy", missing, "attention.per_head[1].entropy_meta is missing"),
        ("a string", text, "residual_cosine[0].cos_meta is '0.5', not a finite number"),
        ("a head twice", twice, "attention.per_head lists a (layer, head) twice"),
        ("NaN", nan, "zero_position_ablation[0].full is 'nan', not a finite number"),
    ]


@pytest.mark.slow
def test_bad_analysis_input_is_one_line_and_exit_2(run, analysis_dirs, tmp_path, capsys):
    out = tmp_path / "index.html"

    def fails(specs: list[str], *words: str) -> None:
        assert main(["report", str(run), "--out", str(out), *(x for s in specs for x in ("--analysis", s))]) == 2
        err = capsys.readouterr().err
        assert err.startswith("metabench: error: ") and err.count("\n") == 1, err
        for w in words:
            assert w in err, err
        assert not out.exists()  # nothing written

    meta = str(analysis_dirs["meta"])
    fails([str(tmp_path / "nowhere")], "nowhere does not exist", "metabench analyze")
    fails([str(tmp_path)], "has no analysis.json")
    fails([f"={meta}"], "the NAME before '=' is empty")
    fails([meta, meta + "/analysis.json"], "share the name 'meta'", "NAME=PATH")
    (tmp_path / "notes.json").write_text("attention: high\n")
    fails([str(tmp_path / "notes.json")], "notes.json: not JSON")
    for what, content, words in _mutations(load(analysis_dirs["meta"])):
        (tmp_path / "bad.json").write_text(json.dumps(content))
        fails([str(tmp_path / "bad.json")], f"bad.json: {words}", "metabench analyze")


def test_a_published_analysis_renders_its_own_numbers(tmp_path):
    """The committed leaderboards/reproduce-tiny-cpu analysis, read and shown without a model (the quick tier's check)."""
    source = Path(__file__).resolve().parents[1] / "leaderboards" / "reproduce-tiny-cpu" / "analysis-meta.json"
    data = json.loads(source.read_text())
    folder = write_results(tmp_path / "run", model="sim", samples=4)
    html = build_report([folder], tmp_path / "index.html", ReportOptions(samples=False),
                        analyses=[f"tiny-meta={source}"]).read_text(encoding="utf-8")
    page = Tables()
    page.feed(html)
    row = page.tables["analysis-summary"][1]
    assert row[0] == "tiny-meta" and row[3] == f"{data['attention']['mean_entropy_drop']:+.3f}"
    assert row[4] == f"{data['paper']['mean_entropy_drop']:.2f}" == f"{PAPER_ENTROPY_DROP:.2f}"
