"""Run a suite on a backend: batched, resumable, with provenance.

    run(RunConfig(model="hf:PATH", suite=..., out=Path("results/NAME")))

Order of work: everything that can be checked without loading the model is
checked first (folder, tokenizer, lengths against the window, a results
folder from another run), so bad input fails in seconds. Then, length by
length, samples are generated, tokenized once, sent in batches, scored, and
appended to results.jsonl with a flush after each batch.

Stages (one function each): `_plan` (tokenizer, lengths, window; no model),
the folder (`hold` its lock, then metabench/run_folder.py checks it against
the identity and resumes), `_generate` (chunks, progress, rows), `_summary`.

One writer: a run holds its folder's lock (metabench.lock) from before it
reads config.json until summary.json is written; a second run into the same
folder fails at once naming the holder's PID, and a killed run's lock never
blocks the resume.

Resume: config.json records what defines the run, the weights' and the
tokenizer's fingerprints included. Starting the same command again reads
results.jsonl, drops a torn last line, skips every sample already scored and
continues; a different configuration (or a model folder whose files changed)
is an error that names the differing keys and keeps every row, never a silent
mix. The weights' sha256 is taken once and recorded with each file's size and
mtime; a start that finds them unchanged reuses it instead of reading a
multi-GB checkpoint again. A hub id is pinned by its resolved commit instead
(its weights may not be downloaded before the model loads). A folder with
config.json but no rows is not a run
yet (a start that failed): the next command takes it over. Samples are pure
functions of their ids, so a resumed run scores exactly the samples an
uninterrupted one would.

Windows: a length above the model's window is refused unless the user passes
`allow_beyond_context` or a rope override that extends the window. Every
prompt's token count is checked before it is sent: a prompt is never
truncated. A thinking allowance (`max_tokens`) comes on top of each sample's
answer budget, and prompt + budget + allowance must fit the window too.

Rows score the answer only: reasoning is taken out first (reasoning.py), and
each row records why its output ended (finish_reason) so that answers cut
off at the cap are counted per cell, never hidden. `openai-chat` runs are
measured through the tokenizer's chat template (with the system message) and
send the same prompt as messages.

Scoring: `generate` (the model writes its answer) or `loglik` (one forward
pass over prompt + gold answer, metabench/loglik.py); a folder holds one or
the other, since the scoring joins the identity.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from metabench import __version__, loglik
from metabench.backends import (SERVED, Backend, BackendOptions, Completion, Request, Target, folder_hashes, make_backend,
                                parse_model, resolve_target)
from metabench.errors import MetabenchError
from metabench.generate import Options, make_sample
from metabench.lengths import Length, parse_lengths
from metabench.lock import hold
from metabench.reasoning import Thinking, split
from metabench.results import SCORINGS, SUMMARY_FORMAT, result_row, step_of, summarize_rows, write_json
from metabench.run_folder import disk, finished_summary, make_folder, open_folder, read_config, utc
from metabench.schema import Sample, dumps
from metabench.scoring import score
from metabench.source import tokenizer_folder
from metabench.suite import Suite
from metabench.tokenizer import Tokenizer, load_tokenizer
from metabench.window import context_source


@dataclass(frozen=True)
class RunConfig:
    model: str  # hf:PATH | vllm:PATH | openai:URL
    suite: Suite
    out: Path
    tokenizer: str | None = None  # default: the model folder
    context: int | None = None  # default: the model's window from its config (or the server's)
    name: str | None = None  # model name on leaderboards; default: the folder or served model name
    options: Options = field(default_factory=Options)
    backend: BackendOptions = field(default_factory=BackendOptions)
    allow_beyond_context: bool = False
    progress: bool = True
    command: str = ""
    scoring: str = "generate"  # generate: the model writes its answer | loglik: one forward pass over prompt + gold answer
    step: int | None = None  # training step of the checkpoint; default: read from the model folder's name

    def __post_init__(self) -> None:
        if self.scoring not in SCORINGS:
            raise MetabenchError(f"scoring {self.scoring!r}: choose one of {', '.join(SCORINGS)}")
        if self.step is not None and self.step < 0:
            raise MetabenchError(f"step {self.step}: a training step is a number >= 0")


def _git_commit() -> dict[str, Any]:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if sha.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def _hardware() -> dict[str, Any]:
    hw: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        hw["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return hw


@dataclass(frozen=True)
class _Model:
    """What is known of the model before loading it: where it is, 1x, and the most it serves."""

    target: Target | None  # None for an openai server, which states only its max_model_len
    tokenizer: str | None  # default tokenizer folder: the model's (for a hub id, its snapshot)
    limit: int | None  # the longest prompt + answer it serves


def _model(cfg: RunConfig, kind: str, spec: str, backend: Backend | None) -> _Model:
    tokenizer = tokenizer_folder(cfg.tokenizer) if cfg.tokenizer else None
    if kind in SERVED:
        return _Model(None, tokenizer, None)
    given = getattr(backend, "target", None)
    if given is not None and given.source.folder is None:  # a model in memory (metabench.evaluate): nothing to resolve
        return _Model(given, tokenizer or backend.tokenizer_path, given.limit)
    target = resolve_target(spec, cfg.backend.rope_parameters)
    return _Model(target, tokenizer or str(target.source.folder), target.limit)


def _window_record(model: _Model, context: int, given: bool) -> dict[str, Any]:
    """summary.json's words on the window: 1x in tokens, which number it was, the most the model serves."""
    window = model.target.window if model.target else None
    fields = window.record() if window else {"native_context": model.limit}
    return {**fields, "context": context, "context_source": context_source(window, context, given), "window": model.limit}


@dataclass
class _Plan:
    """What the run is, known before any model is loaded."""

    kind: str
    target: str
    model: _Model
    tok: Tokenizer
    context: int
    lengths: list[Length]  # shortest first
    backend: Backend | None  # served models: built early, to ask the server for its window
    thinking: Thinking
    chat: tuple[str, str] | None  # openai-chat: the template's text around the user message
    thinking_budget: int  # --max-tokens, on top of each sample's answer budget
    need: int  # the longest sample plus the thinking budget


def _plan(cfg: RunConfig, backend: Backend | None) -> tuple[RunConfig, _Plan]:
    """Tokenizer, lengths and the window check: everything that can fail in seconds, before the folder or model."""
    kind, target = parse_model(cfg.model)
    thinking = Thinking.parse(cfg.backend.thinking)
    if cfg.scoring == "loglik":  # before the server is asked anything
        _loglik_options(cfg, kind)
    if kind == "openai-chat":  # measured through the template the server applies; no answer prefix after it
        cfg = dataclasses.replace(cfg, options=dataclasses.replace(cfg.options, chat_template=True, answer_prefix=False))
    model = _model(cfg, kind, target, backend)
    if kind in SERVED and backend is None:  # cheap: ask the server for its model and window first
        backend = make_backend(cfg.model, cfg.backend, model.tokenizer)
    if kind in SERVED:
        model = dataclasses.replace(model, limit=backend.context)
    if model.tokenizer is None:
        raise MetabenchError("pass --tokenizer DIR: the model's tokenizer is needed to measure lengths")
    tok = load_tokenizer(model.tokenizer)
    chat = tok.chat_wrap(cfg.options.system) if kind == "openai-chat" else None  # no template: refused here
    talks = [e.name for e in cfg.suite.entries if e.spec.conversation]
    if chat and talks:  # a conversation's turns are the template's text: one user message cannot carry them
        raise MetabenchError(f"openai-chat sends each prompt as one user message, so the conversation task {talks[0]} "
                             "cannot go through it: run it with openai: (completions) and --chat-template")
    context = cfg.context or (model.target.window.context if model.target else model.limit)
    if context is None:
        raise MetabenchError("the model's context length is unknown: pass --context N")
    lengths = sorted(parse_lengths(list(cfg.suite.lengths), context), key=lambda l: l.tokens)
    limit, longest = model.limit, lengths[-1]
    thinking_budget = cfg.backend.max_tokens or 0  # on top of each sample's answer budget
    need = longest.tokens + thinking_budget
    plus = f" + --max-tokens {thinking_budget}" if thinking_budget else ""
    if limit and need > limit:
        if kind in SERVED:
            raise MetabenchError(
                f"length {longest.label} ({longest.tokens} tokens{plus}) exceeds the server's max_model_len {limit}; "
                "restart the server with a larger --max-model-len (and a rope override) or drop that length"
            )
        if not cfg.allow_beyond_context:
            raise MetabenchError(
                f"length {longest.label} ({longest.tokens} tokens{plus}) exceeds the model's {limit}-token window; pass "
                "--allow-beyond-context to evaluate it anyway, or extend the window with --rope (e.g. YaRN)"
            )
    if cfg.scoring == "loglik":
        _single_answers(cfg)
    return cfg, _Plan(kind, target, model, tok, context, lengths, backend, thinking, chat, thinking_budget, need)


def _loglik_options(cfg: RunConfig, kind: str) -> None:
    """Refuse, before anything is loaded or asked, options that log-likelihood scoring cannot honour."""
    if kind in SERVED:
        raise MetabenchError(f"--scoring loglik needs the model's log-probabilities: use hf: or vllm: instead of {kind}:")
    if cfg.backend.max_tokens is not None:
        raise MetabenchError("--max-tokens is a generation cap; --scoring loglik generates nothing: drop one of them")


def _single_answers(cfg: RunConfig) -> None:
    """Refuse an entry whose samples ask for a set of answers (loglik scores one continuation). How many answers
    a sample has is set by the entry's parameters, so one layout (no filler, no tokenizer) tells; a conversation's
    layout needs its turns, and a conversation asks for one reply."""
    for e in cfg.suite.entries:
        if not e.spec.conversation:
            loglik.single_answer(e.name, e.spec.layout(random.Random(0), 0, cfg.options.marker).answers)


def _identity(cfg: RunConfig, plan: _Plan, weights: dict[str, Any] | None) -> dict[str, Any]:
    s = cfg.suite
    revision = plan.model.target.source.revision if plan.model.target else None
    out = {
        "model": cfg.model + (f"@{revision}" if revision and "@" not in cfg.model else ""),  # a hub id's commit: no mixing
        "tokenizer": plan.tok.fingerprint,
        "suite": {
            "name": s.name, "seed": s.seed,
            "entries": [{"name": e.name, "task": e.task, "variant": e.variant, "samples": e.samples,
                         "params": e.spec.params()} for e in s.entries],
        },
        "lengths": {l.label: l.tokens for l in plan.lengths},
        "context": plan.context,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg.options).items()
                    if k != "context"},
        "backend": cfg.backend.identity(),
    }
    if weights is not None:
        out["weights"] = {k: weights[k] for k in ("config_sha256", "weights_sha256")}
    if cfg.scoring != "generate":  # absent when default, so folders written before these keys still resume
        out["scoring"] = cfg.scoring
    if cfg.step is not None:
        out["step"] = cfg.step
    return out


def _row(s: Sample, request: Request, c: Completion, latency: float, thinking: Thinking, tok: Tokenizer) -> dict[str, Any]:
    """The result row of one completion: its reasoning taken out, the answer scored."""
    parts = split(c.text, c.reasoning, thinking, s.prompt)
    fields = dataclasses.asdict(s)
    return result_row(
        fields, parts.answer, score(fields, parts.answer), c.n_tokens, latency, max_new_tokens=request.max_new_tokens,
        finish_reason=c.finish_reason, server_prompt_tokens=c.prompt_tokens, raw_output=c.text,
        reasoning_field=c.reasoning, reasoning_tokens=None if parts.reasoning is None else tok.count(parts.reasoning),
    )


def chat_messages(prompt: str, frame: tuple[str, str], system: str | None) -> list[dict[str, str]]:
    """A chat-templated prompt as the messages that render to it: the user message is what the template wraps."""
    before, after = frame
    if not (prompt.startswith(before) and prompt.endswith(after)):
        raise RuntimeError("a chat prompt does not start and end with its template's text")
    user = prompt[len(before) : len(prompt) - len(after)]
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def _chunks(cfg: RunConfig, plan: _Plan, done: set[str]) -> list[tuple[Length, list, bool, int]]:
    """(length, [(entry, index)...], first chunk of its length, samples left at that length), in order of work."""
    chunk = max(1, cfg.backend.batch_size) * (1 if plan.kind == "hf" else 8)
    out = []
    for length in plan.lengths:
        todo = [(e, i) for e in cfg.suite.entries for i in range(e.samples) if f"{e.name}/{length.label}/{i}" not in done]
        out += [(length, todo[k : k + chunk], k == 0, len(todo)) for k in range(0, len(todo), chunk)]
    return out


def _say(cfg: RunConfig, message: str) -> None:
    """A stage line on stderr, so a run is never silent while it plans or loads (not with --quiet)."""
    if cfg.progress:
        print(f"metabench: {message}", file=sys.stderr, flush=True)


def _generate(cfg: RunConfig, plan: _Plan, backend: Backend, done: set[str]) -> tuple[list[dict[str, Any]], float]:
    """Generate, score and append every row not in `done`; returns those rows and the seconds spent in the backend."""
    opts = dataclasses.replace(cfg.options, context=plan.context)
    tok = plan.tok
    total = sum(e.samples for e in cfg.suite.entries)
    gen_time = 0.0
    written: list[dict[str, Any]] = []

    def prepare(length: Length, items: list) -> tuple[list[Sample], list[Any]]:
        samples = [make_sample(e, length, i, cfg.suite.seed, tok, opts) for e, i in items]
        requests = []
        for s in samples:
            ids = tok.encode(s.prompt, specials=s.add_special_tokens)
            if len(ids) != s.prompt_tokens:
                raise RuntimeError(f"{s.id}: prompt has {len(ids)} tokens, generation measured {s.prompt_tokens}")
            if cfg.scoring == "loglik":
                requests.append(loglik.request(tok, s, ids))
                continue
            messages = chat_messages(s.prompt, plan.chat, opts.system) if plan.chat else None
            requests.append(Request(ids, s.answer_budget + plan.thinking_budget, messages))
        return samples, requests

    # Work in chunks, length by length. The next chunk's samples are prepared in a
    # thread while the backend generates the current one (samples are pure
    # functions of their ids, so this changes no result, only the wall time).
    chunks = _chunks(cfg, plan, done)
    from concurrent.futures import ThreadPoolExecutor

    bar = None
    results = cfg.out / "results.jsonl"
    _say(cfg, f"generating {'the remaining ' if done else ''}samples in {len(chunks)} chunk(s)")
    with disk(cfg.out), open(results, "a", encoding="utf-8") as f, ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(prepare, chunks[0][0], chunks[0][1]) if chunks else None
        for n, (length, items, first, left) in enumerate(chunks):
            if first and cfg.progress:
                from tqdm import tqdm

                if bar:
                    bar.close()
                bar = tqdm(total=total, initial=total - left, desc=f"{length.label:>6} ({length.tokens} tok)",
                           unit="sample", file=sys.stderr)
            samples, requests = pending.result()
            pending = pool.submit(prepare, chunks[n + 1][0], chunks[n + 1][1]) if n + 1 < len(chunks) else None
            order = sorted(range(len(samples)), key=lambda j: len(requests[j].token_ids))
            t0 = time.perf_counter()
            outs = (backend.loglik if cfg.scoring == "loglik" else backend.generate)([requests[j] for j in order])
            dt = time.perf_counter() - t0
            gen_time += dt
            by_index = dict(zip(order, outs))
            for j, s in enumerate(samples):
                c = by_index[j]
                row = (loglik.row(s, requests[j], c, dt / len(samples), tok) if cfg.scoring == "loglik"
                       else _row(s, requests[j], c, dt / len(samples), plan.thinking, tok))
                f.write(dumps(row) + "\n")
                written.append(row)
            f.flush()
            if bar:
                bar.update(len(samples))
        if bar:
            bar.close()
    return written, gen_time


def _default_name(plan: _Plan, backend: Backend) -> str:
    if plan.kind in SERVED:
        return getattr(backend, "served", plan.target)
    return _folder_name(plan)


def _folder_name(plan: _Plan) -> str:
    """The model folder's name, or a hub id's NAME (a revision after @ left out)."""
    return Path(plan.target.partition("@")[0]).name


def _step(cfg: RunConfig, plan: _Plan) -> int | None:
    """--step, else the step a local checkpoint folder's name carries (checkpoint-500), else None."""
    if cfg.step is not None or plan.kind in SERVED or plan.model.target.source.folder is None:  # in memory: no name
        return cfg.step
    return step_of(_folder_name(plan))


def _summary(cfg: RunConfig, plan: _Plan, backend: Backend, identity: dict[str, Any], rows: list[dict[str, Any]],
             started: float, gen_time: float, resumed_from: int) -> dict[str, Any]:
    name = cfg.name or _default_name(plan, backend)
    return {
        "format": SUMMARY_FORMAT,
        "model": {"name": name, "spec": cfg.model, **_window_record(plan.model, plan.context, cfg.context is not None)},
        "suite": {"name": cfg.suite.name, "seed": cfg.suite.seed, "source": cfg.suite.source,
                  "lengths": {l.label: l.tokens for l in plan.lengths}, "entries": identity["suite"]["entries"]},
        "scoring": cfg.scoring,
        "step": _step(cfg, plan),
        "provenance": {
            "metabench_version": __version__, **_git_commit(), "command": cfg.command,
            "backend": backend.describe(), "tokenizer": {"path": plan.tok.path, "fingerprint": plan.tok.fingerprint},
            "options": identity["options"], "backend_options": dataclasses.asdict(cfg.backend),
            "hardware": _hardware(), "finished_at": utc(),
            "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
            "generate_seconds_this_session": round(gen_time, 3), "resumed_from": resumed_from,
        },
        "cells": summarize_rows(rows),
    }


def _weights(cfg: RunConfig, plan: _Plan, backend: Backend | None, old: dict[str, Any] | None) -> dict[str, Any] | None:
    """The weights' fingerprint for the identity: a local folder's files, a model in memory's tensors; None for a
    hub id (its resolved commit pins them) or a server."""
    source = plan.model.target.source if plan.model.target else None
    if source is None or source.repo_id:
        return None
    _say(cfg, "fingerprinting the weights (a full read only when they changed since the last start)")
    if source.folder is None:
        return backend.weights()
    return folder_hashes(source.folder, (old or {}).get("weights"))


def run(cfg: RunConfig, backend: Backend | None = None) -> dict[str, Any]:
    """Run (or resume) `cfg`; `backend` reuses an already loaded model for cfg.model (or evaluates a model in
    memory: HFBackend.from_model, whose window and weights come with it)."""
    started = time.time()
    _say(cfg, "checking the model folder, tokenizer and lengths")
    cfg, plan = _plan(cfg, backend)
    backend = backend or plan.backend
    make_folder(cfg.out)
    with hold(cfg.out), disk(cfg.out):
        old = read_config(cfg.out)
        weights = _weights(cfg, plan, backend, old)
        identity = _identity(cfg, plan, weights)
        rows = open_folder(cfg.out, identity, old, weights)
        done = {r["id"] for r in rows}
        ids = (f"{e.name}/{l.label}/{i}" for l in plan.lengths for e in cfg.suite.entries for i in range(e.samples))
        finished = finished_summary(cfg.out, ids, cfg.name, rows, done)
        if finished is not None:
            return finished
        if backend is None:
            _say(cfg, f"loading {cfg.model}")
            backend = make_backend(cfg.model, cfg.backend, plan.model.tokenizer, max_len=plan.need,
                                   resolved=plan.model.target)
        written, gen_time = _generate(cfg, plan, backend, done)
        summary = _summary(cfg, plan, backend, identity, rows + written, started, gen_time, len(done))
        write_json(cfg.out / "summary.json", summary)
    return summary


def format_table(summary: dict[str, Any]) -> str:
    """Primary metric (percent) per entry x length: the table printed at the end of a run."""
    cells = [c for c in summary["cells"] if c["depth"] is None]
    # by tokens: summary.json's keys are sorted as text ("1.5x" < "1x")
    labels = [label for label, _ in sorted(summary["suite"]["lengths"].items(), key=lambda kv: kv[1])]
    entries = list(dict.fromkeys(c["entry"] for c in cells))
    width = max(len(e) for e in entries) + 2
    model = summary.get("model", {})
    lines = [f"1x = {model['context']} tokens ({model['context_source']})"] if model.get("context_source") else []
    lines.append(f"{'task':<{width}}" + "".join(f"{l:>9}" for l in labels))
    by = {(c["entry"], c["length_label"]): c for c in cells}
    for e in entries:
        vals = []
        for l in labels:
            c = by.get((e, l))
            vals.append(f"{100 * c['metrics'][c['primary']]['mean']:>9.1f}" if c else f"{'-':>9}")
        lines.append(f"{e:<{width}}" + "".join(vals))
    return "\n".join(lines)
