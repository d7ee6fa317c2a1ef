"""transformers backend: batched greedy generation with left padding and a KV cache.

Requests arrive grouped by similar length (the runner sorts them); `batches`
cuts them so no batch needs more positions than the model has, and each
generate call pads a batch on the left, so every sequence's last prompt
token sits at the end, and `generate` builds position ids from the attention
mask. Each request keeps only its own `max_new_tokens` of the batch's output.

`loglik` pads the same way, so every row's answer tokens sit at the end:
one forward pass per batch, position ids from the mask, and only the last
(longest answer + 1) positions' logits are kept (`logits_to_keep`), so a
128k-vocabulary model at a long length does not materialise logits for
every prompt position.

`HFBackend.from_model` wraps a model already in memory (metabench.evaluate,
a training loop): nothing is loaded, moved or cast; its window comes from
its config (else the caller's context) and its weights are fingerprinted
from its tensors, since it has no files.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

from metabench.backends import (BackendOptions, Completion, Loglik, LoglikRequest, Request, Target, resolve_target,
                                rope_overrides, weights_record)
from metabench.errors import MetabenchError
from safetensors import SafetensorError
from metabench.source import ModelSource
from metabench.tokenizer import load_tokenizer
from metabench.window import Window, read_window


class HFBackend:
    kind = "hf"

    def __init__(self, path: str, options: BackendOptions, tokenizer_path: str | None = None,
                 resolved: Target | None = None):
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from metabench.model import register

        register()  # the reference architecture loads through the Auto classes

        self.target = resolved or resolve_target(path, options.rope_parameters)
        source = self.target.source
        self.model = source.load_name
        self.context = self.target.limit
        self.tokenizer_path = tokenizer_path or str(source.folder)
        self.options = options
        pinned = dict(revision=source.revision) if source.repo_id else dict(local_files_only=True)
        config = AutoConfig.from_pretrained(self.model, **pinned)
        for key, value in rope_overrides(self.target).items():
            setattr(config, key, value)
        device = _device(options.device)
        dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(options.dtype)
        if dtype is None:
            raise MetabenchError(f"--dtype {options.dtype!r}: choose auto, float32, bfloat16 or float16")
        try:
            self.lm = AutoModelForCausalLM.from_pretrained(self.model, config=config, dtype=dtype, **pinned)
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise MetabenchError(f"cannot load the model {self.model} (damaged or incomplete weights?): {first}") from exc
        self.lm.to(device).eval()
        self._bind(device)

    @classmethod
    def from_model(cls, lm: Any, name: str, tokenizer_path: str, options: BackendOptions,
                   context: int | None = None) -> HFBackend:
        """A backend around `lm` as it is (device, dtype and mode untouched: the caller sets eval mode and no_grad).

        Its window is read from `lm.config` as from a config.json (window.py), else it is `context`; a config
        stating none and no `context` is a one-line error."""
        window = read_window(lm.config.to_dict())
        if window is None:
            if context is None:
                raise MetabenchError(f"{name}'s config states no window (max_position_embeddings, n_positions, ...): "
                                     "pass context=N (tokens)")
            window = Window(context, context, f"context={context}", positions="unknown")
        self = cls.__new__(cls)
        self.target = Target(ModelSource(None), window, None)
        self.model, self.context, self.tokenizer_path, self.options = name, window.context, tokenizer_path, options
        self.lm = lm
        self._memory_weights = None
        self._bind(str(next(lm.parameters()).device))
        return self

    def _bind(self, device: str) -> None:
        """The loaded model's device, stop and pad ids, and the tokenizer that decodes its completions."""
        self.device = device
        gen, config = self.lm.generation_config, self.lm.config
        self.eos = gen.eos_token_id if gen.eos_token_id is not None else config.eos_token_id
        pad = gen.pad_token_id if gen.pad_token_id is not None else getattr(config, "pad_token_id", None)
        self.pad = pad if pad is not None else (self.eos if isinstance(self.eos, int) else 0)
        self.tok = load_tokenizer(self.tokenizer_path)  # decodes completions exactly as lengths were measured
        self.keeps_logits = "logits_to_keep" in inspect.signature(self.lm.forward).parameters  # loglik: answer logits only

    def weights(self) -> dict[str, str]:
        """config_sha256 and weights_sha256: of the folder's files, or, for a model in memory, of its config and
        tensors (taken once per backend; a training loop builds a new backend for every evaluation)."""
        if self.target.source.folder is not None:
            return weights_record(self.target.source)
        if self._memory_weights is None:
            self._memory_weights = memory_hashes(self.lm)
        return self._memory_weights

    def generate(self, requests: list[Request]) -> list[Completion]:
        import torch

        out: list[Completion] = []
        for batch in batches(requests, max(1, self.options.batch_size), self.context):
            ids, mask = _left_pad(batch, self.pad)
            width = ids.shape[1]
            new = max(r.max_new_tokens for r in batch)
            with torch.inference_mode():
                gen = self.lm.generate(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device), max_new_tokens=new,
                    do_sample=False, temperature=None, top_p=None, top_k=None,
                    pad_token_id=self.pad, eos_token_id=self.eos,
                )
            for j, r in enumerate(batch):
                full = gen[j, width : width + r.max_new_tokens].tolist()
                toks = _until_eos(full, self.eos)
                reason = "length" if len(toks) == r.max_new_tokens else "stop"  # no EOS within the cap
                out.append(Completion(self.tok.backend.decode(toks, skip_special_tokens=True), toks, reason))
        return out

    def loglik(self, requests: list[LoglikRequest]) -> list[Loglik]:
        import torch

        whole = [Request(r.token_ids + r.answer_ids, 0) for r in requests]  # batches() cuts by positions
        out: list[Loglik] = []
        at = 0
        for batch in batches(whole, max(1, self.options.batch_size), self.context):
            rs = requests[at : at + len(batch)]
            at += len(batch)
            ids, mask = _left_pad(batch, self.pad)
            keep = max(len(r.answer_ids) for r in rs) + 1  # the logit at position p predicts token p + 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            extra = {"logits_to_keep": keep} if self.keeps_logits else {}
            with torch.inference_mode():
                logits = self.lm(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                 position_ids=positions.to(self.device), use_cache=False, **extra).logits
            logp = torch.log_softmax(logits[:, -keep:].float(), dim=-1)  # (B, keep, V)
            for j, r in enumerate(rs):
                a = len(r.answer_ids)
                rows = logp[j, keep - 1 - a : keep - 1]  # (a, V): the positions that predict the answer's tokens
                gold = torch.tensor(r.answer_ids, device=rows.device)
                out.append(Loglik(rows.gather(1, gold[:, None])[:, 0].tolist(), rows.argmax(-1).tolist()))
        return out

    def describe(self) -> dict[str, Any]:
        import torch
        import transformers

        return {
            "backend": "hf",
            "model": self.model,
            **self.target.source.record(),
            **self.weights(),
            **({"in_memory": True} if self.target.source.folder is None else {}),
            "dtype": str(next(self.lm.parameters()).dtype).replace("torch.", ""),
            "device": self.device,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        }

    def close(self) -> None:
        del self.lm


def memory_hashes(lm: Any) -> dict[str, str]:
    """sha256 of a model's config (JSON) and of its state dict (names and raw bytes, in order): what a folder's
    config.json and weight files are to folder_hashes, for a model that has no files. Tensors are copied to the
    CPU one at a time."""
    import torch

    h = hashlib.sha256()
    for name, t in lm.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().contiguous().reshape(-1).view(torch.uint8).cpu().numpy().tobytes())
    config = hashlib.sha256(lm.config.to_json_string(use_diff=False).encode()).hexdigest()
    return {"config_sha256": config, "weights_sha256": h.hexdigest()}


def batches(requests: list[Request], size: int, window: int | None) -> list[list[Request]]:
    """Consecutive batches of at most `size` that never ask for more positions than the model has.

    A left-padded batch runs every row to the batch's widest prompt plus its
    largest answer budget, so a long prompt with a short budget beside a short
    prompt with a long one can pass a learned-position model's last position
    (GPT-2's n_positions) although each fits alone. A batch is closed before
    it would need more than `window` positions, or more than its largest row
    needs alone (a run beyond the window on purpose gets no wider batches).
    """
    out: list[list[Request]] = []
    batch: list[Request] = []
    width = new = need = 0
    for r in requests:
        w, n = max(width, len(r.token_ids)), max(new, r.max_new_tokens)
        alone = max(need, len(r.token_ids) + r.max_new_tokens)
        if batch and (len(batch) == size or w + n > max(window or 0, alone)):
            out.append(batch)
            batch, w, n, alone = [], len(r.token_ids), r.max_new_tokens, len(r.token_ids) + r.max_new_tokens
        batch.append(r)
        width, new, need = w, n, alone
    if batch:
        out.append(batch)
    return out


def _left_pad(batch: list[Request], pad: int) -> tuple[Any, Any]:
    """(input ids, attention mask) of a batch padded on the left to its widest prompt."""
    import torch

    width = max(len(r.token_ids) for r in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for j, r in enumerate(batch):
        ids[j, width - len(r.token_ids) :] = torch.tensor(r.token_ids)
        mask[j, width - len(r.token_ids) :] = 1
    return ids, mask


def _device(requested: str) -> str:
    """The torch device for --device, refused in one line when it does not exist here."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise MetabenchError(f"--device {requested!r}: write auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MetabenchError(f"--device {requested}: no CUDA device is available here; use --device cpu or auto")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise MetabenchError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return requested


def _until_eos(tokens: list[int], eos: Any) -> list[int]:
    stops = set(eos) if isinstance(eos, (list, tuple)) else ({eos} if eos is not None else set())
    for k, t in enumerate(tokens):
        if t in stops:
            return tokens[:k]
    return tokens
