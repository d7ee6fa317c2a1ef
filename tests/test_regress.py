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

from metabench.cli import main
from metabench.errors import MetabenchError
from metabench import stats
from metabench.regress import CheckOptions, check, format_report, load_baseline, write_baseline
from metabench.stats import holm
from metabench.results import read_rows, summarize_rows, write_json
from metabench.simulate import ENTRIES, MULTIVALUE, write_results

ROOT = Path(__file__).resolve().parents[1]
KV_1X = "kv_recall/single @ 1x (4096 tokens)"


def only(entry: str, length: int, p: float, other: float):
    """Accuracy `p` in one (entry, length) cell, `other` everywhere else."""
    return lambda e, n, d: p if (e == entry and n == length) else other


def without_outcomes(baseline: Path, out: Path) -> Path:
    """The baseline as format /1 wrote it: no per-sample scores, so every cell is tested unpaired."""
    data = json.loads(baseline.read_text())
    data["format"] = "metabench.baseline/1"
    for c in data["cells"]:
        c.pop("outcomes"), c.pop("stderr")
    write_json(out, data)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A baseline at 80% on 200 samples per cell (with and without per-sample scores), and variants of it."""
    d = tmp_path_factory.mktemp("runs")
    base = write_results(d / "base", samples=200, accuracy=0.8)
    baseline = write_baseline(base, d / "baselines" / "base.json")
    unpaired = without_outcomes(baseline, d / "baselines" / "unpaired.json")
    drop10 = write_results(d / "drop10", samples=200, accuracy=only("kv_recall/single", 4096, 0.7, 0.8))
    return {"dir": d, "base": base, "baseline": baseline, "unpaired": unpaired, "drop10": drop10}


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
    rows = [r for r in read_rows(runs["base"] / "results.jsonl") if r["entry"] == "kv_recall/single" and r["length"] == 4096]
    assert kv.outcomes == {r["id"]: r["scores"]["string_match_all"] for r in rows}
    assert any(c.depth is not None for c in b["cells"])  # needle depth cells are kept too


def test_identical_results_pass(runs, capsys):
    assert main(["check", str(runs["base"]), "--baseline", str(runs["baseline"])]) == 0
    out = capsys.readouterr().out
    assert out.startswith("metabench check: PASS: 18 cells hold")


def test_ten_point_drop_on_200_samples_fails_naming_the_cell(runs):
    code, out = run_cli("check", str(runs["drop10"]), "--baseline", str(runs["baseline"]))
    assert code == 1, out
    assert "FAIL: 1 regression of 18 cells" in out
    assert (f"REGRESSION   {KV_1X}: 80.0% -> 70.0% (-10.0 points; n 200 -> 200; paired on 200 samples: "
            "20 worse, 0 better; one-sided McNemar exact test p=9.54e-07)") in out
    report = check(runs["drop10"], runs["baseline"])
    assert [c.base.name for c in report.failures] == [KV_1X]
    assert report.failures[0].p == pytest.approx(0.5 ** 20)  # 20 discordant samples, all lost
    unpaired = check(runs["drop10"], runs["unpaired"])
    assert [c.base.name for c in unpaired.failures] == [KV_1X]
    assert unpaired.failures[0].p == pytest.approx(0.01047, abs=1e-4)  # z = 0.1 / sqrt(.75 * .25 * 2 / 200)
    assert unpaired.notes == ("unpaired: the baseline has no per-sample scores (18 of 18 cells)",)


def test_holm_correction_lets_one_p_001_cell_among_18_pass(runs):
    report = check(runs["drop10"], runs["unpaired"], CheckOptions(correction="holm"))
    assert report.exit_code == 0 and not report.failures
    assert check(runs["drop10"], runs["baseline"], CheckOptions(correction="holm")).exit_code == 1  # paired: p 1e-6


def flip(entry: str, length: int, worse: set[int], better: set[int]):
    """A row mutation: samples `worse` of one cell answer wrong, samples `better` answer right."""
    def mutate(row: dict) -> None:
        if row["entry"] == entry and row["length"] == length:
            if row["index"] in worse:
                row["prediction"] = "I do not know"
            elif row["index"] in better:
                row["prediction"] = row["target"]
    return mutate


def test_paired_test_sees_drops_the_unpaired_test_misses(tmp_path):
    base = write_results(tmp_path / "base", samples=50, accuracy=0.8)
    paired = write_baseline(base, tmp_path / "b.json")
    unpaired = without_outcomes(paired, tmp_path / "b1.json")
    right = [r["index"] for r in read_rows(base / "results.jsonl")
             if r["entry"] == "copy/short" and r["length"] == 4096 and r["scores"]["exact_match"] == 1.0]
    wrong = [r["index"] for r in read_rows(base / "results.jsonl")
             if r["entry"] == "copy/short" and r["length"] == 4096 and r["scores"]["exact_match"] == 0.0]
    # 5 of 50 samples lost, none gained: 10 points. McNemar p = 1/32; the z-test's p ~ 0.12.
    five = write_results(tmp_path / "five", samples=50, accuracy=0.8, mutate=flip("copy/short", 4096, set(right[:5]), set()))
    r = check(five, paired)
    assert [(c.base.name, c.test, c.p) for c in r.failures] == [("copy/short @ 1x (4096 tokens)", "mcnemar", 1 / 32)]
    u = check(five, unpaired)
    cell = next(c for c in u.cells if c.base.name == "copy/short @ 1x (4096 tokens)")
    assert u.exit_code == 0 and cell.test == "z" and 0.1 < cell.p < 0.15
    # The same 10-point net drop, but 8 samples lost and 3 gained: churn, not a clear drop (p = 0.11).
    churn = write_results(tmp_path / "churn", samples=50, accuracy=0.8,
                          mutate=flip("copy/short", 4096, set(right[:8]), set(wrong[:3])))
    cell = next(c for c in check(churn, paired).cells if c.base.name == "copy/short @ 1x (4096 tokens)")
    assert (cell.status, cell.drop) == ("ok", pytest.approx(10.0))
    assert "8 worse, 3 better" in cell.reason and cell.p == pytest.approx(232 / 2048)  # P(X >= 8), X ~ Bin(11, 1/2): (165 + 55 + 11 + 1) / 2^11


def test_different_sample_ids_fall_back_to_unpaired_and_say_so(tmp_path, capsys):
    base = write_results(tmp_path / "base", samples=50, accuracy=0.8)
    baseline = write_baseline(base, tmp_path / "b.json")

    def rename(row: dict) -> None:
        if row["entry"] == "parity/default":
            row["id"] = row["id"] + "-other"

    other = write_results(tmp_path / "other", samples=50, accuracy=0.8, mutate=rename)
    report = check(other, baseline)
    tests = {c.base.name: c.test for c in report.cells}
    assert tests["parity/default @ 1x (4096 tokens)"] == "z" and tests["copy/short @ 1x (4096 tokens)"] == "mcnemar"
    assert report.notes == ("unpaired: the sample ids differ (3 of 18 cells)",)
    assert main(["check", str(other), "--baseline", str(baseline)]) == 0
    assert "NOTE         unpaired: the sample ids differ (3 of 18 cells)" in capsys.readouterr().out


def test_small_or_noisy_drops_on_50_samples_pass_unpaired(tmp_path):
    entries = ENTRIES + (MULTIVALUE,)
    base = write_results(tmp_path / "base", samples=50, entries=entries, accuracy=0.8)
    baseline = without_outcomes(write_baseline(base, tmp_path / "b.json"), tmp_path / "b1.json")
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
    report = check(fewer, runs["baseline"])  # a subset of the baseline's samples: never paired
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
    with pytest.raises(MetabenchError, match="counts n=10 for parity/default @ 2x but results.jsonl holds 7"):
        write_baseline(run, tmp_path / "b.json")


def test_every_output_format_is_well_formed(runs, tmp_path):
    report = check(runs["drop10"], runs["baseline"])
    github = format_report(report, "github").splitlines()
    assert github == [f"::error title=metabench regression%3A {KV_1X}::80.0%25 -> 70.0%25 (-10.0 points; "
                      f"n 200 -> 200; paired on 200 samples: 20 worse, 0 better; one-sided McNemar exact test p=9.54e-07)"]
    unpaired = format_report(check(runs["drop10"], runs["unpaired"]), "github").splitlines()
    assert unpaired[0] == ("::warning title=metabench check::unpaired: the baseline has no per-sample scores "
                           "(18 of 18 cells)") and "one-sided z test p=0.0105" in unpaired[1]
    passing = format_report(check(runs["base"], runs["baseline"]), "github").splitlines()
    assert len(passing) == 1 and re.fullmatch(r"::notice title=[^:,]+::PASS: 18 cells hold.*", passing[0])

    md = format_report(report, "markdown")
    assert md.startswith("### ❌ metabench check: FAIL: 1 regression of 18 cells")
    header = "| status | cell | baseline | results | change (points) | p |"
    assert md.count(header) == 2  # the failures, then all cells in <details>
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert all(line.count(" | ") == 5 for line in rows)
    assert f"| **regression** | {KV_1X} | 80.0% (n=200) | 70.0% (n=200) | -10.0 | 9.54e-07 |" in md

    out = tmp_path / "ci" / "junit.xml"
    assert main(["check", str(runs["drop10"]), "--baseline", str(runs["baseline"]), "--format", "junit",
                 "--output", str(out)]) == 1
    suite = ET.parse(out).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("18", "1", "0")
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [("metabench.kv_recall/single", "1x (4096 tokens)")]
    assert failed[0].find("failure").get("type") == "regression"


def test_two_proportion_and_welch_tests_by_hand():
    import math

    def side(k: int, n: int) -> stats.Side:
        return stats.Side(n, k / n, 0.0, True)

    p, test = stats.unpaired_drop_p(side(160, 200), side(140, 200))
    z = 0.1 / (0.75 * 0.25 * 2 / 200) ** 0.5
    assert test == "z" and p == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)))
    assert stats.unpaired_drop_p(side(50, 50), side(50, 50)) == (1.0, "z")  # identical 100%: no spread, no drop
    assert stats.unpaired_drop_p(side(140, 200), side(160, 200))[0] > 0.9  # an improvement is not a drop
    # Welch with df = 1 on each... both sides n = 2, sd = 0.1: t = 0.2 / 0.1 = 2, df = 2; t(2) sf = (1 - t / sqrt(t^2 + 2)) / 2
    p, test = stats.unpaired_drop_p(stats.Side(2, 0.5, 0.1, False), stats.Side(2, 0.3, 0.1, False))
    assert test == "welch" and p == pytest.approx((1 - 2 / math.sqrt(6)) / 2)


def test_paired_tests_by_hand():
    import math

    # McNemar exact: 7 lost and 2 gained of 9 discordant; P(X >= 7), X ~ Bin(9, 1/2) = (36 + 9 + 1) / 512.
    base = [1.0] * 7 + [0.0] * 2 + [1.0] * 5 + [0.0] * 3
    cur = [0.0] * 7 + [1.0] * 2 + [1.0] * 5 + [0.0] * 3
    assert stats.paired_drop_p(base, cur) == (pytest.approx(46 / 512), "mcnemar")
    assert stats.paired_drop_p(base, base) == (1.0, "mcnemar")
    # Paired t on graded scores: differences 0.1 and 0.3, t = 0.2 / (0.1414 / sqrt 2) = 2 with df = 1 (Cauchy).
    p, test = stats.paired_drop_p([0.5, 0.9], [0.4, 0.6])
    assert test == "paired_t" and p == pytest.approx(0.5 - math.atan(2) / math.pi)
    assert stats.paired_drop_p([0.5, 0.75], [0.25, 0.5]) == (0.0, "paired_t")  # every sample 0.25 lower: exact
    with pytest.raises(ValueError):
        stats.paired_drop_p([1.0], [])


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


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


# --- lm-eval's results_*.json -------------------------------------------------------------

def lm_eval_results(folder: Path, recall: object = 0.5, recall_se: object = 0.05, ruler: object = 80.0) -> Path:
    """A results_*.json as lm-eval 0.4 writes it: a metabench task, a RULER-style task in percents with
    N/A standard errors and -1 for a length it did not run, a group and a lower-is-better metric."""
    data = {
        "results": {
            "metabench_recall": {"alias": "metabench_recall", "exact_match,none": recall,
                                 "exact_match_stderr,none": recall_se, "exact_match@512,none": 0.6,
                                 "exact_match@512_stderr,none": 0.07},
            "niah_single_1": {"alias": "niah_single_1", "4096,none": ruler, "4096_stderr,none": "N/A",
                              "8192,none": -1, "8192_stderr,none": "N/A"},
            "wikitext": {"alias": "wikitext", "word_perplexity,none": 40.0, "word_perplexity_stderr,none": "N/A"},
            "metabench_all": {"alias": "metabench_all", "exact_match,none": 0.5, "exact_match_stderr,none": 0.05},
        },
        "groups": {"metabench_all": {"exact_match,none": 0.5}},
        "group_subtasks": {"metabench_all": ["metabench_recall"]},
        "higher_is_better": {"metabench_recall": {"exact_match": True, "exact_match@512": True},
                             "niah_single_1": {"4096": True, "8192": True}, "wikitext": {"word_perplexity": False}},
        "n-samples": {"metabench_recall": {"original": 100, "effective": 100},
                      "niah_single_1": {"original": 50, "effective": 50},
                      "wikitext": {"original": 62, "effective": 62}},
        "versions": {"metabench_recall": 1.0, "niah_single_1": 1.0, "wikitext": 2.0, "metabench_all": 1.0},
        "config": {"model": "hf", "random_seed": 0},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results_2026-01-01T00-00-00.json"
    path.write_text(json.dumps(data))
    return path


def test_lm_eval_results_as_baseline_and_check(tmp_path, capsys):
    base = lm_eval_results(tmp_path / "base")
    assert main(["baseline", str(base.parent), "--out", str(tmp_path / "b.json")]) == 0
    assert "left out niah_single_1 8192,none: no value (N/A or -1)" in capsys.readouterr().out
    cells = {c.name: c for c in load_baseline(tmp_path / "b.json")["cells"]}
    assert sorted(cells) == ["metabench_recall exact_match,none", "metabench_recall exact_match@512,none",
                             "niah_single_1 4096,none"]  # no group, no perplexity, no -1
    assert (cells["niah_single_1 4096,none"].mean, cells["niah_single_1 4096,none"].stderr) == (0.8, None)  # percents

    same = check(base, tmp_path / "b.json")
    assert same.exit_code == 0 and same.notes == (
        "no standard error (N/A): judged by the tolerance alone (1 of 3 cells)",)
    # 0.5 -> 0.3 with standard errors 0.05: z = 0.2 / sqrt(0.005) = 2.83, p = 0.0023.
    worse = check(lm_eval_results(tmp_path / "worse", recall=0.3), tmp_path / "b.json")
    assert [(c.base.name, c.test) for c in worse.failures] == [("metabench_recall exact_match,none", "z_stderr")]
    assert worse.failures[0].p == pytest.approx(0.00234, abs=1e-4)
    # No standard error: a drop beyond the tolerance fails on the tolerance alone; within it, passes.
    assert [c.base.name for c in check(lm_eval_results(tmp_path / "r", ruler=75.0), tmp_path / "b.json").failures] == [
        "niah_single_1 4096,none"]
    assert check(lm_eval_results(tmp_path / "r2", ruler=79.0), tmp_path / "b.json").exit_code == 0


@pytest.mark.parametrize("placeholder", ["N/A", -1, None])
def test_lm_eval_placeholders_are_missing_never_zero(tmp_path, capsys, placeholder):
    write_baseline(lm_eval_results(tmp_path / "base"), tmp_path / "b.json")
    cand = lm_eval_results(tmp_path / "cand", recall=placeholder)
    assert main(["check", str(cand), "--baseline", str(tmp_path / "b.json")]) == 1
    out = capsys.readouterr().out
    assert "MISSING      metabench_recall exact_match,none: in the baseline (n=100) but no value (N/A or -1)" in out
    # A metabench results folder against an lm-eval baseline is a different suite: unusable.
    folder = write_results(tmp_path / "folder", samples=5, accuracy=0.8)
    assert check(folder, tmp_path / "b.json").exit_code == 2


def test_a_rise_in_truncated_answers_is_a_finding_of_its_own(tmp_path, capsys):
    def cut(k: int):
        def mutate(row):
            hit = row["entry"] == "parity/default" and row["length_label"] == "1x" and row["index"] < k
            row["finish_reason"] = "length" if hit else "stop"
        return mutate

    base = write_results(tmp_path / "base", samples=200, accuracy=0.8, mutate=cut(0))
    baseline = write_baseline(base, tmp_path / "base.json")
    assert check(write_results(tmp_path / "few", samples=200, accuracy=0.8, mutate=cut(3)), baseline).exit_code == 0
    many = write_results(tmp_path / "many", samples=200, accuracy=0.8, mutate=cut(30))  # same scores, more cut off
    assert main(["check", str(many), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "FAIL: 1 more truncated of 18 cells" in out
    assert "MORE_TRUNCATED parity/default @ 1x (4096 tokens): answers cut off at the token cap rose from 0/200 to 30/200" in out
    raw = json.loads(baseline.read_text())  # a baseline that records no finish reasons tests scores only
    for c in raw["cells"]:
        c.pop("truncated")
    baseline.write_text(json.dumps(raw))
    assert all(c.truncated is None for c in load_baseline(baseline)["cells"])  # not recorded, not 0
    assert check(many, baseline).exit_code == 0


def test_a_graded_cell_of_one_sample_is_judged_by_the_tolerance_not_passed():
    """Welch's test needs a variance per side: with one graded sample a drop is untestable, never p = 1."""
    from metabench.regress import CellStats, compare

    def cell(n: int, mean: float, sd: float) -> CellStats:
        return CellStats("copy/short", "1x", 1024, None, "token_accuracy", n, mean, sd, False, None)

    one = compare(cell(1, 0.9, 0.0), cell(5, 0.3, 0.2))
    assert one.p is None and "judged by the tolerance alone" in one.detail
    assert compare(cell(5, 0.9, 0.1), cell(5, 0.3, 0.2)).test == "welch"


def test_an_lm_eval_task_in_percents_is_read_the_baseline_s_way(tmp_path):
    """RULER reports percents; a collapse to under one point must not read as a fraction (a 'gain' to 90%)."""
    base = lm_eval_results(tmp_path / "base")
    baseline = write_baseline(base, base.parent / "b.json")
    collapsed = check(lm_eval_results(base.parent / "collapsed", ruler=0.9), baseline)
    (cell,) = [c for c in collapsed.cells if c.base.name == "niah_single_1 4096,none"]
    assert cell.status == "regression" and cell.drop == pytest.approx(79.1)
    # a baseline whose task read as fractions against results in percents: unusable, not guessed
    low = lm_eval_results(base.parent / "low", ruler=0.5)
    low_baseline = write_baseline(low, base.parent / "low.json")
    report = check(base, low_baseline)
    assert report.exit_code == 2 and any("cannot tell which the task reports" in p for p in report.problems)
