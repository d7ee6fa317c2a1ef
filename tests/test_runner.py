"""The runner on a real tiny transformers model: results, summary, resume after SIGKILL, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ports import free_port

SUITE = """
name: runner-test
seed: 3
lengths: [0.5x, 1x]
samples: 4
tasks:
  - {task: needle, variant: single, params: {depths: [0, 1]}}
  - {task: parity}
  - {task: copy, variant: short}
"""


def _suite(tmp_path: Path) -> str:
    p = tmp_path / "suite.yaml"
    p.write_text(SUITE)
    return str(p)


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metabench", "run", "--quiet", *args], capture_output=True, text=True, **kw)


def _rows(folder: Path) -> list[dict]:
    rows = [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("latency_s")
    return sorted(rows, key=lambda r: r["id"])


@pytest.fixture(scope="module")
def reference_run(tiny_llama_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    out = tmp / "ref"
    r = _run("--model", f"hf:{tiny_llama_dir}", "--suite", _suite(tmp), "--batch-size", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out, r.stdout


@pytest.mark.slow
def test_results_and_summary(reference_run, tiny_llama_dir):
    out, stdout = reference_run
    rows = _rows(out)
    assert len(rows) == 3 * 2 * 4 and len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert set(r["scores"]) >= {r["primary"]} and all(0 <= v <= 1 for v in r["scores"].values())
        assert r["output_tokens"] >= 1 and len(r["prompt_sha256"]) == 64
    summary = json.loads((out / "summary.json").read_text())
    assert summary["format"] == "metabench.summary/1"
    assert summary["model"]["context"] == 1024 and summary["model"]["name"] == tiny_llama_dir.name
    prov = summary["provenance"]
    assert prov["backend"]["backend"] == "hf" and len(prov["backend"]["weights_sha256"]) == 64
    assert prov["tokenizer"]["fingerprint"] and prov["backend"]["versions"]["torch"] and prov["started_at"]
    overall = [c for c in summary["cells"] if c["depth"] is None]
    assert {(c["entry"], c["length"]) for c in overall} == {(e, l) for e in ("needle/single", "parity/default", "copy/short") for l in (512, 1024)}
    assert all(c["n"] == 4 for c in overall)
    by_depth = [c for c in summary["cells"] if c["depth"] is not None and c["task"] == "needle"]
    assert {c["depth"] for c in by_depth} == {0.0, 1.0} and all(c["n"] == 2 for c in by_depth)
    # Each cell's mean is the mean of its rows' primary scores, and its CI brackets it.
    for c in overall:
        scores = [r["scores"][c["primary"]] for r in rows if r["entry"] == c["entry"] and r["length"] == c["length"]]
        m = c["metrics"][c["primary"]]
        assert m["mean"] == pytest.approx(sum(scores) / len(scores))
        assert m["ci_low"] <= m["mean"] <= m["ci_high"]
    assert "needle/single" in stdout and "0.5x" in stdout
    # Answers that ran to the cap are counted per cell, never hidden (the tiny model often does not stop).
    for r in rows:
        assert r["finish_reason"] == ("length" if r["output_tokens"] == r["max_new_tokens"] else "stop"), r
        assert r["server_prompt_tokens"] is None
    for c in overall:
        mine = [r for r in rows if r["entry"] == c["entry"] and r["length"] == c["length"]]
        assert c["truncated"] == sum(r["finish_reason"] == "length" for r in mine) and c["errors"] == 0
        assert c["empty"] == sum(not r["prediction"].strip() for r in mine)
        assert c["prompt_tokens"] == {"intended": sum(r["prompt_tokens"] for r in mine) / len(mine), "measured": None}


@pytest.mark.slow
def test_same_predictions_as_plain_transformers(reference_run, tiny_llama_dir):
    """The harness's batched, left-padded generation equals one-at-a-time greedy generate()."""
    import torch
    from transformers import AutoModelForCausalLM

    from metabench.generate import Options, iter_samples
    from metabench.suite import load_suite
    from metabench.tokenizer import load_tokenizer

    out, _ = reference_run
    preds = {r["id"]: r["prediction"] for r in _rows(out)}
    tok = load_tokenizer(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    suite = load_suite(Path(out).parent / "suite.yaml")
    checked = 0
    for s in iter_samples(suite, tok, Options(context=1024)):
        if s.index > 1:
            continue
        ids = torch.tensor([tok.encode(s.prompt, specials=s.add_special_tokens)])
        with torch.inference_mode():
            g = model.generate(ids, max_new_tokens=s.answer_budget, do_sample=False, pad_token_id=0, eos_token_id=0)
        new = [t for t in g[0, ids.shape[1]:].tolist()]
        if 0 in new:
            new = new[: new.index(0)]
        text = tok.backend.decode(new, skip_special_tokens=True)
        if text != preds[s.id]:
            # Allowed only where greedy was a near-tie: check the top-2 logits at the first divergence.
            with torch.inference_mode():
                logits = model(torch.tensor([ids[0].tolist() + new])).logits[0, ids.shape[1] - 1 :]
            top2 = logits.topk(2, dim=-1).values
            assert (top2[:, 0] - top2[:, 1]).min() < 1e-3, s.id
        checked += 1
    assert checked == 3 * 2 * 2


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(reference_run, tiny_llama_dir, tmp_path):
    ref, _ = reference_run
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "metabench", "run", "--quiet", "--model", f"hf:{tiny_llama_dir}",
            "--suite", str(Path(ref).parent / "suite.yaml"), "--batch-size", "1", "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.time() + 120
    while not (out / ".lock").exists() and time.time() < deadline:
        time.sleep(0.02)
    second = subprocess.run(args, capture_output=True, text=True)  # the same command again, at the same time
    assert second.returncode == 2 and f"in use by another metabench run (PID {proc.pid})" in second.stderr, second.stderr
    assert proc.poll() is None  # refused at once, while the first still runs
    while time.time() < deadline:
        if results.exists() and results.read_text().count("\n") >= 5:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = results.read_text().count("\n")
    assert 5 <= written < 24, "the run finished before it could be killed"
    assert (out / ".lock").read_text().strip() == str(proc.pid)  # left by the killed run; it must not block
    with open(results, "a") as f:  # a torn last line, as a kill mid-write leaves
        f.write('{"id": "needle/single/0.5x/3", "predic')
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert _rows(out) == _rows(ref)
    assert not (out / ".lock").exists()


@pytest.mark.slow
def test_rerunning_a_finished_run_keeps_its_summary(reference_run, tiny_llama_dir, tmp_path):
    ref, _ = reference_run
    out = tmp_path / "again"
    shutil.copytree(ref, out)
    before = (out / "summary.json").read_bytes()
    args = ("--model", f"hf:{tiny_llama_dir}", "--suite", str(Path(ref).parent / "suite.yaml"), "--out", str(out))
    r = _run(*args)
    assert r.returncode == 0, r.stderr
    assert (out / "summary.json").read_bytes() == before  # provenance of the run that made the rows
    assert "needle/single" in r.stdout  # the table is still printed
    r = _run(*args, "--name", "renamed")  # a new display name is the one change a finished run takes
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["name"] == "renamed"
    assert summary["cells"] == json.loads(before)["cells"]


@pytest.mark.slow
def test_bad_input_is_one_clear_line(reference_run, tiny_llama_dir, tmp_path):
    ref, _ = reference_run
    suite = str(Path(ref).parent / "suite.yaml")
    before = (ref / "results.jsonl").read_bytes()
    cases = [
        (["--model", f"hf:{tmp_path}/nope", "--suite", suite, "--out", str(tmp_path / "a")], "does not exist"),
        (["--model", f"hf:{tiny_llama_dir}", "--suite", suite, "--lengths", "1x,2x", "--out", str(tmp_path / "b")],
         "exceeds the model's 1024-token window; pass --allow-beyond-context"),
        (["--model", f"hf:{tiny_llama_dir}", "--suite", suite, "--seed", "4", "--out", str(ref)], "different settings (suite differ)"),
        (["--model", f"openai:http://127.0.0.1:{free_port()}/v1", "--tokenizer", str(tiny_llama_dir), "--retries", "2",
          "--suite", suite, "--out", str(tmp_path / "c")], "after 2 attempts"),
        (["--model", "gguf:/x", "--suite", suite, "--out", str(tmp_path / "d")], "write hf:PATH, vllm:PATH, openai:URL or openai-chat:URL"),
        (["--model", f"hf:{tiny_llama_dir}", "--suite", suite, "--rope", "yarn:factor=1", "--out", str(tmp_path / "e")], "factor > 1"),
        (["--model", f"hf:{tiny_llama_dir}", "--suite", suite, "--thinking", "always", "--out", str(tmp_path / "f")],
         "--thinking 'always': write auto, none, or the start and end strings of the reasoning"),
        (["--model", f"hf:{tiny_llama_dir}", "--suite", suite, "--max-tokens", "0", "--out", str(tmp_path / "g")],
         "--max-tokens must be a positive number"),
    ]
    for args, message in cases:
        r = _run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr, r.stderr
        assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert (ref / "results.jsonl").read_bytes() == before


@pytest.mark.slow
def test_beyond_context_when_asked_and_with_yarn(tiny_llama_dir, tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("lengths: [2x]\nsamples: 2\ntasks: [parity]\n")
    r = _run("--model", f"hf:{tiny_llama_dir}", "--suite", str(suite), "--allow-beyond-context", "--out", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    r = _run("--model", f"hf:{tiny_llama_dir}", "--suite", str(suite), "--rope", "yarn:factor=2", "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["model"]["window"] == 2048 and summary["model"]["native_context"] == 1024
    rows = _rows(tmp_path / "b")
    assert all(r["length"] == 2048 and r["prompt_tokens"] > 1900 for r in rows)


def test_final_table_orders_lengths_by_tokens():
    from metabench.runner import format_table

    cell = lambda label, tokens, mean: {"entry": "parity/default", "length_label": label, "length": tokens, "depth": None,
                                        "primary": "exact_match", "metrics": {"exact_match": {"mean": mean}}}
    summary = {"suite": {"lengths": {"1.5x": 1536, "1x": 1024, "2x": 2048}},  # as json.dumps(sort_keys) leaves them
               "cells": [cell("1x", 1024, 0.5), cell("1.5x", 1536, 0.25), cell("2x", 2048, 0.0)]}
    header, row = format_table(summary).splitlines()
    assert header.split()[1:] == ["1x", "1.5x", "2x"]
    assert row.split()[1:] == ["50.0", "25.0", "0.0"]


SMALL = "name: small\nseed: 1\nlengths: [0.5x]\nsamples: 2\ntasks: [parity, {task: copy, variant: short}]\n"


def _small_run(model: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    suite = out.parent / "small.yaml"
    suite.write_text(SMALL)
    return _run("--model", f"hf:{model}", "--suite", str(suite), "--out", str(out), *extra)


@pytest.mark.slow
def test_changed_weights_or_tokenizer_are_named_and_rows_kept(tiny_llama_dir, tmp_path):
    """A resume must not mix the rows of two models: weights and tokenizer are part of the run's identity."""
    model = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, model)
    out = tmp_path / "out"
    assert _small_run(model, out).returncode == 0
    config = json.loads((out / "config.json").read_text())
    assert len(config["identity"]["weights"]["weights_sha256"]) == 64 and "model.safetensors" in config["weights"]["stat"]
    rows = (out / "results.jsonl").read_bytes()
    # Same bytes, new mtime: the hash is taken again, matches, and the run is the same run.
    os.utime(model / "model.safetensors")
    assert _small_run(model, out).returncode == 0
    # Other weights under the same name: refused, the finished rows untouched.
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(model / "model.safetensors")
    save_file({k: v + 0.01 * torch.randn_like(v) for k, v in weights.items()}, model / "model.safetensors",
              metadata={"format": "pt"})
    r = _small_run(model, out)
    assert r.returncode == 2, r.stderr
    assert "weights (the model folder's weights or config.json changed) differ" in r.stderr
    assert r.stderr.strip().count("\n") == 0 and (out / "results.jsonl").read_bytes() == rows
    shutil.copy(tiny_llama_dir / "model.safetensors", model / "model.safetensors")  # the original weights again
    (model / "tokenizer.json").write_text((model / "tokenizer.json").read_text().replace('"<|meta|>"', '"<|m|>"'))
    r = _small_run(model, out)
    assert r.returncode == 2 and "tokenizer (the tokenizer's files changed) differ" in r.stderr, r.stderr
    assert (out / "results.jsonl").read_bytes() == rows


@pytest.mark.slow
def test_a_failed_start_does_not_block_the_corrected_command(tiny_llama_dir, tmp_path):
    out = tmp_path / "out"
    r = _small_run(tiny_llama_dir, out, "--dtype", "float33")
    assert r.returncode == 2 and "--dtype 'float33'" in r.stderr
    r = _small_run(tiny_llama_dir, out, "--dtype", "float32")
    assert r.returncode == 0, r.stderr
    assert len(_rows(out)) == 4


@pytest.mark.slow
def test_damaged_summary_of_a_finished_run_is_rebuilt(reference_run, tiny_llama_dir, tmp_path):
    ref, _ = reference_run
    out = tmp_path / "again"
    shutil.copytree(ref, out)
    (out / "summary.json").write_text('{"format": "metabench.summary/1", "cells": ')
    r = _run("--model", f"hf:{tiny_llama_dir}", "--suite", str(Path(ref).parent / "suite.yaml"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "summary.json").read_text())["cells"] == json.loads((ref / "summary.json").read_text())["cells"]


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_rerun_resumes(tiny_llama_dir, tmp_path):
    """/dev/full answers every write with ENOSPC, as a full disk does."""
    out = tmp_path / "out"
    assert _small_run(tiny_llama_dir, out).returncode == 0
    rows = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").unlink()
    (out / "summary.json").unlink()
    (out / "results.jsonl").symlink_to("/dev/full")
    r = _small_run(tiny_llama_dir, out)
    assert r.returncode == 2 and "No space left on device" in r.stderr and "rerun the same command" in r.stderr
    ours = [line for line in r.stderr.splitlines() if line.startswith("metabench:")]  # (transformers prints its bar)
    assert len(ours) == 1 and "Traceback" not in r.stderr, r.stderr
    (out / "results.jsonl").unlink()  # space freed; half the rows had reached the disk
    (out / "results.jsonl").write_text("".join(rows[:2]))
    r = _small_run(tiny_llama_dir, out)
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["id"] for x in (out / "results.jsonl").read_text().splitlines()][:2] == \
           [json.loads(x)["id"] for x in rows[:2]]
    assert sorted(r["id"] for r in _rows(out)) == sorted(json.loads(x)["id"] for x in rows)


@pytest.mark.slow
def test_learned_position_model_at_its_full_window(tiny_gpt2_dir, tmp_path):
    """GPT-2 style: 256 learned positions and not one more. At 1x with the default batch size, no batch may
    ask for a position past 255 (left padding runs every row to the widest prompt plus the largest budget)."""
    suite = tmp_path / "s.yaml"
    suite.write_text("lengths: [1x]\nsamples: 4\ntasks: [parity, {task: copy, variant: short}, "
                     "{task: needle, variant: single}]\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "metabench", "run", "--model", f"hf:{tiny_gpt2_dir}", "--suite", str(suite),
                        "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "metabench: loading hf:" in r.stderr  # stages are said, not sat through in silence
    rows = _rows(out)
    assert len(rows) == 12 and all(r["length"] == 256 for r in rows)
    prompts = [r["prompt_tokens"] for r in rows]
    assert min(prompts) < max(prompts)  # prompts of several lengths, with several answer budgets
    assert all(r["prompt_tokens"] + r["output_tokens"] <= 256 for r in rows)


def test_batches_never_pass_the_window():
    from metabench.backends import Request
    from metabench.backends.hf import batches

    def req(prompt: int, new: int) -> Request:
        return Request([1] * prompt, new)

    reqs = [req(100, 100), req(110, 90), req(200, 50), req(240, 16), req(240, 15)]
    cut = batches(reqs, 8, 256)
    assert [len(b) for b in cut] == [2, 1, 2] and sum(cut, []) == reqs
    assert all(max(len(r.token_ids) for r in b) + max(r.max_new_tokens for r in b) <= 256 for b in cut)
    assert [len(b) for b in batches(reqs, 2, 256)] == [2, 1, 2]
    assert [len(b) for b in batches(reqs, 1, 256)] == [1] * 5
    # Beyond the window on purpose (no window known, or rows longer than it): never wider than the longest row alone.
    long = [req(300, 10), req(290, 30)]
    assert [len(b) for b in batches(long, 8, 256)] == [1, 1]
    assert [len(b) for b in batches([req(300, 10), req(305, 10)], 8, 256)] == [2]
    assert [len(b) for b in batches([req(100, 150), req(110, 140)], 8, 256)] == [1, 1]  # 110 + 150 > 256


def test_weights_hash_is_reused_while_every_file_keeps_its_stat(tmp_path):
    """A resume does not read a multi-GB checkpoint again: the recorded hash stands while size and mtime hold."""
    import hashlib

    from metabench.backends import _HASHED, folder_hashes

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights" * 1000)
    first = folder_hashes(tmp_path)
    expected = hashlib.sha256(b"model.safetensors" + b"weights" * 1000).hexdigest()
    assert first["weights_sha256"] == expected and first["stat"]["model.safetensors"][0] == 7000
    _HASHED.clear()
    recorded = {**first, "weights_sha256": "as recorded"}  # a hash that reading the file could never give
    assert folder_hashes(tmp_path, recorded)["weights_sha256"] == "as recorded"
    assert folder_hashes(tmp_path)["weights_sha256"] == "as recorded"  # describe() at the end asks again: no re-read
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert folder_hashes(tmp_path, recorded)["weights_sha256"] == hashlib.sha256(
        b"model.safetensors" + b"other weights").hexdigest()
