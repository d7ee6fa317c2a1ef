"""metabench baseline / check: real results folders (simulated models scored with
metabench.scoring), the real CLI, and statistics checked by hand and against scipy."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml
from helpers_results import ENTRIES, MULTIVALUE, write_results

from metabench.cli import main
from metabench.errors import MetabenchError
from metabench.regress import (
    CheckOptions,
    betainc,
    check,
    drop_p_value,
    format_report,
    holm,
    load_baseline,
    normal_sf,
    t_sf,
    write_baseline,
)
from metabench.results import read_rows, summarize_rows, write_json

ROOT = Path(__file__).resolve().parents[1]
KV_1X = "kv_recall/single @ 1x (4096 tokens)"


def only(entry: str, length: int, p: float, other: float):
    """Accuracy `p` in one (entry, length) cell, `other` everywhere else."""
    return lambda e, n, d: p if (e == entry and n == length) else other


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A baseline at 80% on 200 samples per cell, and variants of it."""
    d = tmp_path_factory.mktemp("runs")
    base = write_results(d / "base", samples=200, accuracy=0.8)
    baseline = write_baseline(base, d / "baselines" / "base.json")
    drop10 = write_results(d / "drop10", samples=200, accuracy=only("kv_recall/single", 4096, 0.7, 0.8))
    return {"dir": d, "base": base, "baseline": baseline, "drop10": drop10}


def run_cli(*args: str) -> tuple[int, str]:
    r = subprocess.run([sys.executable, "-m", "metabench", *args], capture_output=True, text=True, cwd=ROOT)
    return r.returncode, r.stdout + r.stderr


def test_baseline_keeps_what_a_later_test_needs(runs):
    b = load_baseline(runs["baseline"])
    assert b["suite"]["name"] == "smoke" and b["suite"]["seed"] == 0
    assert b["suite"]["lengths"] == {"0.5x": 2048, "1x": 4096, "2x": 8192}
    assert all("samples" not in e for e in b["suite"]["entries"])
    overall = [c for c in b["cells"] if c.depth is None]
    assert len(overall) == len(ENTRIES) * 3
    kv = next(c for c in overall if c.entry == "kv_recall/single" and c.label == "1x")
    assert (kv.n, kv.binary, kv.successes, kv.mean) == (200, True, 160, 0.8)
    assert any(c.depth is not None for c in b["cells"])  # needle depth cells are kept too


def test_identical_results_pass(runs, capsys):
    assert main(["check", str(runs["base"]), "--baseline", str(runs["baseline"])]) == 0
    out = capsys.readouterr().out
    assert out.startswith("metabench check: PASS: 18 cells hold")


def test_ten_point_drop_on_200_samples_fails_naming_the_cell(runs):
    code, out = run_cli("check", str(runs["drop10"]), "--baseline", str(runs["baseline"]))
    assert code == 1, out
    assert "FAIL: 1 regression of 18 cells" in out
    assert f"REGRESSION   {KV_1X}: 80.0% -> 70.0% (-10.0 points" in out
    report = check(runs["drop10"], runs["baseline"])
    assert [c.base.name for c in report.failures] == [KV_1X]
    assert report.failures[0].p == pytest.approx(0.01047, abs=1e-4)  # z = 0.1 / sqrt(.75 * .25 * 2 / 200)


def test_holm_correction_lets_one_p_001_cell_among_18_pass(runs):
    report = check(runs["drop10"], runs["baseline"], CheckOptions(correction="holm"))
    assert report.exit_code == 0 and not report.failures


def test_small_or_noisy_drops_on_50_samples_pass(tmp_path):
    entries = ENTRIES + (MULTIVALUE,)
    base = write_results(tmp_path / "base", samples=50, entries=entries, accuracy=0.8)
    baseline = write_baseline(base, tmp_path / "b.json")
    # 1 point on the non-binary multivalue needle (4 answers x 50 samples: 2 of 200 answers fewer,
    # taken from the 17 samples at depth 0: 54 -> 52 of 68 answers).
    one = write_results(tmp_path / "one", samples=50, entries=entries,
                        accuracy=lambda e, n, d: 52 / 68 if (e, n, d) == ("needle/multivalue", 4096, 0.0) else 0.8)
    r = check(one, baseline)
    cell = next(c for c in r.cells if c.base.entry == "needle/multivalue" and c.base.label == "1x")
    assert (cell.status, cell.test, cell.drop) == ("ok", "welch", pytest.approx(1.0))
    # One sample of 50 is 2 points: at the tolerance, not beyond it (float noise must not flip it).
    two = write_results(tmp_path / "two", samples=50, entries=entries, accuracy=only("copy/short", 4096, 0.78, 0.8))
    assert check(two, baseline).exit_code == 0
    # 6 points on 50 samples is beyond the tolerance but within noise (p ~ 0.24).
    six = write_results(tmp_path / "six", samples=50, entries=entries, accuracy=only("copy/short", 4096, 0.74, 0.8))
    r = check(six, baseline)
    cell = next(c for c in r.cells if c.base.entry == "copy/short" and c.base.label == "1x")
    assert r.exit_code == 0 and cell.drop == pytest.approx(6.0) and 0.2 < cell.p < 0.3
    # A real collapse on the same 50 samples does fail, for binary and non-binary metrics alike.
    bad = write_results(tmp_path / "bad", samples=50, entries=entries,
                        accuracy=lambda e, n, d: 0.4 if n == 8192 and e in ("copy/short", "needle/multivalue") else 0.8)
    r = check(bad, baseline)
    assert sorted((c.base.name, c.test) for c in r.failures) == [
        ("copy/short @ 2x (8192 tokens)", "z"), ("needle/multivalue @ 2x (8192 tokens)", "welch")]


def drop_cell(folder: Path, entry: str, label: str) -> None:
    """Make a run incomplete: remove one (entry, length)'s rows and re-summarise."""
    rows = [r for r in read_rows(folder / "results.jsonl") if not (r["entry"] == entry and r["length_label"] == label)]
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    summary = json.loads((folder / "summary.json").read_text())
    summary["cells"] = summarize_rows(rows)
    write_json(folder / "summary.json", summary)


def test_missing_cell_and_fewer_samples_fail_with_their_reason(runs, tmp_path, capsys):
    missing = write_results(tmp_path / "missing", samples=200, accuracy=0.8)
    drop_cell(missing, "parity/default", "2x")
    assert main(["check", str(missing), "--baseline", str(runs["baseline"])]) == 1
    out = capsys.readouterr().out
    assert "MISSING      parity/default @ 2x (8192 tokens): in the baseline (n=200) but not in the results" in out
    fewer = write_results(tmp_path / "fewer", samples=100, accuracy=0.8)
    report = check(fewer, runs["baseline"])
    assert report.exit_code == 1 and {c.status for c in report.failures} == {"fewer_samples"}
    assert len(report.failures) == 18 and "100 samples, fewer than the baseline's 200" in report.failures[0].reason


def test_other_suite_or_seed_is_unusable_input(runs, tmp_path, capsys):
    seed1 = write_results(tmp_path / "seed1", samples=200, accuracy=0.8, seed=1)
    assert main(["check", str(seed1), "--baseline", str(runs["baseline"])]) == 2
    out = capsys.readouterr().out
    assert "UNUSABLE" in out and "different seed: baseline 0, results 1" in out
    other = write_results(tmp_path / "other", samples=200, accuracy=0.8, suite="default", context=8192)
    problems = check(other, runs["baseline"]).problems
    assert any(p.startswith("different suite: baseline 'smoke'") for p in problems)
    assert any(p.startswith("different lengths") for p in problems)
    junit = ET.fromstring(format_report(check(other, runs["baseline"]), "junit"))
    assert int(junit.find("testsuite").get("errors")) == len(problems) > 0


def test_bad_inputs_exit_2_with_one_line(runs, tmp_path):
    code, out = run_cli("check", str(runs["base"]), "--baseline", str(tmp_path / "nope.json"))
    assert code == 2 and out.strip().count("\n") == 0 and "does not exist" in out
    code, out = run_cli("check", str(tmp_path), "--baseline", str(runs["baseline"]))
    assert code == 2 and "not a results folder" in out
    (tmp_path / "junk.json").write_text('{"format": "something else"}')
    code, out = run_cli("check", str(runs["base"]), "--baseline", str(tmp_path / "junk.json"))
    assert code == 2 and "is not a metabench baseline" in out
    code, out = run_cli("check", str(runs["base"]), "--baseline", str(runs["baseline"]), "--alpha", "1.5")
    assert code == 2 and "--alpha must be in (0, 1)" in out


def test_summary_that_disagrees_with_rows_is_an_error(tmp_path):
    run = write_results(tmp_path / "run", samples=10, accuracy=0.8)
    rows = list(read_rows(run / "results.jsonl"))[:-3]  # three rows lost, summary not redone
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(MetabenchError, match="disagree on cell parity/default @ 2x"):
        write_baseline(run, tmp_path / "b.json")


def test_every_output_format_is_well_formed(runs, tmp_path):
    report = check(runs["drop10"], runs["baseline"])
    github = format_report(report, "github").splitlines()
    assert github == [f"::error title=metabench regression%3A {KV_1X}::80.0%25 -> 70.0%25 (-10.0 points; "
                      f"n 200 -> 200; one-sided z-test p=0.0105)"]
    passing = format_report(check(runs["base"], runs["baseline"]), "github").splitlines()
    assert len(passing) == 1 and re.fullmatch(r"::notice title=[^:,]+::PASS: 18 cells hold.*", passing[0])

    md = format_report(report, "markdown")
    assert md.startswith("### ❌ metabench check: FAIL: 1 regression of 18 cells")
    header = "| status | cell | baseline | results | change (points) | p |"
    assert md.count(header) == 2  # the failures, then all cells in <details>
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert all(line.count(" | ") == 5 for line in rows)
    assert f"| **regression** | {KV_1X} | 80.0% (n=200) | 70.0% (n=200) | -10.0 | 0.0105 |" in md

    out = tmp_path / "ci" / "junit.xml"
    assert main(["check", str(runs["drop10"]), "--baseline", str(runs["baseline"]), "--format", "junit",
                 "--output", str(out)]) == 1
    suite = ET.parse(out).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("18", "1", "0")
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [("metabench.kv_recall/single", "1x (4096 tokens)")]
    assert failed[0].find("failure").get("type") == "regression"


def test_two_proportion_test_by_hand():
    from metabench.regress import CellStats

    def cell(k: int, n: int) -> CellStats:
        return CellStats("e", "1x", 4096, None, "exact_match", n, k / n, 0.0, True, k)

    p, test = drop_p_value(cell(160, 200), cell(140, 200))
    assert test == "z" and p == pytest.approx(normal_sf(0.1 / (0.75 * 0.25 * 2 / 200) ** 0.5))
    assert drop_p_value(cell(50, 50), cell(50, 50)) == (1.0, "z")  # identical 100%: no spread, no drop
    assert drop_p_value(cell(140, 200), cell(160, 200))[0] > 0.9  # an improvement is not a drop


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def test_t_and_beta_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    special = pytest.importorskip("scipy.special")
    for t in (-3.0, -0.5, 0.0, 0.7, 1.96, 4.5):
        for df in (1.0, 2.5, 9.0, 48.3, 400.0):
            assert t_sf(t, df) == pytest.approx(stats.t.sf(t, df), rel=1e-9, abs=1e-12)
    for a, b, x in ((0.5, 0.5, 0.3), (2.0, 7.0, 0.9), (30.0, 0.5, 0.99)):
        assert betainc(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-10)
    assert normal_sf(1.6448536269514722) == pytest.approx(0.05)


def test_example_workflow_runs_the_smoke_suite_and_the_check():
    wf = yaml.safe_load((ROOT / ".github/workflows/checkpoint-regression.yml").read_text())
    steps = wf["jobs"]["check"]["steps"]
    commands = "\n".join(s.get("run", "") for s in steps)
    run = next(line for line in commands.splitlines() if 'metabench run --model "hf:${CHECKPOINT}"' in line)
    assert "--suite smoke" in run and "--out results/ckpt" in run  # one line: the step is a folded scalar
    assert 'metabench check results/ckpt --baseline "$BASELINE" --format github' in commands
    for fmt in ("junit", "markdown"):
        assert f"--format {fmt} --output" in commands
    # The flags the workflow uses exist in the real parser.
    from metabench.cli import build_parser

    build_parser().parse_args(["check", "results/ckpt", "--baseline", "b.json", "--format", "junit", "--output", "x.xml"])
