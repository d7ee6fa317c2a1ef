"""Hostile input, as a table per group: what a user (or bad luck) gives, and what metabench must answer.

Every case goes through the `metabench` command's entry point, in process. "refused" cases must
exit 2 with one line saying what to fix and no traceback; cases that are
handled say so on stderr and keep going. A new hostile input gets a row here.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from metabench.simulate import write_results

ROOT = Path(__file__).resolve().parent.parent


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def metabench(capsys, monkeypatch):
    """`metabench ARGS` in this process (as the console script runs it): exit code, stdout, stderr."""
    from metabench.cli import main

    def call(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    monkeypatch.chdir(ROOT)
    return call


def assert_one_line_refusal(r: Result, message: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert message in r.stderr, r.stderr
    errors = [line for line in r.stderr.strip().splitlines() if not line.startswith("metabench: warning:")]
    assert len(errors) == 1 and errors[0].startswith("metabench: error: "), r.stderr


# ----------------------------------------------------------------------------- refused before any work

# (case, arguments after `metabench`, message). {model}, {tmp} and {file} are filled in;
# {file} is an existing regular file.
REFUSED = [
    ("task twice on the command line", ["run", "--tasks", "copy:short,copy:short"], "--tasks names copy/short twice"),
    ("task twice for generate", ["generate", "--tasks", "parity,parity", "--out", "{tmp}/g.jsonl"],
     "--tasks names parity/default twice"),
    ("--out under a file", ["run", "--out", "{file}/sub"], "cannot create --out"),
    ("--out under /proc", ["run", "--out", "/proc/metabench-results"], "cannot create --out"),
    ("--out is a file", ["run", "--out", "{file}"], "is a file; give a folder"),
    ("a length that cannot fit in memory", ["run", "--lengths", "20000000"], "at most 16777216 (16M)"),
    ("samples that cannot be planned", ["run", "--samples", "100000000"], "at most 10000000 per run"),
    ("negative --seed, as the YAML refuses it", ["run", "--seed", "-1"], "seed (its `seed:` key or --seed) must be"),
    ("negative seed in the YAML", ["run", "--suite", "{tmp}/negative-seed.yaml"], "seed (its `seed:` key or --seed) must be"),
    ("a YAML key twice", ["run", "--suite", "{tmp}/twice.yaml"], "key 'samples' appears twice in one mapping (line 3)"),
    ("report --out is a folder", ["report", "{tmp}", "--out", "{tmp}"], "is a folder; give a file path"),
    ("baseline --out is a folder", ["baseline", "{tmp}", "--out", "{tmp}"], "is a folder; give a file path"),
    ("check --output is a folder", ["check", "{tmp}", "--baseline", "{file}", "--output", "{tmp}"],
     "is a folder; give a file path"),
]


@pytest.mark.parametrize("case,args,message", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_in_one_line(case, args, message, config_only_model, tmp_path, metabench):
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "negative-seed.yaml").write_text("seed: -1\nlengths: [0.5x]\ntasks: [parity]\n")
    (tmp_path / "twice.yaml").write_text("lengths: [0.5x]\nsamples: 2\nsamples: 3\ntasks: [parity]\n")
    fill = {"model": str(config_only_model), "tmp": str(tmp_path), "file": str(tmp_path / "file.txt")}
    args = [a.format(**fill) for a in args]
    if args[0] == "run":
        args += ["--model", f"hf:{config_only_model}", "--quiet"] + ([] if "--out" in args else ["--out", f"{tmp_path}/r"])
        args += [] if "--lengths" in args else ["--lengths", "0.5x"]
    r = metabench(*args)
    assert_one_line_refusal(r, message)
    assert not (tmp_path / "r" / "config.json").exists()


# ----------------------------------------------------------------------------- damaged results folders

def _row0(folder: Path) -> dict:
    return json.loads((folder / "results.jsonl").read_text().splitlines()[0])


def _append(folder: Path, line: str) -> None:
    with open(folder / "results.jsonl", "a") as f:
        f.write(line + "\n")


def _counted_twice(folder: Path) -> None:
    """A row written twice and a summary that counted it twice: what two writers into one folder left."""
    from metabench.results import read_rows, summarize_rows

    _append(folder, json.dumps(_row0(folder)))
    summary = json.loads((folder / "summary.json").read_text())
    summary["cells"] = summarize_rows(read_rows(folder / "results.jsonl"))
    (folder / "summary.json").write_text(json.dumps(summary))


DAMAGE = {
    "a row that is not an object": (lambda f: _append(f, "[1, 2]"), "row 361 is list, not a result object"),
    "a row without its keys": (lambda f: _append(f, '{"id": "x"}'), "row 361 lacks entry, task"),
    "one id with two different rows": (lambda f: _append(f, json.dumps({**_row0(f), "prediction": "other"})),
                                       "sample list_recall/easy/0.5x/0 has two different rows"),
    "a repeated row counted twice": (_counted_twice, "summary.json counts n=21 for list_recall/easy @ 0.5x but "
                                                     "results.jsonl holds 20 samples"),
    "a repeated row": (lambda f: _append(f, json.dumps({**_row0(f), "latency_s": 9.0})),
                       "warning: {rows}: 1 repeated row(s) counted once (list_recall/easy/0.5x/0)"),
    "an invalid summary.json": (lambda f: (f / "summary.json").write_text("{"), "summary.json is not valid JSON"),
}
READERS = {
    "report": lambda run, tmp: ["report", str(run), "--out", str(tmp / "board.html")],
    "baseline": lambda run, tmp: ["baseline", str(run), "--out", str(tmp / "b.json")],
    "check": lambda run, tmp: ["check", str(run), "--baseline", str(tmp / "clean.json")],
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_results_folder(damage, reader, tmp_path, metabench):
    clean = write_results(tmp_path / "clean", samples=20, accuracy=0.8)
    assert metabench("baseline", str(clean), "--out", str(tmp_path / "clean.json")).returncode == 0
    run = tmp_path / "run"
    shutil.copytree(clean, run)
    harm, message = DAMAGE[damage]
    harm(run)
    r = metabench(*READERS[reader](run, tmp_path))
    if message.startswith("warning:"):  # handled: counted once, and said
        assert r.returncode == 0, r.stdout + r.stderr
        assert message.format(rows=run / "results.jsonl") in r.stderr
    else:
        assert_one_line_refusal(r, message)


# ----------------------------------------------------------------------------- baselines that vouch for nothing

def _drop_cells(keep):
    def edit(baseline: dict) -> None:
        baseline["cells"] = [c for c in baseline["cells"] if keep(c)]
    return edit


BASELINES = [
    ("a baseline with no cells", _drop_cells(lambda c: False), 2, "the baseline holds no cells"),
    ("a baseline without one (entry, length)", _drop_cells(lambda c: (c["entry"], c["label"]) != ("copy/short", "2x")),
     2, "the baseline has no cell for 1 of the results' (entry, length) pairs (copy/short @ 2x)"),
    ("results without a baseline cell", None, 1, "MISSING      copy/short @ 2x"),
]


@pytest.mark.parametrize("case,edit,code,message", BASELINES, ids=[c[0] for c in BASELINES])
def test_check_never_passes_on_missing_cells(case, edit, code, message, tmp_path, metabench):
    run = write_results(tmp_path / "run", samples=20, accuracy=0.8)
    assert metabench("baseline", str(run), "--out", str(tmp_path / "b.json")).returncode == 0
    if edit is not None:
        baseline = json.loads((tmp_path / "b.json").read_text())
        edit(baseline)
        (tmp_path / "b.json").write_text(json.dumps(baseline))
    else:  # the results lose a cell the baseline has
        rows = [r for r in (run / "results.jsonl").read_text().splitlines()
                if not ('"entry":"copy/short"' in r and '"length_label":"2x"' in r)]
        (run / "results.jsonl").write_text("\n".join(rows) + "\n")
        summary = json.loads((run / "summary.json").read_text())
        summary["cells"] = [c for c in summary["cells"] if (c["entry"], c["length_label"]) != ("copy/short", "2x")]
        (run / "summary.json").write_text(json.dumps(summary))
    r = metabench("check", str(run), "--baseline", str(tmp_path / "b.json"))
    assert r.returncode == code, r.stdout + r.stderr
    assert message in r.stdout


# ----------------------------------------------------------------------------- what a report shows

def test_report_reads_a_folder_given_twice_once(tmp_path, metabench):
    run = write_results(tmp_path / "runs" / "a", model="model-a", samples=4)
    write_results(tmp_path / "runs" / "b", model="model-b", samples=4)
    # Named directly, again through a different spelling, and once more through its parent folder.
    r = metabench("report", str(run), f"{tmp_path}/runs/../runs/a", str(tmp_path / "runs"), "--out", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    assert "given more than once, shown once" in r.stderr
    html = (tmp_path / "r.html").read_text()
    assert html.count("<h2>#") == 2 and "model-a (a)" not in html


def test_model_names_are_isolated_from_the_page_direction(tmp_path, metabench):
    name = "\u202egnp.evil"  # RIGHT-TO-LEFT OVERRIDE: would reverse the text after it on the page
    write_results(tmp_path / "a", model=name, samples=4)
    r = metabench("report", str(tmp_path / "a"), "--out", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "r.html").read_text()
    assert html.count(f"<bdi>{name}</bdi>") >= 4  # ranking, task table, navigation, section title
    assert name not in re.sub(r"<bdi>.*?</bdi>", "", html, flags=re.S)  # and nowhere outside an isolate
