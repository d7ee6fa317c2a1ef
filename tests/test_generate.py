"""Determinism (golden hashes, prefix stability) and the `metabench` CLI, bad input included."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from metabench.generate import Options, generate_to_file, iter_samples
from metabench.suite import parse_suite

SUITE = {"seed": 7, "lengths": ["0.5x", "1x"], "samples": 3,
         "tasks": [{"task": "list_recall"}, {"task": "kv_recall"}, {"task": "copy"}, {"task": "needle", "variant": "multikey"},
                   {"task": "segment_count"}, {"task": "parity"}]}

# Pinned hashes. CONTENT depends only on metabench's generators (targets, answers,
# task facts); FILE is the whole JSONL with the fixture tokenizer, which also pins
# the fitted prompts (and the `tokenizers` library's BPE training). If a change to
# generation is intended, update both and say so in the commit.
GOLDEN_CONTENT = "ddb8e9edeb9d913a"
GOLDEN_FILE = "fd105091f5d028d4"


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metabench", *args], capture_output=True, text=True, cwd=cwd)


def test_golden_hashes(bytelevel, tmp_path):
    out = tmp_path / "data.jsonl"
    generate_to_file(parse_suite(SUITE), bytelevel, Options(context=1500), out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    content = json.dumps([[r["id"], r["target"], r["answers"], r["info"], r["depth"]] for r in rows], sort_keys=True)
    assert hashlib.sha256(content.encode()).hexdigest()[:16] == GOLDEN_CONTENT
    assert hashlib.sha256(out.read_bytes()).hexdigest()[:16] == GOLDEN_FILE


@pytest.mark.slow
def test_byte_identical_across_processes(bytelevel_dir, tmp_path):
    outs = []
    for name in ("a.jsonl", "b.jsonl"):
        r = _run("generate", "--suite", "smoke", "--tokenizer", str(bytelevel_dir), "--context", "1200",
                 "--quiet", "--out", str(tmp_path / name))
        assert r.returncode == 0, r.stderr
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1] and len(outs[0]) > 1000
    manifest = json.loads((tmp_path / "a.jsonl.manifest.json").read_text())
    assert manifest["samples"] == 6 * 2 * 4 and manifest["lengths"] == {"0.5x": 600, "1x": 1200}


def test_sample_i_does_not_depend_on_how_many(bytelevel):
    few = parse_suite({**SUITE, "samples": 2})
    many = parse_suite({**SUITE, "samples": 7})
    a = {s.id: s.to_json() for s in iter_samples(few, bytelevel, Options(context=1500))}
    b = {s.id: s.to_json() for s in iter_samples(many, bytelevel, Options(context=1500))}
    assert len(a) == 2 * 2 * 6 and set(a) <= set(b)
    assert all(a[k] == b[k] for k in a)


def test_same_content_for_every_tokenizer(bytelevel, metaspace):
    suite = parse_suite(SUITE)
    a = [(s.id, s.target) for s in iter_samples(suite, bytelevel, Options(context=1500))]
    b = [(s.id, s.target) for s in iter_samples(suite, metaspace, Options(context=1500))]
    assert a == b


def test_seed_changes_content(bytelevel):
    a = [s.target for s in iter_samples(parse_suite(SUITE), bytelevel, Options(context=1500))]
    b = [s.target for s in iter_samples(parse_suite({**SUITE, "seed": 8}), bytelevel, Options(context=1500))]
    assert a != b


def test_cli_tasks_lists_every_family_and_variant():
    r = _run("tasks")
    assert r.returncode == 0
    for family in ("list_recall", "kv_recall", "copy", "needle", "segment_count", "parity"):
        assert family in r.stdout
    assert "multikey" in r.stdout and "multiquery" in r.stdout


@pytest.mark.slow
def test_cli_generate_with_flags(bytelevel_dir, tmp_path):
    out = tmp_path / "x.jsonl"
    r = _run("generate", "--tokenizer", str(bytelevel_dir), "--context", "2048", "--lengths", "0.5x,2x",
             "--tasks", "needle:multikey,parity", "--param", "needle.keys=6", "--param", "depths=0,1",
             "--samples", "2", "--marker", "<|meta|>", "--quiet", "--out", str(out))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 2 * 2 * 2
    assert {r["length"] for r in rows} == {1024, 4096}
    assert all(r["params"]["keys"] == 6 for r in rows if r["task"] == "needle")
    assert all(r["depth"] in (0.0, 1.0) for r in rows)
    assert all(r["marker"] == "<|meta|>" for r in rows)


@pytest.mark.slow
def test_default_tokenizer_is_bundled(tmp_path):
    r = _run("generate", "--suite", "smoke", "--context", "1024", "--quiet", "--out", str(tmp_path / "d.jsonl"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d.jsonl").stat().st_size > 10_000


def _bad_yaml(tmp_path: Path, text: str) -> str:
    p = tmp_path / "suite.yaml"
    p.write_text(text)
    return str(p)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--tasks", "neddle"], "unknown task 'neddle'; did you mean needle"),
    (["--tasks", "needle:multikye"], "unknown variant 'multikye' of task needle; did you mean multikey"),
    (["--lengths", "0.01x"], "too short for list_recall/default"),
    (["--samples", "0"], "--samples must be a positive number"),
    (["--context", "-5"], "--context must be a positive number"),
    (["--lengths", "1x,banana"], "cannot read length 'banana'"),
    (["--tasks", "needle", "--param", "parity.n_bits=3"], "not in this run"),
    (["--param", "needle.kyes=3"], "no parameter 'kyes'; did you mean keys"),
    (["--param", "kyes=3"], "no task in this run has that parameter"),
])
def test_cli_bad_input_one_line_no_output(bytelevel_dir, tmp_path, args, message):
    out = tmp_path / "out.jsonl"
    r = _run("generate", "--tokenizer", str(bytelevel_dir), "--context", "2048", "--quiet", *args, "--out", str(out))
    assert r.returncode == 2
    assert message in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_unreadable_tokenizer(tmp_path):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text("{not json")
    for folder in (tmp_path / "missing", tmp_path / "tok"):
        r = _run("generate", "--tokenizer", str(folder), "--context", "1024", "--out", str(tmp_path / "o.jsonl"))
        assert r.returncode == 2 and "tokenizer" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("text, message", [
    ("tasks: [needle\n", "is not valid YAML"),
    ("lengths: [1x]\ntasks: [needle]\nsampels: 3\n", "unknown key 'sampels'"),
    ("lengths: [1x]\n", "missing key 'tasks'"),
    ("lengths: [1x]\ntasks:\n  - task: needle\n    variant: nope\n", "tasks[0]: unknown variant 'nope'"),
    ("lengths: [1x]\nsamples: -2\ntasks: [needle]\n", "key 'samples' must be a positive integer"),
    ("lengths: [1x]\ntasks:\n  - task: copy\n    params: {span_words: 0}\n", "tasks[0]: copy: span_words must be a positive integer"),
    ("lengths: [1x]\ntasks:\n  - task: copy\n    samples: 0\n", "tasks[0].samples must be a positive integer"),
])
def test_cli_malformed_suite_names_file_and_key(bytelevel_dir, tmp_path, text, message):
    suite = _bad_yaml(tmp_path, text)
    out = tmp_path / "out.jsonl"
    r = _run("generate", "--suite", suite, "--tokenizer", str(bytelevel_dir), "--context", "2048", "--out", str(out))
    assert r.returncode == 2
    assert suite in r.stderr and message in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and not out.exists()


def test_import_metabench_does_not_import_torch():
    code = "import sys, metabench, metabench.cli, metabench.generate; print('torch' in sys.modules, 'transformers' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_interrupted_generate_leaves_nothing(bytelevel_dir, tmp_path):
    """SIGTERM (what `timeout`, a scheduler or CI sends) mid-file: no output and no .tmp left behind."""
    import signal
    import time

    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "metabench", "generate", "--tokenizer", str(bytelevel_dir),
                             "--context", "2048", "--samples", "2000", "--quiet", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tmp = tmp_path / "out.jsonl.tmp"
    deadline = time.time() + 120
    while not (tmp.exists() and tmp.stat().st_size > 0) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "generate ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr.read()
    assert list(tmp_path.iterdir()) == []
