"""Fixtures for the training tests: the bundled tokenizer, and one micro run shared by the session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from metabench.tokenizer import load_tokenizer
from metabench.reference_tokenizer import BUNDLED

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    """`python -m metabench.cli ARGS` in a subprocess with one torch thread (bitwise-repeatable)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "metabench.cli", *args], capture_output=True, text=True, timeout=timeout, env=env,
        cwd=REPO, **kw,
    )


@pytest.fixture(scope="session")
def ref_tok():
    return load_tokenizer(str(BUNDLED))


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory) -> Path:
    """A finished `metabench train --preset micro` checkpoint folder."""
    out = tmp_path_factory.mktemp("micro") / "ckpt"
    proc = cli("train", "--preset", "micro", "--out", str(out), "--threads", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def run_cli():
    """The `cli` helper, for tests (conftest modules are not importable by name)."""
    return cli
