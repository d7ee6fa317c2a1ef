"""Checkpoint series: drops found where they are (worked by hand), `check --series` through the real CLI, real
runs of the bundled tiny models, and the report's Series section in a real headless Chromium."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metabench.cli import main
from metabench.errors import MetabenchError
from metabench.regress import CheckOptions
from metabench.report import ReportOptions, build_report
from metabench.results import read_rows, summarize_rows, write_json
from metabench.series import check_series, checkpoint, load_series, series_name
from metabench.simulate import ENTRIES, write_results
from test_report import chromium, load

ROOT = Path(__file__).resolve().parents[1]
KV = "kv_recall/single"
FLAT = tuple(e for e in ENTRIES if not e.depths)[:2]  # list_recall/easy, kv_recall/single: small and quick
LENGTHS = {"1x": 4096, "2x": 8192}
EVIL = '<img src=x onerror="window.__pwned=1">run & co'


def only(entry: str, length: int, p: float, other: float = 0.8):
    return lambda e, n, d: p if (e == entry and n == length) else other


def series(root: Path, kv: dict[int, float], samples: int = 60, model: str = "m", **kw) -> Path:
    """One checkpoint folder per step under root (root/checkpoint-STEP), kv_recall @ 1x at the given accuracies."""
    for step, p in kv.items():
        write_results(root / f"checkpoint-{step}", model=model, entries=FLAT, lengths=LENGTHS, samples=samples,
                      step=step, accuracy=only(KV, 4096, p), **kw)
    return root


def run_cli(*args: str) -> tuple[int, str]:
    r = subprocess.run([sys.executable, "-m", "metabench", *args], capture_output=True, text=True, cwd=ROOT)
    return r.returncode, r.stdout + r.stderr


def mcnemar_p(lost: int) -> float:
    """One-sided exact McNemar p with `lost` discordant samples all lost: P(Binomial(lost, 1/2) >= lost)."""
    return 0.5 ** lost


# --- drops found where they are, by hand ----------------------------------------------

def test_a_known_drop_is_found_at_its_step_and_not_earlier(tmp_path):
    """kv @ 1x: 80, 90, 85, 60 % on 60 samples. The same seeded order of samples is right at every accuracy, so
    a lower accuracy loses exactly the difference and gains none: 90 -> 85 loses 3 (p = 1/8, not significant),
    90 -> 60 loses 18 (p = 2^-18)."""
    root = series(tmp_path / "run", {100: 0.8, 200: 0.9, 300: 0.85, 400: 0.6})
    [s] = load_series([root / f"checkpoint-{n}" for n in (300, 100, 400, 200)])  # any order in, by step out
    assert s.steps == (100, 200, 300, 400) and s.key == ("m", "smoke", 0, "generate")
    cells = {c.name: c for c in s.cells}
    assert len(cells) == len(FLAT) * len(LENGTHS)
    kv = cells[f"{KV} @ 1x"]
    assert [(p.step, round(p.mean, 6)) for p in kv.points] == [(100, 0.8), (200, 0.9), (300, 0.85), (400, 0.6)]
    assert all(p.ci_low < p.mean < p.ci_high for p in kv.points)
    assert (kv.drop.step, kv.drop.best_step) == (400, 200)  # not 300: 3 samples lost are not significant
    assert kv.drop.result.p == pytest.approx(mcnemar_p(18))
    assert "paired on 60 samples: 18 worse, 0 better" in kv.drop.result.reason
    assert [c.drop for n, c in cells.items() if n != f"{KV} @ 1x"] == [None] * 3


def test_drop_below_tolerance_is_never_marked(tmp_path):
    """80% -> 78% on 200 samples (4 lost, 0 gained: p = 1/16) is within the default 2-point tolerance;
    a tolerance of 1 point with alpha 0.1 marks it."""
    root = series(tmp_path / "run", {100: 0.8, 200: 0.78}, samples=200)
    [s] = load_series([root])
    assert all(c.drop is None for c in s.cells)
    [s] = load_series([root], CheckOptions(tolerance=1.0, alpha=0.1))
    [kv] = [c for c in s.cells if c.drop]
    assert kv.name == f"{KV} @ 1x" and kv.drop.result.p == pytest.approx(mcnemar_p(4))


def test_paired_when_ids_are_shared_unpaired_otherwise_and_said(tmp_path):
    """80% -> 70% on 60 samples: paired, 6 lost and 0 gained, p = 1/64 (a regression); with other sample ids
    the two-proportion z-test (pooled 0.75) gives p = 0.103 and passes, and the output says it was unpaired."""
    paired = series(tmp_path / "paired", {100: 0.8, 200: 0.7})
    report = check_series([paired])
    [bad] = report.failures
    assert bad.status == "regression" and bad.p == pytest.approx(mcnemar_p(6)) and report.exit_code == 1
    assert "paired on 60 samples" in bad.reason and not report.notes

    def other_ids(row: dict) -> None:
        row["id"] += "/b"

    unpaired = tmp_path / "unpaired"
    write_results(unpaired / "checkpoint-100", model="m", entries=FLAT, lengths=LENGTHS, samples=60, step=100,
                  accuracy=only(KV, 4096, 0.8))
    write_results(unpaired / "checkpoint-200", model="m", entries=FLAT, lengths=LENGTHS, samples=60, step=200,
                  accuracy=only(KV, 4096, 0.7), mutate=other_ids)
    report = check_series([unpaired])
    se = math.sqrt(0.75 * 0.25 * (2 / 60))
    z_p = 0.5 * math.erfc(0.1 / se / math.sqrt(2))
    [kv] = [c for c in report.cells if c.base.entry == KV and c.base.label == "1x"]
    assert (kv.status, kv.test) == ("ok", "z") and kv.p == pytest.approx(z_p) and z_p == pytest.approx(0.103, abs=5e-4)
    assert report.exit_code == 0 and any("unpaired: the sample ids differ" in n for n in report.notes)
    code, out = run_cli("check", "--series", str(unpaired))
    assert code == 0 and "NOTE         unpaired: the sample ids differ" in out


def test_series_names_follow_the_checkpoint_folder():
    assert series_name({"name": "checkpoint-500", "spec": "hf:runs/llama-x/checkpoint-500"}) == "llama-x"
    assert series_name({"name": "global_step20", "spec": "vllm:/ckpt/run7/global_step20@main"}) == "run7"
    assert series_name({"name": "tiny", "spec": "hf:reference_model/tiny"}) == "tiny"
    assert series_name({"name": "step-3", "spec": "openai:http://127.0.0.1:8000/v1"}) == "step-3"


# --- check --series through the real CLI ---------------------------------------------------

def test_check_series_exit_codes_through_the_cli(tmp_path):
    steady = series(tmp_path / "steady", {100: 0.8, 200: 0.8, 300: 0.82})
    code, out = run_cli("check", "--series", str(steady))
    assert code == 0 and out.startswith("metabench check: PASS: 4 cells hold against the best earlier checkpoint")
    assert "checkpoint-300 (step 300)" in out and "steps 100, 200" in out

    # dropped earlier, recovered at the last: the last checkpoint is what a gate judges
    recovered = series(tmp_path / "recovered", {100: 0.9, 200: 0.6, 300: 0.9})
    assert run_cli("check", "--series", str(recovered))[0] == 0

    fell = series(tmp_path / "fell", {100: 0.8, 200: 0.9, 300: 0.6})
    code, out = run_cli("check", "--series", *(str(fell / f"checkpoint-{n}") for n in (100, 200, 300)),
                        "--format", "github")
    assert code == 1
    assert f"::error title=metabench regression%3A {KV} @ 1x (4096 tokens)::best earlier step 200 -> step 300: " \
           f"90.0%25 -> 60.0%25" in out
    out_file = tmp_path / "junit.xml"
    assert run_cli("check", "--series", str(fell), "--format", "junit", "--output", str(out_file))[0] == 1
    assert 'failures="1"' in out_file.read_text()


def drop_cell(folder: Path, entry: str, label: str) -> None:
    """The folder as a run that never scored one (entry, length) cell: its rows and its summary cell removed."""
    rows = [r for r in read_rows(folder / "results.jsonl") if not (r["entry"] == entry and r["length_label"] == label)]
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = json.loads((folder / "summary.json").read_text())
    summary["cells"] = summarize_rows(rows)
    write_json(folder / "summary.json", summary)


def test_a_cell_the_last_checkpoint_lacks_fails_never_passes(tmp_path):
    root = series(tmp_path / "run", {100: 0.8, 200: 0.8})
    drop_cell(root / "checkpoint-200", KV, "2x")
    code, out = run_cli("check", "--series", str(root))
    assert code == 1, out
    assert f"MISSING      {KV} @ 2x (8192 tokens): step 100 had it (n=60) but the last checkpoint, step 200, does not" in out
    # a cell only the last checkpoint has cannot be judged: unusable, never a pass
    root = series(tmp_path / "new", {100: 0.8, 200: 0.8})
    drop_cell(root / "checkpoint-100", KV, "2x")
    code, out = run_cli("check", "--series", str(root))
    assert code == 2 and "no earlier checkpoint has 1 of the last one's cells" in out


def test_bad_series_are_one_line_errors_exit_2(tmp_path, capsys):
    one = series(tmp_path / "one", {100: 0.8})
    assert main(["check", "--series", str(one)]) == 2
    assert "a series needs two or more checkpoints; found 1" in capsys.readouterr().err

    stepless = series(tmp_path / "stepless", {100: 0.8})
    write_results(stepless / "final", model="m", entries=FLAT, lengths=LENGTHS, samples=60)
    assert main(["check", "--series", str(stepless)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "final carries no training step: rerun it with `metabench run --step N`" in err
    with pytest.raises(MetabenchError, match="final carries no training step but belongs to the series"):
        load_series([stepless / "checkpoint-100", stepless / "final"])  # the report refuses it too

    mixed = series(tmp_path / "mixed", {100: 0.8})
    series(mixed, {200: 0.8}, scoring="loglik")
    assert main(["check", "--series", str(mixed)]) == 2
    err = capsys.readouterr().err
    assert "mixed scoring: " in err and "is generate" in err and "is loglik" in err

    twice = series(tmp_path / "twice", {100: 0.8, 200: 0.8})
    write_results(twice / "again", model="m", entries=FLAT, lengths=LENGTHS, samples=60, step=200)
    assert main(["check", "--series", str(twice)]) == 2
    assert "are both step 200 of model 'm'" in capsys.readouterr().err

    two = series(tmp_path / "two", {100: 0.8})
    series(two / "b", {100: 0.8, 200: 0.8}, model="other")
    assert main(["check", "--series", str(two / "checkpoint-100"), str(two / "b")]) == 2
    assert "the folders hold 2 series" in capsys.readouterr().err

    other = series(tmp_path / "lengths", {100: 0.8})
    write_results(other / "checkpoint-200", model="m", entries=FLAT, lengths={"1x": 4096}, samples=60, step=200)
    code, out = run_cli("check", "--series", str(other))
    assert code == 2 and "UNUSABLE" in out and "different lengths" in out

    assert main(["check", str(one / "checkpoint-100")]) == 2  # neither --baseline nor --series
    assert "pass RESULTS --baseline FILE, or --series" in capsys.readouterr().err
    assert main(["check", str(one), "--series", str(one)]) == 2
    assert "pass no RESULTS and no --baseline" in capsys.readouterr().err


# --- real runs of the bundled tiny models -------------------------------------------------

@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    """copy/default at 0.5x, 8 samples, of three checkpoints of one run: the meta-token model at step 100 (--step,
    --name) and as tinyrun/checkpoint-200 (the step and name read from the folder), then the no-meta model as
    tinyrun/checkpoint-300, which never learned to copy (reference_model/MODEL_CARD.md)."""
    d = tmp_path_factory.mktemp("real")
    (d / "tinyrun").mkdir()
    (d / "tinyrun" / "checkpoint-200").symlink_to(ROOT / "reference_model" / "tiny")
    (d / "tinyrun" / "checkpoint-300").symlink_to(ROOT / "reference_model" / "tiny-nometa")
    common = ["--suite", "smoke", "--tasks", "copy:default", "--samples", "8", "--lengths", "0.5x",
              "--marker", "<|meta|>", "--device", "cpu", "--quiet"]
    for out, model in (("100", ["--model", "hf:reference_model/tiny", "--name", "tinyrun", "--step", "100"]),
                       ("200", ["--model", f"hf:{d / 'tinyrun' / 'checkpoint-200'}"]),
                       ("300", ["--model", f"hf:{d / 'tinyrun' / 'checkpoint-300'}"])):
        code, text = run_cli("run", *model, *common, "--out", str(d / "out" / f"checkpoint-{out}"))
        assert code == 0, text
    return d / "out"


@pytest.mark.slow
def test_real_runs_make_a_series_and_check_finds_the_real_drop(real):
    assert [checkpoint(real / f"checkpoint-{n}").key[0] for n in (100, 200, 300)] == ["tinyrun"] * 3
    assert [checkpoint(real / f"checkpoint-{n}").step for n in (100, 200, 300)] == [100, 200, 300]
    code, out = run_cli("check", "--series", str(real / "checkpoint-100"), str(real / "checkpoint-200"))
    assert code == 0 and "PASS: 1 cells hold" in out  # the same weights: nothing lost
    [s] = load_series([real])
    [cell] = s.cells
    means = [json.loads((real / f"checkpoint-{n}" / "summary.json").read_text())["cells"][0]["metrics"]["exact_match"]["mean"]
             for n in (100, 200, 300)]
    assert [p.mean for p in cell.points] == means and means[0] == means[1] >= 0.75 and means[2] == 0.0
    assert (cell.drop.step, cell.drop.best_step) == (300, 200)  # a tie goes to the later step
    lost = round(8 * means[0])
    assert cell.drop.result.p == pytest.approx(mcnemar_p(lost))
    code, out = run_cli("check", "--series", str(real))
    assert code == 1 and f"paired on 8 samples: {lost} worse, 0 better" in out


@pytest.mark.slow
def test_in_memory_evaluations_of_a_training_run_form_a_series(tmp_path):
    """metabench.evaluate at two steps into OUT/step-N/ (the layout a training callback writes): one series named
    after the model, checked through the real CLI; the same weights at both steps lose nothing."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from metabench import evaluate
    from metabench.model import register

    register()
    tiny = ROOT / "reference_model" / "tiny"
    model, tok = AutoModelForCausalLM.from_pretrained(str(tiny)), AutoTokenizer.from_pretrained(str(tiny))
    for step in (2, 4):
        evaluate(model, tok, suite="smoke", tasks=["copy:default"], lengths="0.5x", samples=4, marker="<|meta|>",
                 out=tmp_path / "evals" / f"step-{step}", step=step)
    [s] = load_series([tmp_path / "evals"])
    assert s.key == ("tiny", "smoke", 0, "generate") and s.steps == (2, 4) and s.cells[0].drop is None
    code, out = run_cli("check", "--series", str(tmp_path / "evals"))
    assert code == 0 and "PASS: 1 cells hold" in out and "NOTE" not in out  # paired: no unpaired note


# --- the report's Series section, in Chromium --------------------------------------------------

@pytest.fixture(scope="module")
def series_page(tmp_path_factory) -> Path:
    """Two series (one with a hostile name, kv @ 1x dropping at step 300) beside an ordinary run without steps."""
    d = tmp_path_factory.mktemp("series-report")
    series(d / "run", {100: 0.8, 200: 0.9, 300: 0.6, 400: 0.85, 500: 0.5}, model=EVIL)
    series(d / "flat", {1000: 0.8, 2000: 0.8}, model="flat")
    write_results(d / "plain", model="plain", entries=FLAT, lengths=LENGTHS, samples=20)
    out = d / "site" / "index.html"
    assert main(["report", str(d / "run"), str(d / "flat"), str(d / "plain"), "--out", str(out), "--no-samples"]) == 0
    return out


@pytest.fixture(scope="module")
def series_browser(series_page, tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as p:
        yield load(p, series_page, tmp_path_factory.mktemp("screenshots"))


@pytest.mark.slow
def test_series_section_draws_points_bands_and_the_drop(series_browser, series_page):
    b = series_browser
    assert b.js("document.querySelectorAll('#series article.series').length") == 2
    assert b.js("document.querySelector('nav a[href=\"#series\"]').textContent") == "Series"
    charts = "#series-0 figure.step-chart"
    assert b.js(f"document.querySelectorAll('{charts}').length") == len(FLAT) * len(LENGTHS)
    assert b.js(f"document.querySelectorAll('{charts} polygon.band').length") == 4
    assert b.js(f"document.querySelectorAll('{charts} circle:not(.drop)').length") == 4 * 5  # a point per step
    assert b.js("document.querySelectorAll('#series-1 figure.step-chart circle:not(.drop)').length") == 4 * 2
    # the drop: at step 300 (90 -> 60 against step 200), once, not again at 500
    assert b.js("document.querySelectorAll('#series circle.drop').length") == 1
    tip = b.js("document.querySelector('#series circle.drop title').textContent")
    assert tip.startswith("first significant drop at step 300, against step 200: 90.0% -> 60.0%")
    x_drop = b.js("document.querySelector('#series circle.drop').getAttribute('cx')")
    at_300 = b.js(f"[...[...document.querySelectorAll('{charts}')].find(f => f.querySelector('circle.drop'))"
                  ".querySelectorAll('text.xt')].find(t => t.textContent === '300').getAttribute('x')")
    assert x_drop == at_300
    # readable without the chart: the table says where and against what
    rows = b.js("[...document.querySelectorAll('#series-0-table tbody tr')].map(r => [r.cells[0].textContent,"
                " r.dataset.dropStep || null, r.cells[r.cells.length - 1].textContent])")
    assert len(rows) == 4 and [r[1] for r in rows if r[1]] == ["300"]
    [kv] = [r for r in rows if r[0] == f"{KV} @ 1x"]
    assert kv[2].startswith("step 300: against step 200: 90.0% -> 60.0% (-30.0 points; n 60 -> 60; paired")
    assert [r[2] for r in rows if r[0] != kv[0]] == ["none"] * 3
    assert b.js("document.querySelectorAll('#series-0-table tbody tr:first-child td.sc').length") == 5
    assert b.js("document.querySelectorAll('#series-1 circle.drop').length") == 0
    # hostile names are text: nothing ran, and the name reads back as written
    assert b.js("window.__pwned === undefined") and b.js("document.querySelectorAll('img, [onerror]').length") == 0
    assert b.js("document.querySelector('#series-0 h3').textContent") == EVIL
    assert b.js("document.querySelectorAll('section.run').length") == 5 + 2 + 1  # every checkpoint is a run too
    assert b.of("Runtime.exceptionThrown") == [] and b.js("window.__csp") == []
    b.js("document.getElementById('series').scrollIntoView()")
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    b.screenshot(artifacts / "report-series.png")
    assert os.path.getsize(artifacts / "report-series.png") > 1000


def test_a_report_without_series_has_no_series_section_or_styles(tmp_path):
    plain = write_results(tmp_path / "plain", model="plain", entries=FLAT, lengths=LENGTHS, samples=20)
    alone = series(tmp_path / "one", {100: 0.8})  # a single checkpoint is a run, not a series
    html = build_report([plain, alone], tmp_path / "a.html", ReportOptions(samples=False)).read_text()
    assert 'id="series"' not in html and "step-chart" not in html and "circle.drop" not in html
