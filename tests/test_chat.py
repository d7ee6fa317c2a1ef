"""`openai-chat:URL` against a real vLLM OpenAI server serving a tiny Llama with a chat template.

The server is started with `--api-key`, so the key's path (environment
variable -> request header, never a file) and the 401 refusal are real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_server import serve

pytestmark = pytest.mark.slow
KEY = "sk-chat-test-5e1f0c2d"
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
ARGS = ("--tasks", "parity,needle:single", "--lengths", "0.5x", "--samples", "3", "--system", "Answer with the value only.")


@pytest.fixture(scope="module")
def chat_model(tiny_llama_dir, tmp_path_factory) -> Path:
    """The tiny Llama with a chat template in its tokenizer config."""
    out = tmp_path_factory.mktemp("chat_model") / "tiny-chat"
    shutil.copytree(tiny_llama_dir, out)
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    cfg["chat_template"] = TEMPLATE
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    return out


@pytest.fixture(scope="module")
def chat_server(chat_model, tmp_path_factory):
    with serve(chat_model, tmp_path_factory.mktemp("vllm") / "server.log", "--api-key", KEY) as url:
        yield url


def _run(out: Path, *args: str, key: str | None = KEY) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CHAT_KEY"}
    if key:
        env["CHAT_KEY"] = key
    return subprocess.run([sys.executable, "-m", "metabench", "run", "--quiet", "--out", str(out), *args],
                          capture_output=True, text=True, env=env)


def _rows(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}


def test_chat_run_matches_hf_on_the_same_templated_prompt(chat_server, chat_model, tmp_path):
    chat = tmp_path / "chat"
    r = _run(chat, "--model", f"openai-chat:{chat_server}", "--tokenizer", str(chat_model), "--api-key-env", "CHAT_KEY", *ARGS)
    assert r.returncode == 0, r.stderr
    hf = tmp_path / "hf"  # the same prompts through transformers: template, system message, no answer prefix
    r = _run(hf, "--model", f"hf:{chat_model}", "--chat-template", "--no-answer-prefix", "--dtype", "float32", *ARGS)
    assert r.returncode == 0, r.stderr
    rows, ref = _rows(chat), _rows(hf)
    assert set(rows) == set(ref) and len(rows) == 6
    differ = 0
    for sid, row in rows.items():
        assert row["prompt_sha256"] == ref[sid]["prompt_sha256"]
        assert row["server_prompt_tokens"] == row["prompt_tokens"]  # the server rendered the same template
        assert row["prompt_head"].startswith("<|system|>\nAnswer with the value only.<|end|>\n<|user|>\n")
        assert row["finish_reason"] in ("stop", "length") and row["output_tokens"] <= row["max_new_tokens"]
        differ += row["prediction"] != ref[sid]["prediction"]
    assert differ <= 1, differ  # greedy on two engines: at most a near-tie apart
    summary = json.loads((chat / "summary.json").read_text())
    for c in summary["cells"]:
        assert c["prompt_tokens"]["measured"] == c["prompt_tokens"]["intended"]
    assert summary["provenance"]["backend"]["backend"] == "openai-chat"
    assert summary["provenance"]["backend_options"]["api_key_env"] == "CHAT_KEY"
    for f in chat.iterdir():
        assert KEY not in f.read_text(), f


def test_chat_refusals_are_one_line(chat_server, chat_model, tiny_llama_dir, tmp_path):
    cases = [
        ((), None, "set the environment variable CHAT_KEY to a key it accepts"),
        (("--served-model", "nope"), KEY, "does not serve 'nope' (it serves: tiny)"),
        (("--tokenizer", str(tiny_llama_dir)), KEY, "has no chat template"),
    ]
    for i, (extra, key, message) in enumerate(cases):
        out = tmp_path / str(i)
        args = ["--model", f"openai-chat:{chat_server}", "--tokenizer", str(chat_model), "--api-key-env", "CHAT_KEY",
                *ARGS, *extra]
        r = _run(out, *args, key=key)
        assert r.returncode == 2 and message in r.stderr, r.stderr
        assert r.stderr.strip().count("\n") == 0
        assert not (out / "config.json").exists()
