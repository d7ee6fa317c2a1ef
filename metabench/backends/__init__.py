"""Backends: the one small contract between the runner and a model.

The runner tokenizes every prompt itself, with the model's tokenizer, and
hands `hf`, `vllm` and `openai` (completions) token ids. So they see
identical inputs, the runner knows every prompt's exact length before it is
sent (nothing can be truncated behind its back), and a result never depends
on how a server would have tokenized text. `openai-chat` cannot send ids:
its request carries the same prompt as messages, measured through
`--tokenizer`'s chat template, and each row records the server's own prompt
token count beside the intended one.

    backend.generate([Request(token_ids, max_new_tokens), ...]) -> [Completion]

Decoding is greedy, stops at EOS or after `max_new_tokens`, and uses no stop
strings: scoring decides what part of the output counts (see scoring.py), the
same way for every backend.

Model specs: `hf:PATH`, `vllm:PATH`, `openai:URL` (an OpenAI-compatible
`/v1` base URL, completions) and `openai-chat:URL` (its chat completions:
the request carries the same prompt as messages, see openai.py). PATH is a
local folder or a hub id ORG/NAME[@REVISION] (see source.py). A rope
override reaches the local backends (hf, vllm; a server's is set where it
starts, and --rope is refused for one) as the full rope parameters composed
with the config's own (window.extend): no backend resets `rope_theta` or any
key the user did not name. Heavy libraries are imported inside each backend module.

Log-likelihood scoring (`--scoring loglik`, hf and vllm only; a server's
completions API is refused):

    backend.loglik([LoglikRequest(token_ids, answer_ids), ...]) -> [Loglik]

One forward pass over prompt + gold answer per request, nothing generated:
each answer token's log-probability given everything before it, and the
argmax token at each answer position (teacher forcing).

Each Completion says why it ended (`finish_reason`: stop, length, error), so
answers cut off at the cap are counted rather than silently scored 0, and
carries the server's own prompt token count where it reports one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from metabench.errors import MetabenchError
from metabench.source import ModelSource, model_window, read_config, resolve_model
from metabench.window import Extension, Window, extend

Kind = Literal["hf", "vllm", "openai", "openai-chat"]
SERVED: tuple[Kind, ...] = ("openai", "openai-chat")  # backends behind a URL: the server knows the window


@dataclass(frozen=True)
class Request:
    token_ids: list[int]  # the whole prompt, chat template included when there is one
    max_new_tokens: int
    messages: list[dict[str, str]] | None = None  # the same prompt as chat messages (for chat APIs)


@dataclass(frozen=True)
class LoglikRequest:
    token_ids: list[int]  # the whole prompt, exactly as a generate Request would send it
    answer_ids: list[int]  # the gold answer's tokens, scored after the prompt


@dataclass(frozen=True)
class Loglik:
    """The gold answer under the model: log p(answer token | all before it) and the argmax at each answer position."""

    logprobs: list[float]
    argmax_ids: list[int]


FinishReason = Literal["stop", "length", "error"]


@dataclass(frozen=True)
class Completion:
    """What a model sent back for one request.

    `finish_reason`: stop (EOS or a stop condition), length (the cap cut it off)
    or error (the server aborted or filtered it). `prompt_tokens` is the
    server's own count of the prompt (usage.prompt_tokens), when it reports one;
    `completion_tokens` likewise, for servers that send no token ids.
    """

    text: str
    token_ids: list[int]
    finish_reason: FinishReason = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning: str | None = None  # reasoning a server sent in a field of its own (reasoning_content)

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids) if self.token_ids or self.completion_tokens is None else self.completion_tokens


def finish_reason(reason: Any) -> FinishReason:
    """An engine's or server's finish reason in the contract's terms: vLLM's abort, a content filter,
    anything unknown is an error (counted, never taken for a normal stop)."""
    return reason if reason in ("stop", "length") else "error"


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
    timeout_s: float = 120.0  # openai: seconds per request (a long prefill on a busy server fits; a hung one does not)
    api_key_env: str = "OPENAI_API_KEY"  # openai: the variable holding the key (the key itself is never stored)
    thinking: str = "auto"  # auto | none | START,END: how reasoning is told from the answer (metabench/reasoning.py)
    max_tokens: int | None = None  # tokens for thinking, on top of each sample's answer budget
    extra: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """The options that can change predictions (batching and timeouts cannot, for greedy decoding).

        Thinking options join only when set, so runs from before they existed keep their identity."""
        out: dict[str, Any] = {"dtype": self.dtype, "rope_parameters": self.rope_parameters}
        if self.thinking != "auto":
            out["thinking"] = self.thinking
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        return out


class Backend(Protocol):
    kind: Kind
    model: str  # path or URL
    tokenizer_path: str
    context: int | None  # the longest prompt + answer it serves: 1x, or the window a rope override extends to

    def generate(self, requests: list[Request]) -> list[Completion]: ...

    def loglik(self, requests: list[LoglikRequest]) -> list[Loglik]: ...  # hf and vllm

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def parse_model(spec: str) -> tuple[Kind, str]:
    kind, sep, target = spec.partition(":")
    if not sep or kind not in ("hf", "vllm", "openai", "openai-chat") or not target:
        raise MetabenchError(f"--model {spec!r}: write hf:PATH, vllm:PATH, openai:URL or openai-chat:URL")
    return kind, target  # type: ignore[return-value]


@dataclass(frozen=True)
class Target:
    """A local or hub model, its window from config.json, and the `--rope` extension applied to it, if any."""

    source: ModelSource
    window: Window
    extension: Extension | None

    @property
    def limit(self) -> int:
        """The longest prompt + answer the model serves as loaded: the extended window, else 1x."""
        return self.extension.window if self.extension else self.window.context


def resolve_target(path: str, rope: dict[str, Any] | None) -> Target:
    """Resolve `path` (folder or hub id), read its window and compose `rope` with its config's scaling."""
    source = resolve_model(path)
    window = model_window(source)
    return Target(source, window, extend(window, rope, source.load_name) if rope else None)


def rope_overrides(target: Target) -> dict[str, Any]:
    """Config attributes to set so the engine serves the target's window, for transformers' config and
    vLLM's hf_overrides alike: a rope override's, or a YaRN config's unscaled max_position_embeddings.

    The composed parameters hold every key of the config's own; `rope_theta` can still be missing when
    the config leaves it to the model class's default, so that default is read from transformers.
    """
    if target.extension is None:
        return dict(target.window.overrides)
    rope = dict(target.extension.rope_parameters)
    if "rope_theta" not in rope:
        from transformers import AutoConfig

        model_type = read_config(target.source.folder).get("model_type", "")
        try:
            default = AutoConfig.for_model(model_type).rope_parameters or {}
        except (ValueError, KeyError, AttributeError, TypeError):
            default = {}
        if "rope_theta" not in default:
            raise MetabenchError(
                f"--rope: {target.source.load_name}'s config states no rope_theta and transformers knows no default for "
                f"model_type {model_type!r}; add rope_theta to the --rope parameters"
            )
        rope["rope_theta"] = default["rope_theta"]
    return {**target.extension.overrides, "rope_parameters": rope}


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_HASHED: dict[str, dict[str, Any]] = {}  # folder -> its last folder_hashes, reused while its files' stat holds


def folder_stat(folder: Path) -> dict[str, list[int]]:
    """Size and mtime (ns) of config.json and every weight file: what changes when any of them is rewritten."""
    files = [folder / "config.json", *sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)]
    return {p.name: [(st := p.stat()).st_size, st.st_mtime_ns] for p in files}


def weights_record(source: Any) -> dict[str, Any]:
    """A model's weights for provenance: the hashes of a local folder (without their stat); nothing for a hub id,
    whose resolved commit (in `source.record()`) already pins them, and whose weights may not be downloaded
    until the backend loads them."""
    if source.repo_id:
        return {}
    return {k: v for k, v in folder_hashes(source.folder).items() if k != "stat"}


def folder_hashes(folder: Path, recorded: dict[str, Any] | None = None) -> dict[str, Any]:
    """sha256 of config.json and of the weight files together, with the "stat" they were taken at.

    Reading a multi-GB checkpoint takes a while, so the hashes are reused
    without reading anything while every file keeps the size and mtime of
    `recorded` (an earlier result, e.g. from a results folder's config.json)
    or of the last call in this process.
    """
    stat = folder_stat(folder)
    for known in (recorded, _HASHED.get(str(folder))):
        if known and known.get("stat") == stat and "weights_sha256" in known:
            _HASHED[str(folder)] = known  # describe() asks again at the end of the run
            return known
    out: dict[str, Any] = {"config_sha256": hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()}
    h = hashlib.sha256()
    weights = [folder / name for name in stat if name != "config.json"]
    for p in weights:
        h.update(p.name.encode())
        with open(p, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
    out["weights_sha256"] = h.hexdigest() if weights else ""
    out["stat"] = stat
    _HASHED[str(folder)] = out
    return out


def make_backend(spec: str, options: BackendOptions, tokenizer_path: str | None = None, max_len: int | None = None,
                 resolved: Target | None = None) -> Backend:
    """Build the backend for `spec`; `max_len` is the longest prompt + answer it will be given.

    `resolved`: the spec's Target as the caller already resolved it (the runner does, to plan the run), so a
    hub id is not resolved a second time, possibly to another commit than the run's identity records.
    """
    kind, target = parse_model(spec)
    if kind == "hf":
        from metabench.backends.hf import HFBackend

        return HFBackend(target, options, tokenizer_path, resolved)
    if kind == "vllm":
        from metabench.backends.vllm import VLLMBackend

        return VLLMBackend(target, options, tokenizer_path, max_len, resolved)
    if kind == "openai-chat":
        from metabench.backends.openai import OpenAIChatBackend

        return OpenAIChatBackend(target, options, tokenizer_path)
    from metabench.backends.openai import OpenAIBackend

    return OpenAIBackend(target, options, tokenizer_path)
