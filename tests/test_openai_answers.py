"""How the OpenAI backends treat answers no real server sends on purpose.

These tests use a FAKE server: a few lines of http.server on 127.0.0.1 that
answers 200 with malformed JSON, an HTML page, no choices, a truncated body,
and so on. vLLM cannot be made to produce these answers; proxies and failing
servers do. Everything a real server does is tested against vLLM's own
OpenAI server (tests/test_backends.py, tests/test_chat.py).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from metabench.cli import main

GOOD = {"choices": [{"index": 0, "text": " 1", "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 500, "completion_tokens": 1, "total_tokens": 501}}
GOOD_CHAT = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "1"}, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 500, "completion_tokens": 1, "total_tokens": 501}}
BAD = {
    "malformed JSON": (200, "application/json", '{"choices": [{"text": "1"'),
    "HTML": (200, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "no choices": (200, "application/json", '{"id": "x", "object": "text_completion"}'),
    "empty choices": (200, "application/json", '{"choices": []}'),
    "null text": (200, "application/json", '{"choices": [{"index": 0, "text": null, "finish_reason": "stop"}]}'),
    "truncated body": (200, "application/json", "TRUNCATED"),
}


class FakeServer:
    """Serves /v1/models, then `script` for completions in order (its last entry forever)."""

    def __init__(self, script: list, delay: float = 0.0):
        self.script, self.delay, self.requests, self.headers, self.bodies = list(script), delay, 0, [], []
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status: int, ctype: str, body: str) -> None:
                raw = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                if body == "TRUNCATED":  # promise 400 bytes, send 20, hang up
                    raw = b'{"choices": [{"text"'
                    self.send_header("Content-Length", "400")
                else:
                    self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                self.wfile.flush()
                if body == "TRUNCATED":
                    self.close_connection = True

            def do_GET(self):
                self._send(200, "application/json", json.dumps(
                    {"object": "list", "data": [{"id": "fake", "object": "model", "max_model_len": 1024, "root": "fake"}]}))

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    server.bodies.append(json.loads(body))
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    k = min(server.requests, len(server.script) - 1)
                    server.requests += 1
                if server.delay:
                    import time

                    time.sleep(server.delay)
                answer = server.script[k]
                if isinstance(answer, dict):
                    answer = (200, "application/json", json.dumps(answer))
                self._send(*answer)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake():
    servers = []

    def start(script, delay=0.0):
        servers.append(FakeServer(script, delay))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _run(server: FakeServer, out: Path, tok: Path, *extra: str, samples: int = 2, model: str = "openai") -> int:
    return main(["run", "--model", f"{model}:{server.url}", "--tokenizer", str(tok), "--out", str(out), "--quiet",
                 "--tasks", "parity", "--lengths", "0.5x", "--samples", str(samples), "--batch-size", "1", *extra])


def _rows(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_bad_200_answer_is_retried(kind, fake, bytelevel_dir, tmp_path):
    server = fake([BAD[kind], GOOD])
    assert _run(server, tmp_path / "out", bytelevel_dir) == 0
    assert server.requests == 3  # the bad answer, its retry, the second sample
    rows = _rows(tmp_path / "out")
    assert [r["prediction"] for r in rows] == [" 1", " 1"]


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_answers_to_the_end_are_reported_with_what_was_sent(kind, fake, bytelevel_dir, tmp_path, capsys):
    server = fake([GOOD] * 8 + [BAD[kind]])  # the first chunk (8 samples at --batch-size 1) succeeds
    assert _run(server, tmp_path / "out", bytelevel_dir, "--retries", "2", samples=10) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "sent no valid answer in 2 attempts" in err, err
    if kind == "HTML":
        assert "an HTML page" in err and "502 Bad Gateway" in err
    if kind == "null text":
        assert "text is None" in err
    assert len(_rows(tmp_path / "out")) == 8  # finished rows are kept
    assert server.requests == 8 + 2


def test_several_choices_are_an_error(fake, bytelevel_dir, tmp_path, capsys):
    two = {"choices": [GOOD["choices"][0], {**GOOD["choices"][0], "index": 1}]}
    server = fake([two])
    assert _run(server, tmp_path / "out", bytelevel_dir) == 2
    assert "sent 2 choices for one prompt" in capsys.readouterr().err
    assert server.requests == 1  # not retried: a server that ignores n=1 will not change its mind


def test_http_500_names_the_status_not_the_server_being_down(fake, bytelevel_dir, tmp_path, capsys):
    server = fake([(500, "application/json", '{"error": "CUDA out of memory"}')])
    assert _run(server, tmp_path / "out", bytelevel_dir, "--retries", "2") == 2
    err = capsys.readouterr().err
    assert "failed 2 times, the last with HTTP 500" in err and "CUDA out of memory" in err
    assert "running" not in err and "reach" not in err


def test_refusals_name_the_fix(fake, bytelevel_dir, tmp_path, capsys):
    server = fake([(401, "application/json", '{"error": "bad key"}')])
    assert _run(server, tmp_path / "a", bytelevel_dir, "--api-key-env", "MY_KEY") == 2
    assert "set the environment variable MY_KEY" in capsys.readouterr().err
    assert server.requests == 1
    server = fake([(404, "application/json", '{"error": "The model `x` does not exist."}')])
    assert _run(server, tmp_path / "b", bytelevel_dir) == 2
    assert "HTTP 404" in (err := capsys.readouterr().err) and "it serves: fake" in err


def test_a_slow_answer_times_out_by_the_option(fake, bytelevel_dir, tmp_path, capsys):
    server = fake([GOOD], delay=1.5)
    assert _run(server, tmp_path / "out", bytelevel_dir, "--retries", "2", "--request-timeout", "0.3") == 2
    err = capsys.readouterr().err
    assert "no answer within 0.3 s, 2 times; raise --request-timeout" in err


def test_the_api_key_is_sent_and_never_written(fake, bytelevel_dir, tmp_path, monkeypatch):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("MY_KEY", secret)
    server = fake([GOOD])
    assert _run(server, tmp_path / "out", bytelevel_dir, "--api-key-env", "MY_KEY") == 0
    assert server.headers[0]["authorization"] == f"Bearer {secret}"
    for f in (tmp_path / "out").iterdir():
        assert secret not in f.read_text(), f
    assert "MY_KEY" in (tmp_path / "out" / "summary.json").read_text()  # the variable's name is provenance


def test_chat_answers_split_the_servers_reasoning_field(fake, metaspace_dir, tmp_path):
    """The chat request's shape and a reasoning field (as vLLM's reasoning parsers send it); the content
    is the answer."""
    reply = {"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "The answer is **1**.", "reasoning_content": "bits: 1 0 1 1 0 0 -> 1"}}],
        "usage": {"prompt_tokens": 250, "completion_tokens": 20, "total_tokens": 270}}
    server = fake([reply])
    out = tmp_path / "out"
    assert _run(server, out, metaspace_dir, "--system", "Be brief.", "--max-tokens", "64", model="openai-chat") == 0
    sent = server.bodies[0]
    assert [m["role"] for m in sent["messages"]] == ["system", "user"] and sent["messages"][0]["content"] == "Be brief."
    assert sent["messages"][1]["content"].rstrip().endswith("Answer 0 or 1.")  # no answer prefix in chat
    rows = _rows(out)
    for row in rows:
        assert sent["max_completion_tokens"] == row["max_new_tokens"] and row["max_new_tokens"] > 64
        assert row["prediction"] == "The answer is **1**." and row["reasoning_field"].startswith("bits")
        assert row["reasoning_tokens"] > 0 and row["output_tokens"] == 20 and row["server_prompt_tokens"] == 250
        assert row["scores"]["exact_match"] == float(row["target"] == "1")
        assert row["prompt_head"].startswith("<s><|system|>\nBe brief.<|end|>\n<|user|>\n")


def test_a_conversation_task_is_refused_by_the_chat_backend(fake, metaspace_dir, tmp_path, capsys):
    """mrcr's turns are the template's own text: sent as one user message they would be a different prompt."""
    server = fake([])
    assert _run(server, tmp_path / "out", metaspace_dir, "--tasks", "mrcr", model="openai-chat") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("metabench: error: openai-chat sends each prompt as one user message") and not server.bodies
