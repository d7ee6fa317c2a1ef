"""Backends: the one small contract between the runner and a model.

The runner tokenizes every prompt itself, with the model's tokenizer, and
hands a backend token ids. So all backends see identical inputs, the runner
knows every prompt's exact length before it is sent (nothing can be truncated
behind its back), and a result never depends on how a server would have
tokenized text.

    backend.generate([Request(token_ids, max_new_tokens), ...]) -> [Completion]

Decoding is greedy, stops at EOS or after `max_new_tokens`, and uses no stop
strings: scoring decides what part of the output counts (see scoring.py), the
same way for every backend.

Model specs: `hf:PATH`, `vllm:PATH`, `openai:URL` (an OpenAI-compatible
`/v1` base URL). Heavy libraries are imported inside each backend module.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from metabench.errors import MetabenchError

Kind = Literal["hf", "vllm", "openai"]


@dataclass(frozen=True)
class Request:
    token_ids: list[int]
    max_new_tokens: int


@dataclass(frozen=True)
class Completion:
    text: str
    token_ids: list[int]


@dataclass(frozen=True)
class BackendOptions:
    """Options a user may set; those that change outputs are part of a run's identity."""

    dtype: str = "auto"  # hf/vllm: auto | float32 | bfloat16 | float16
    device: str = "auto"  # hf: auto | cpu | cuda | cuda:N
    batch_size: int = 8  # requests per generate call (hf); per submission (vllm, openai)
    max_model_len: int | None = None  # vllm: the engine's window; default: the longest sample
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    rope_parameters: dict[str, Any] | None = None  # e.g. YaRN: {"rope_type": "yarn", "factor": 2.0, ...}
    served_model: str | None = None  # openai: model name; default: the server's first model
    retries: int = 5  # openai: attempts per request before giving up
    timeout_s: float = 600.0  # openai: per request
    extra: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """The options that can change predictions (batching and timeouts cannot, for greedy decoding)."""
        return {"dtype": self.dtype, "rope_parameters": self.rope_parameters}


class Backend(Protocol):
    kind: Kind
    model: str  # path or URL
    tokenizer_path: str
    context: int | None  # the model's window after any rope override (max_position_embeddings)
    native_context: int | None  # the window the model was trained with

    def generate(self, requests: list[Request]) -> list[Completion]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def parse_model(spec: str) -> tuple[Kind, str]:
    kind, sep, target = spec.partition(":")
    if not sep or kind not in ("hf", "vllm", "openai") or not target:
        raise MetabenchError(f"--model {spec!r}: write hf:PATH, vllm:PATH or openai:URL")
    return kind, target  # type: ignore[return-value]


def model_folder(path: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise MetabenchError(f"model folder {folder} does not exist; pass a local folder with config.json and weights")
    if not (folder / "config.json").is_file():
        raise MetabenchError(f"{folder} has no config.json; is it a transformers model folder?")
    return folder


def read_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text())
    except json.JSONDecodeError as exc:
        raise MetabenchError(f"{folder / 'config.json'} is not valid JSON: {exc}") from exc


def windows(config: dict[str, Any], rope: dict[str, Any] | None) -> tuple[int | None, int | None]:
    """(context after the rope override, native context) from a config.json dict."""
    native = config.get("max_position_embeddings") or config.get("n_positions") or config.get("max_seq_len")
    existing = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if existing.get("original_max_position_embeddings"):
        native = existing["original_max_position_embeddings"]
        if not rope:
            return config.get("max_position_embeddings"), native
    if rope and native:
        factor = float(rope.get("factor", 1.0))
        original = rope.get("original_max_position_embeddings", native)
        return int(original * factor), int(original)
    return native, native


def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of config.json and of the weight files together (streamed; large models take a while)."""
    out = {"config_sha256": hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()}
    h = hashlib.sha256()
    weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".gguf"))
    for p in weights:
        h.update(p.name.encode())
        with open(p, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
    out["weights_sha256"] = h.hexdigest() if weights else ""
    return out


def make_backend(spec: str, options: BackendOptions, tokenizer_path: str | None = None, max_len: int | None = None) -> Backend:
    """Build the backend for `spec`; `max_len` is the longest prompt + answer it will be given."""
    kind, target = parse_model(spec)
    if kind == "hf":
        from metabench.backends.hf import HFBackend

        return HFBackend(target, options, tokenizer_path)
    if kind == "vllm":
        from metabench.backends.vllm import VLLMBackend

        return VLLMBackend(target, options, tokenizer_path, max_len)
    from metabench.backends.openai import OpenAIBackend

    return OpenAIBackend(target, options, tokenizer_path)
