"""Where a model lives: a local folder, or a Hugging Face hub id resolved to one commit.

    resolve_model("/path/to/model")            -> ModelSource(folder, repo_id=None, revision=None)
    resolve_model("Qwen/Qwen2.5-7B-Instruct")  -> ModelSource(<cache snapshot>, repo_id, revision=<commit>)
    resolve_model("org/name@v1.0")             -> the commit `v1.0` points to

A hub id goes through huggingface_hub's own download and cache (HF_HOME,
HF_HUB_CACHE, HF_TOKEN and HF_HUB_OFFLINE all apply). Only the small files
(config, tokenizer, generation config) are fetched here, so the window and
the tokenizer are known in seconds; the weights are left to transformers or
vLLM, which are given the same id pinned to the resolved commit, so config,
tokenizer and weights always come from one revision, and provenance records
it. A path that exists locally always wins over a hub id of the same spelling.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metabench.errors import MetabenchError
from metabench.window import Window, read_window

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
SMALL_FILES = ["*.json", "*.model", "*.txt", "*.tiktoken", "*.py", "*.jinja"]  # no weights


@dataclass(frozen=True)
class ModelSource:
    folder: Path | None  # local folder, or the hub snapshot holding (at least) config and tokenizer; None: a model
    # in memory (metabench.evaluate), with no files to read or hash
    repo_id: str | None = None
    revision: str | None = None  # the commit hash a hub id resolved to

    @property
    def load_name(self) -> str:
        """What to hand transformers / vLLM: the hub id (with `revision`) or the folder."""
        return self.repo_id or str(self.folder)

    def record(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "revision": self.revision} if self.repo_id else {}


def is_hub_id(target: str) -> bool:
    return not Path(target).expanduser().exists() and bool(HUB_ID.match(target))


def resolve_model(target: str) -> ModelSource:
    """A local model folder (with config.json), or a hub id's snapshot; a one-line error otherwise."""
    if is_hub_id(target):
        return _from_hub(target)
    folder = Path(target).expanduser()
    if not folder.is_dir():
        raise MetabenchError(
            f"model folder {target} does not exist and is not a hub id (ORG/NAME); pass a folder with config.json and weights"
        )
    if not (folder / "config.json").is_file():
        raise MetabenchError(f"{folder} has no config.json; is it a transformers model folder?")
    return ModelSource(folder)


def tokenizer_folder(name: str) -> str:
    """A tokenizer's local folder: the path itself, or a hub id's snapshot (which needs no config.json)."""
    return str(_snapshot(name)) if is_hub_id(name) else name


def _from_hub(target: str) -> ModelSource:
    folder = _snapshot(target)
    if not (folder / "config.json").is_file():
        raise MetabenchError(f"hub id {target}: revision {folder.name} has no config.json; is it a transformers model?")
    return ModelSource(folder, target.partition("@")[0], folder.name)  # a snapshot folder is named by its commit


def _snapshot(target: str) -> Path:
    """The cache snapshot of hub id ORG/NAME[@REVISION] with its small files (config, tokenizer)."""
    repo_id, _, revision = target.partition("@")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise MetabenchError(f"hub id {target}: huggingface_hub is not installed; pip install 'metabench[hf]'") from exc
    try:
        folder = Path(snapshot_download(repo_id, revision=revision or None, allow_patterns=SMALL_FILES))
    except Exception as exc:  # huggingface_hub's errors (not found, gated, offline, network) differ by version
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MetabenchError(
            f"hub id {target}: cannot resolve it ({type(exc).__name__}: {first}); check the id, `hf auth login` for "
            "gated models, or pass a local folder"
        ) from None
    return folder


def read_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MetabenchError(f"{folder / 'config.json'} is not valid JSON: {exc}") from exc


def model_window(source: ModelSource) -> Window:
    """The model's window (see window.py); an error when its config states no length."""
    window = read_window(read_config(source.folder))
    if window is None:
        raise MetabenchError(
            f"{source.folder / 'config.json'} states no window (max_position_embeddings, n_positions, ...): pass --context N"
        )
    return window
