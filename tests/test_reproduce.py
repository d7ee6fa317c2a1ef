"""`metabench reproduce` at the micro preset: every stage's artifacts, rerun is a no-op, runs are deterministic."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metabench.reproduce import MODELS


def _reproduce(out: Path) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "metabench", "reproduce", "--preset", "micro", "--out", str(out),
                        "--device", "cpu"], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of every file but the stage markers (they record wall times) and logs."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and ".stages" not in p.parts and p.suffix != ".log"
            and not p.name.startswith("train_log")}


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("reproduce") / "a"
    return out, _reproduce(out).stdout


@pytest.mark.slow
def test_every_stage_leaves_its_artifacts(first):
    out, stdout = first
    assert (out / "tokenizer" / "tokenizer.json").read_bytes() == Path("metabench/assets/tokenizer/tokenizer.json").read_bytes()
    for name in MODELS:
        assert (out / "models" / name / "model.safetensors").is_file()
        summary = json.loads((out / "results" / name / "summary.json").read_text())
        assert summary["cells"] and summary["model"]["name"] == f"micro-{name}"
    yarn = json.loads((out / "models" / "meta-yarn2x" / "config.json").read_text())
    assert yarn["rope_parameters"]["rope_type"] == "yarn" and yarn["rope_parameters"]["factor"] == 2.0
    nometa = json.loads((out / "models" / "nometa" / "config.json").read_text())
    assert nometa["meta_attention"] is False
    for name in ("meta", "nometa"):
        a = json.loads((out / "analysis" / name / "analysis.json").read_text())
        assert a["attention"]["per_head"] and a["residual_cosine"] and a["zero_position_ablation"]
    html = (out / "leaderboard" / "index.html").read_text()
    assert all(f"micro-{m}" in html for m in MODELS)
    assert '<a href="#analysis-0"><bdi>micro-meta</bdi></a>' in html and '<a href="#analysis-1"><bdi>micro-nometa</bdi></a>' in html
    numbers = json.loads((out / "leaderboard" / "results.json").read_text())
    assert set(numbers["models"]) == set(MODELS)
    assert "[12/12] leaderboard: finished" in stdout


@pytest.mark.slow
def test_rerun_is_a_no_op(first):
    out, _ = first
    before = _digest(out)
    r = _reproduce(out)
    assert r.stdout.count(": done") == 12 and ": running" not in r.stdout
    assert _digest(out) == before


@pytest.mark.slow
def test_two_runs_give_the_same_models_and_predictions(first, tmp_path):
    out, _ = first
    other = tmp_path / "b"
    _reproduce(other)
    for name in MODELS:
        a = (out / "models" / name / "model.safetensors").read_bytes()
        b = (other / "models" / name / "model.safetensors").read_bytes()
        assert a == b, name
        pa = [json.loads(x)["prediction"] for x in (out / "results" / name / "results.jsonl").read_text().splitlines()]
        pb = [json.loads(x)["prediction"] for x in (other / "results" / name / "results.jsonl").read_text().splitlines()]
        assert pa == pb, name


def _stage_processes(pid: int) -> list[int]:
    """The spawned stage processes of a running reproduce (its children that run spawn_main)."""
    found = []
    for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:  # a child just forked shows its parent's command line until it execs
            if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes():
                found.append(int(k))
        except FileNotFoundError:
            pass
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc (Linux)")
def test_a_killed_reproduce_stops_its_stages_and_resumes_to_the_same_numbers(first, tmp_path):
    out, _ = first
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "metabench", "reproduce", "--preset", "micro", "--out", str(killed), "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if "train/nometa: running" in line:
            break
    deadline = time.time() + 10
    while len(stages := _stage_processes(proc.pid)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert len(stages) == 2  # both trainings, side by side
    proc.kill()
    proc.wait()
    deadline = time.time() + 20
    while any(_alive(p) for p in stages) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in stages), "stage processes outlived the killed reproduce"
    r = _reproduce(killed)
    assert "[1/12] tokenizer: done" in r.stdout and "[12/12] leaderboard: finished" in r.stdout
    for name in MODELS:
        assert (killed / "models" / name / "model.safetensors").read_bytes() == (
            out / "models" / name / "model.safetensors").read_bytes(), name


@pytest.mark.slow
def test_a_failing_stage_is_named_and_what_finished_is_kept(tmp_path):
    out = tmp_path / "broken"
    (out / "models" / "nometa").mkdir(parents=True)
    (out / "models" / "nometa" / "train_state.pt").write_bytes(b"not a training state")
    r = subprocess.run([sys.executable, "-m", "metabench", "reproduce", "--preset", "micro", "--out", str(out),
                        "--device", "cpu"], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("metabench: error: stage train/nometa failed: ValueError:"), last
    assert "delete it to start this training over" in last and "rerun the same command to resume" in last
    assert (out / ".stages" / "tokenizer.json").is_file()
    assert not (out / ".stages" / "train__nometa.json").exists()


@pytest.mark.slow
def test_publish_copies_the_leaderboard_and_the_stage_times(first, tmp_path):
    out, _ = first
    dest = tmp_path / "published"
    r = subprocess.run([sys.executable, "-m", "metabench", "reproduce", "--preset", "micro", "--out", str(out),
                        "--device", "cpu", "--publish", str(dest)], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert ": running" not in r.stdout
    assert (dest / "index.html").read_bytes() == (out / "leaderboard" / "index.html").read_bytes()
    assert json.loads((dest / "results.json").read_text()) == json.loads((out / "leaderboard" / "results.json").read_text())
    for name in MODELS:
        assert json.loads((dest / "runs" / name / "summary.json").read_text())["model"]["name"] == f"micro-{name}"
    times = json.loads((dest / "stages.json").read_text())
    assert len(times["stages"]) == 12 and all(s["seconds"] >= 0 for s in times["stages"].values())
    assert times["stages"]["train/meta"]["jobs"] >= 1 and times["stages"]["train/meta"]["threads"] >= 1


def test_an_entry_listed_twice_for_training_is_evaluated_once():
    import dataclasses

    from metabench.reproduce import eval_suite
    from metabench.train.presets import PRESETS

    cfg = dataclasses.replace(PRESETS["tiny"].train, tasks=("list_recall/default",) * 3 + ("copy/default",),
                              anneal_tasks=("copy/default", "copy/default", "parity/default"))
    suite = eval_suite(cfg, Path("metabench/assets/tokenizer"), samples=2)
    assert [e.name for e in suite.entries] == ["list_recall/default", "copy/default", "parity/default"]
