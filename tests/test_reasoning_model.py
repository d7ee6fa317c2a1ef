"""A reasoning-format model end to end through the real CLI: hf, the vLLM engine, and vLLM's server with a reasoning parser.

The model (tests/reasoning_model.py) answers `<think>` text `</think>` then
an answer line; its reasoning is longer than any answer budget here, so a
cap without a thinking allowance cuts it off while thinking. The vLLM tests
start vLLM: run them under `flock /tmp/metabench-vllm.lock` on shared machines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reasoning_model import END_THINK, THINK, build_reasoning_llama, with_open_think
from vllm_server import serve

pytestmark = pytest.mark.slow
SUITE = ("--tasks", "parity,needle:single", "--lengths", "0.5x", "--samples", "2")
LOCAL = ("--chat-template", "--no-answer-prefix", "--dtype", "float32")  # the prompt a chat server renders
THINK_ROOM = ("--max-tokens", "64")


@pytest.fixture(scope="session")
def reasoning_dir(tmp_path_factory, bytelevel_dir) -> Path:
    return build_reasoning_llama(tmp_path_factory.mktemp("reasoning") / "tiny-reasoning", bytelevel_dir)


def _run(out: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "metabench", "run", "--quiet", "--out", str(out), *SUITE, *args],
                       capture_output=True, text=True, env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _rows(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def hf_rows(reasoning_dir, tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("hf") / "run"
    _run(out, "--model", f"hf:{reasoning_dir}", *LOCAL, *THINK_ROOM)
    return _rows(out)


def test_hf_separates_the_reasoning(hf_rows):
    assert len(hf_rows) == 4
    for sid, row in hf_rows.items():
        assert row["finish_reason"] == "stop", (sid, row["raw_output"])
        assert row["raw_output"].lstrip().startswith(THINK) and END_THINK in row["raw_output"]
        assert THINK not in row["prediction"] and END_THINK not in row["prediction"]
        assert row["prediction"].strip() == "The answer is 4417."  # the line after the end tag
        assert row["reasoning_field"] is None and row["reasoning_tokens"] > 10
        assert row["max_new_tokens"] > row["output_tokens"] > row["reasoning_tokens"]


def test_a_cap_inside_the_thinking_leaves_the_answer_empty_and_counted(reasoning_dir, tmp_path):
    out = tmp_path / "capped"
    r = _run(out, "--model", f"hf:{reasoning_dir}", *LOCAL, "--max-tokens", "1")
    for sid, row in _rows(out).items():
        assert row["finish_reason"] == "length" and row["output_tokens"] == row["max_new_tokens"], sid
        assert row["raw_output"].lstrip().startswith(THINK) and END_THINK not in row["raw_output"]
        assert row["prediction"] == "" and row["reasoning_tokens"] > 0
        assert set(row["scores"].values()) == {0.0}  # the thoughts are never scored as the answer
    cells = json.loads((out / "summary.json").read_text())["cells"]
    assert cells and all(c["truncated"] == c["n"] == c["empty"] for c in cells)
    assert "were cut off at the token cap" in r.stderr and "--max-tokens" in r.stderr


def test_a_template_that_opens_the_tag_leaves_only_the_end_tag(reasoning_dir, hf_rows, tmp_path):
    model = with_open_think(reasoning_dir, tmp_path / "tiny-open-think")
    out = tmp_path / "open"
    _run(out, "--model", f"hf:{model}", *LOCAL, *THINK_ROOM)
    rows = _rows(out)
    assert set(rows) == set(hf_rows)
    for sid, row in rows.items():
        assert row["prompt_tail"].endswith(f"<|assistant|>\n{THINK}\n")
        assert row["finish_reason"] == "stop"
        assert THINK not in row["raw_output"] and row["raw_output"].count(END_THINK) == 1
        assert row["prediction"] == hf_rows[sid]["prediction"] and row["reasoning_tokens"] > 10


def test_vllm_engine_matches_hf(reasoning_dir, hf_rows, tmp_path):
    pytest.importorskip("vllm")
    out = tmp_path / "vllm"
    _run(out, "--model", f"vllm:{reasoning_dir}", *LOCAL, *THINK_ROOM, "--gpu-memory-utilization", "0.3")
    rows = _rows(out)
    assert set(rows) == set(hf_rows)
    for sid, row in rows.items():
        ref = hf_rows[sid]
        assert (row["prediction"], row["finish_reason"]) == (ref["prediction"], ref["finish_reason"]), sid
        assert row["raw_output"] == ref["raw_output"] and row["reasoning_tokens"] == ref["reasoning_tokens"]


def test_vllm_server_reasoning_parser_sends_the_reasoning_apart(reasoning_dir, hf_rows, tmp_path):
    with serve(reasoning_dir, tmp_path / "server.log", "--reasoning-parser", "deepseek_r1", max_model_len=512) as url:
        out = tmp_path / "chat"
        _run(out, "--model", f"openai-chat:{url}", "--tokenizer", str(reasoning_dir), *THINK_ROOM)
    rows = _rows(out)
    assert set(rows) == set(hf_rows)
    for sid, row in rows.items():
        ref = hf_rows[sid]
        assert row["prompt_sha256"] == ref["prompt_sha256"] and row["server_prompt_tokens"] == row["prompt_tokens"]
        assert row["finish_reason"] == "stop" and row["prediction"] == ref["prediction"], sid
        # the parser took the tags and the reasoning out of the content
        assert row["raw_output"] == row["prediction"] and THINK not in row["raw_output"]
        assert row["reasoning_field"].strip() == ref["raw_output"].split(END_THINK)[0].replace(THINK, "").strip()
        assert row["reasoning_tokens"] > 10
