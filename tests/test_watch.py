"""`metabench watch` on real checkpoint folders (copies of the bundled tiny model), run as users run it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "reference_model" / "tiny"
FLAGS = ("--suite", "smoke", "--tasks", "kv_recall:single", "--lengths", "1x", "--samples", "2")


def _watch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metabench", "watch", *args], capture_output=True, text=True)


def _rows(folder: Path) -> list[dict]:
    """A results folder's rows by id, latency aside."""
    rows = [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()]
    return sorted(({k: v for k, v in r.items() if k != "latency_s"} for r in rows), key=lambda r: r["id"])


def _checkpoint(root: Path, name: str) -> Path:
    return Path(shutil.copytree(TINY, root / name))


@pytest.mark.slow
def test_checkpoints_in_step_order_once_each_and_a_bad_one_reported(tmp_path):
    """checkpoint-2 and checkpoint-10 evaluated in step order into OUT/<name>/ with their steps; a damaged
    checkpoint-5 is one line and stops neither; the rerun loads no model and leaves every row as it was."""
    runs, out = tmp_path / "runs", tmp_path / "evals"
    for name in ("checkpoint-10", "checkpoint-2", "checkpoint-5"):
        _checkpoint(runs, name)
    (runs / "checkpoint-5" / "config.json").write_text("{")
    (runs / "logs").mkdir()  # not a checkpoint: left alone
    r = _watch(str(runs), "--out", str(out), "--quiet", "--settle", "0", *FLAGS)
    assert r.returncode == 1, r.stderr
    said = [line for line in r.stdout.splitlines() if line.startswith("checkpoint-")]
    assert list(dict.fromkeys(line.split(":")[0] for line in said)) == ["checkpoint-2", "checkpoint-5",
                                                                         "checkpoint-10"], r.stdout
    bad = [line for line in said if line.startswith("checkpoint-5: not evaluated: ")]
    assert len(bad) == 1 and "config.json is not valid JSON" in bad[0]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-10", "checkpoint-2"]
    for step in (2, 10):
        summary = json.loads((out / f"checkpoint-{step}" / "summary.json").read_text())
        assert summary["step"] == step and summary["model"]["spec"] == f"hf:{runs / f'checkpoint-{step}'}"
    rows = {s: (out / f"checkpoint-{s}" / "results.jsonl").read_text() for s in (2, 10)}

    again = _watch(str(runs), "--out", str(out), "--settle", "0", *FLAGS)  # not --quiet: stage lines on stderr
    assert again.returncode == 1
    assert "checkpoint-2: already evaluated" in again.stdout and "checkpoint-10: already evaluated" in again.stdout
    assert "metabench: loading" not in again.stderr and "checkpoint-5: not evaluated" in again.stdout
    assert {s: (out / f"checkpoint-{s}" / "results.jsonl").read_text() for s in (2, 10)} == rows


@pytest.mark.slow
def test_a_killed_watch_rerun_continues(tmp_path):
    """SIGKILL while checkpoint-2 is half evaluated; the rerun finishes it and checkpoint-3 (copies of one model), and
    checkpoint-2's rows are those of the uninterrupted checkpoint-3, each sample once."""
    runs, out = tmp_path / "runs", tmp_path / "evals"
    for name in ("checkpoint-2", "checkpoint-3"):
        _checkpoint(runs, name)
    args = [sys.executable, "-m", "metabench", "watch", str(runs), "--out", str(out), "--quiet", "--settle", "0",
            "--batch-size", "1", "--suite", "smoke", "--tasks", "kv_recall:single,parity", "--lengths", "1x"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = out / "checkpoint-2" / "results.jsonl"
    end = time.time() + 120
    while not (rows.is_file() and len(rows.read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.time() < end
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "checkpoint-2" / "summary.json").exists() and not (out / "checkpoint-3").exists()
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "checkpoint-2: evaluating" in r.stdout and "checkpoint-3: evaluated" in r.stdout
    resumed = [json.loads(x) for x in rows.read_text().splitlines()]
    assert len({x["id"] for x in resumed}) == len(resumed) == 8
    assert json.loads((out / "checkpoint-2" / "summary.json").read_text())["provenance"]["resumed_from"] >= 2
    assert _rows(out / "checkpoint-2") == _rows(out / "checkpoint-3")


@pytest.mark.slow
def test_follow_waits_for_a_checkpoint_to_be_complete(tmp_path):
    """Under --follow a checkpoint that appears later is evaluated once its weights are whole: not while it has
    only config.json, nor while its safetensors file is cut short."""
    runs, out, log = tmp_path / "runs", tmp_path / "evals", tmp_path / "watch.log"
    runs.mkdir()
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "metabench", "watch", str(runs), "--out", str(out), "--follow",
                                 "--interval", "0.2", "--settle", "1", "--quiet", *FLAGS], stdout=f,
                                stderr=subprocess.STDOUT, text=True)
    try:
        def wait_for(text: str, timeout: float = 120) -> None:
            end = time.time() + timeout
            while text not in log.read_text():
                assert proc.poll() is None and time.time() < end, log.read_text()
                time.sleep(0.1)

        wait_for("waiting for checkpoint folders")
        folder = runs / "checkpoint-3"
        folder.mkdir()
        for f in TINY.iterdir():
            if f.name != "model.safetensors":
                shutil.copy(f, folder / f.name)
        wait_for("checkpoint-3: waiting (no weights yet)")
        weights = (TINY / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])
        wait_for("checkpoint-3: waiting (model.safetensors is shorter than its header says)")
        assert not out.exists()
        (folder / "model.safetensors").write_bytes(weights)
        wait_for("checkpoint-3: evaluated step 3")
        assert json.loads((out / "checkpoint-3" / "summary.json").read_text())["step"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("make", ["empty", "missing"])
def test_no_checkpoints_is_one_line(tmp_path, make):
    """A folder without checkpoint folders (or no folder at all): one line, exit 2."""
    runs = tmp_path / "runs"
    if make == "empty":
        (runs / "final").mkdir(parents=True)
    r = _watch(str(runs), "--out", str(tmp_path / "evals"), *FLAGS)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert ("holds no checkpoint folders" if make == "empty" else "is not a folder") in r.stderr
