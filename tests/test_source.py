"""Hub ids (`hf:ORG/NAME`, `vllm:ORG/NAME`) resolve through huggingface_hub's own cache, pinned to one commit.

Tests never reach the hub: they build a cache in the hub's layout
(models--ORG--NAME/refs/main -> snapshots/<commit>/...) and run with
HF_HUB_OFFLINE=1, so resolution by id is exercised end to end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from metabench.errors import MetabenchError

COMMIT = "3f2a9c1d0b8e7f6a5d4c3b2a1f0e9d8c7b6a5f4e"
OLD = "0000000000000000000000000000000000000001"


def hub_cache(root: Path, repo_id: str, model_dir: Path) -> Path:
    """A Hugging Face cache holding `model_dir` as `repo_id` at COMMIT (main) and, config only, at OLD."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / COMMIT
    shutil.copytree(model_dir, snap)
    old = repo / "snapshots" / OLD
    old.mkdir(parents=True)
    shutil.copy(snap / "config.json", old / "config.json")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "refs" / "v0").write_text(OLD)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory, tiny_llama_dir) -> Path:
    return hub_cache(tmp_path_factory.mktemp("hub"), "acme/tiny-llama", tiny_llama_dir)


@pytest.fixture
def offline(cache, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))  # read at import time
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    return {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def test_hub_id_resolves_to_its_commit(offline):
    from metabench.source import resolve_model

    src = resolve_model("acme/tiny-llama")
    assert (src.repo_id, src.revision) == ("acme/tiny-llama", COMMIT)
    assert (src.folder / "tokenizer.json").is_file() and src.folder.name == COMMIT
    assert resolve_model("acme/tiny-llama@v0").revision == OLD


def test_tokenizer_by_hub_id(offline):
    from metabench.source import tokenizer_folder
    from metabench.tokenizer import load_tokenizer

    folder = tokenizer_folder("acme/tiny-llama")
    assert Path(folder).name == COMMIT and load_tokenizer(folder).encode("a b c")
    assert tokenizer_folder("/no/such/folder") == "/no/such/folder"  # a path stays a path, for load_tokenizer's error


def test_local_folder_wins_and_unknown_ids_are_one_line(offline, tmp_path, monkeypatch):
    from metabench.source import is_hub_id, resolve_model

    (tmp_path / "acme" / "tiny-llama").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert not is_hub_id("acme/tiny-llama") and is_hub_id("acme/other")
    with pytest.raises(MetabenchError, match="has no config.json"):
        resolve_model("acme/tiny-llama")  # the local folder, not the hub id
    with pytest.raises(MetabenchError, match=r"^hub id acme/other: cannot resolve it \(.*\); check the id") as err:
        resolve_model("acme/other")
    assert "\n" not in str(err.value)


def test_lm_eval_tasks_read_a_hub_id(offline):
    from metabench.lm_eval.settings import resolve_context, resolve_tokenizer

    assert Path(resolve_tokenizer({"pretrained": "acme/tiny-llama"})).name == COMMIT
    assert resolve_context({"pretrained": "acme/tiny-llama"}) == 1024


SUITE = "name: hub\nseed: 3\nlengths: [0.25x]\nsamples: 2\ntasks: [{task: parity}, {task: copy, variant: short}]\n"


def _run(env: dict, tmp: Path, model: str, *extra: str) -> dict:
    (tmp / "suite.yaml").write_text(SUITE)
    out = tmp / model.split(":")[0]
    r = subprocess.run([sys.executable, "-m", "metabench", "run", "--quiet", "--model", model, "--suite",
                        str(tmp / "suite.yaml"), "--dtype", "float32", "--out", str(out), *extra],
                       capture_output=True, text=True, env={**os.environ, **env, "VLLM_CPU_KVCACHE_SPACE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_hf_and_vllm_run_a_hub_id_offline(offline, tmp_path, tiny_llama_dir):
    """Both backends load weights and tokenizer by id from the cache and record the commit; same predictions."""
    hf = _run(offline, tmp_path, "hf:acme/tiny-llama")
    backend = hf["provenance"]["backend"]
    assert (backend["repo_id"], backend["revision"]) == ("acme/tiny-llama", COMMIT)
    assert hf["model"]["name"] == "tiny-llama" and hf["model"]["context"] == 1024
    assert hf["provenance"]["tokenizer"]["path"].endswith(COMMIT)
    identity = json.loads((tmp_path / "hf" / "config.json").read_text())["identity"]
    assert identity["model"] == f"hf:acme/tiny-llama@{COMMIT}"  # a resume after the hub moves main is refused
    # the commit pins the weights: none are hashed (a hub model's weights may arrive only when it loads)
    assert "weights" not in identity and "weights_sha256" not in backend
    assert _run(offline, tmp_path, "hf:acme/tiny-llama") == hf  # the same command again: finished, kept
    pytest.importorskip("vllm")
    vl = _run(offline, tmp_path, "vllm:acme/tiny-llama", "--gpu-memory-utilization", "0.3")
    assert vl["provenance"]["backend"]["revision"] == COMMIT
    rows = lambda kind: {json.loads(x)["id"]: json.loads(x)["prediction"]  # noqa: E731
                         for x in (tmp_path / kind / "results.jsonl").read_text().splitlines()}
    hf_rows, vllm_rows = rows("hf"), rows("vllm")
    assert set(hf_rows) == set(vllm_rows) and len(hf_rows) == 4
    assert sum(hf_rows[k] != vllm_rows[k] for k in hf_rows) <= 1  # a greedy near-tie at most (test_backends.py)
