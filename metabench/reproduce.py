"""One command from nothing to leaderboard: `metabench reproduce --preset tiny --out runs/tiny`.

Stages, each writing only under `out`:

    tokenizer          the bundled reference BPE, copied (see reference_tokenizer.py for why
                       it is copied rather than rebuilt)
    train/meta         pre-train + fine-tune with meta-attention
    train/nometa       the same without meta-attention (the paper's ablation)
    extend/meta        YaRN 2x of each, with a few fine-tuning steps at the new window
    extend/nometa
    eval/<model>       `metabench run` of all four models on the preset's tasks
    analyze/<model>    `metabench analyze` of both base models
    leaderboard        HTML report over the four runs, and results.json: the numbers
                       README and the model card quote

Resumable: a stage that finished leaves `out/.stages/<stage>.json` (what it
was run with) and is skipped next time; a stage killed midway resumes through
its own mechanism (training states, the runner's results.jsonl). A finished
stage whose recorded inputs differ from this run's is an error, not a silent
mix. Deterministic: fixed seeds everywhere and greedy decoding, so two runs on
one machine with the same --jobs give the same numbers.

Parallel: the two trainings, the two extensions, the four evaluations and the
two analyses are independent, and run `--jobs` at a time (default 2 on a CPU
machine, 1 on a GPU), each stage in its own spawned process with
cores // jobs threads, printing a progress line a minute. On a 2-core CPU two
1-thread trainings side by side finish sooner than one after the other with 2
threads each (benchmarks/train_step.py measures both). A stage process dies
with its parent (PR_SET_PDEATHSIG on Linux), so a killed reproduce leaves
nothing running that a rerun would race with. `--publish` also writes
stages.json, each stage's time; the measured times of the tiny reproduction are
in reference_model/MODEL_CARD.md.

Evaluation lengths: the standard 0.25x, 0.5x, 0.75x, 1x, 1.5x, 2x of the
model's training window, keeping those that hold every task's prompt (a
256-token window cannot hold a needle prompt at 0.25x); the dropped lengths
are printed. Base models are evaluated beyond their window on purpose
(`allow_beyond_context`): that column is what YaRN is compared against.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from metabench.errors import LengthError, MetabenchError
from metabench.reference_tokenizer import BUNDLED, META_TOKEN

STANDARD_LENGTHS = ("0.25x", "0.5x", "0.75x", "1x", "1.5x", "2x")
MODELS = ("meta", "nometa", "meta-yarn2x", "nometa-yarn2x")


def _say(text: str) -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class Stage:
    """One named step of the pipeline, run in a worker process.

    fn is a module-level function (a spawned worker imports it by name); watch
    is a JSONL file the stage appends to as it goes (a training log, a
    results.jsonl) and total its final size, for the progress lines.
    """

    name: str
    inputs: dict[str, Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    watch: Path | None = None
    total: int | None = None

    def progress(self) -> str:
        if self.watch is None or not self.watch.is_file():
            return f"{self.name}: running"
        lines = [x for x in self.watch.read_text().splitlines() if x.strip()]
        if lines and self.watch.name == "train_log.jsonl":  # its last record
            last = json.loads(lines[-1])
            return f"{self.name}: step {last['step']}/{self.total} loss {last['loss']:.3f}"
        return f"{self.name}: {len(lines)}/{self.total} samples"


def _worker(fn: Callable[..., Any], args: tuple[Any, ...], threads: int, parent: int, conn: Any) -> None:
    """A stage's process: dies with its parent, uses `threads` cores, reports failure through conn."""
    if sys.platform.startswith("linux"):  # a killed reproduce must not leave a stage running behind it
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)
    import torch

    torch.set_num_threads(threads)
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()  # stages run beyond the window on purpose
        transformers.utils.logging.disable_progress_bar()  # per-file bars of every load and save
    except ImportError:
        pass
    try:
        fn(*args)
    except BaseException as exc:
        traceback.print_exc()
        conn.send(f"{type(exc).__name__}: {exc}")
        raise SystemExit(1) from None
    conn.send(None)


class Stages:
    """Runs named stages once: out/.stages/NAME.json records a finished stage and its inputs.

    A group of independent stages runs `jobs` at a time, each in its own
    spawned process with cores // jobs threads (see the module docstring).
    """

    def __init__(self, out: Path, total: int, jobs: int, poll_s: float = 60.0):
        self.dir = out / ".stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.total, self.k, self.jobs, self.poll_s = total, 0, jobs, poll_s
        self.threads = max(1, _cores() // jobs)

    def _marker(self, stage: Stage) -> Path:
        return self.dir / (stage.name.replace("/", "__") + ".json")

    def run(self, *group: Stage) -> None:
        """Run the stages of a group that are not done yet, up to `jobs` at once."""
        todo: list[tuple[int, Stage]] = []
        for stage in group:
            self.k += 1
            marker = self._marker(stage)
            if marker.is_file():
                done = json.loads(marker.read_text())
                if done["inputs"] != json.loads(json.dumps(stage.inputs)):
                    raise MetabenchError(
                        f"stage {stage.name} in {self.dir.parent} was run with other settings; use a new --out folder"
                    )
                _say(f"[{self.k}/{self.total}] {stage.name}: done")
            else:
                todo.append((self.k, stage))
        ctx = mp.get_context("spawn")  # fork and torch's thread pools do not mix
        running: dict[Any, tuple[int, Stage, float, Any]] = {}
        try:
            while todo or running:
                while todo and len(running) < self.jobs:
                    k, stage = todo.pop(0)
                    _say(f"[{k}/{self.total}] {stage.name}: running")
                    recv, send = ctx.Pipe(duplex=False)
                    proc = ctx.Process(target=_worker, args=(stage.fn, stage.args, self.threads, os.getpid(), send))
                    proc.start()
                    send.close()
                    running[proc] = (k, stage, time.time(), recv)
                ready = mp_connection.wait([p.sentinel for p in running], timeout=self.poll_s)
                if not ready:
                    _say("  " + " | ".join(s.progress() for _, s, _, _ in running.values()))
                for proc in [p for p in running if p.sentinel in ready]:
                    k, stage, t, recv = running.pop(proc)
                    proc.join()
                    error = recv.recv() if recv.poll() else None  # None: no message (killed, or success)
                    recv.close()
                    if error is not None or proc.exitcode != 0:
                        cause = error or f"its process ended with exit code {proc.exitcode}"
                        raise MetabenchError(
                            f"stage {stage.name} failed: {cause}. What it finished is kept: "
                            "fix the cause and rerun the same command to resume"
                        )
                    self._marker(stage).write_text(
                        json.dumps({"inputs": stage.inputs, "seconds": round(time.time() - t, 1),
                                    "threads": self.threads, "jobs": self.jobs}, indent=1) + "\n"
                    )
                    _say(f"[{k}/{self.total}] {stage.name}: finished in {time.time() - t:.0f} s")
        finally:
            for proc in running:  # a failure or Ctrl-C: stop the siblings; they resume on the next run
                proc.kill()
                proc.join()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_jobs(device: str) -> int:
    """Stages at once: 2 on a CPU machine with 2+ cores, else 1 (one GPU trains one model at a time)."""
    import torch

    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return 1 if on_gpu else min(2, _cores())


def eval_suite(cfg: Any, tokenizer_dir: Path, samples: int):
    """The preset's fine-tuning tasks at the standard lengths that hold all of them."""
    from metabench.generate import Options, make_sample
    from metabench.lengths import parse_length
    from metabench.suite import parse_suite
    from metabench.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    window = cfg.model.block_size
    names = dict.fromkeys(cfg.tasks + cfg.anneal_tasks)  # entries may repeat (drawn more often in training)
    tasks = [{"task": t.split("/")[0], "variant": t.split("/")[1]} for t in names]
    suite = parse_suite({"name": "reproduce", "seed": 0, "lengths": list(STANDARD_LENGTHS), "samples": samples,
                         "tasks": tasks})
    keep, dropped = [], []
    for label in STANDARD_LENGTHS:
        length = parse_length(label, window)
        try:
            for e in suite.entries:
                make_sample(e, length, 0, suite.seed, tok, Options(context=window, marker=META_TOKEN))
            keep.append(label)
        except LengthError as exc:
            dropped.append(f"{label} ({exc})")
    if not keep:
        raise MetabenchError(f"no standard length of a {window}-token window holds these tasks")
    for d in dropped:
        _say(f"  evaluation skips length {d}")
    return suite.with_overrides(lengths=tuple(keep))


def _copy_tokenizer(dest: Path) -> None:
    shutil.copytree(BUNDLED, dest, dirs_exist_ok=True)


def _train(cfg: Any, out: Path, device: str, tok_dir: Path) -> None:
    from metabench.train.loop import train

    train(cfg, out, device=device, tokenizer_dir=tok_dir, quiet=True)


def _extend(src: Path, out: Path, steps: int, device: str) -> None:
    from metabench.train.extend import extend_and_finetune

    extend_and_finetune(src, out, 2.0, steps=steps, device=device, quiet=True)


def _evaluate(model: Path, suite: Any, out: Path, window: int, name: str, preset: str) -> None:
    from metabench.generate import Options
    from metabench.runner import RunConfig, run

    run(RunConfig(model=f"hf:{model}", suite=suite, out=out, context=window, name=name,
                  options=Options(marker=META_TOKEN), allow_beyond_context=True, progress=False,
                  command=f"metabench reproduce --preset {preset}"))


def _analyze(checkpoint: Path, out: Path, samples: int, ablation: bool) -> None:
    from metabench.analysis import AnalysisConfig, analyze

    analyze(AnalysisConfig(checkpoint=str(checkpoint), out=out, suite="paper", lengths=("1x",), samples=samples,
                           marker=META_TOKEN, ablation=ablation))


def _leaderboard(out: Path, preset: str) -> None:
    from metabench.report import ReportOptions, build_report

    build_report([out / "results" / m for m in MODELS], out / "leaderboard" / "index.html",
                 ReportOptions(title=f"metabench reference models ({preset})"),
                 analyses=[f"{preset}-{m}={out / 'analysis' / m / 'analysis.json'}" for m in ("meta", "nometa")])
    (out / "leaderboard" / "results.json").write_text(json.dumps(collect(out), indent=1, sort_keys=True) + "\n")


def reproduce(
    preset: str, out: str | Path, device: str = "auto", publish: str | Path | None = None, jobs: int | None = None
) -> dict[str, Any]:
    """Run (or resume) every stage into `out`; returns results.json's numbers. jobs: stages at once."""
    from metabench.train.presets import PRESETS

    if preset not in PRESETS:
        raise MetabenchError(f"unknown preset {preset!r}: choose from {', '.join(PRESETS)}")
    jobs = jobs or default_jobs(device)
    if jobs < 1:
        raise MetabenchError(f"--jobs must be at least 1, got {jobs}")
    cfg, plan = PRESETS[preset].train, PRESETS[preset].reproduce
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    models = out / "models"
    stages = Stages(out, total=1 + 2 + 2 + 4 + 2 + 1, jobs=jobs)
    tok_dir = out / "tokenizer"
    settings = {"preset": preset, "train": cfg.to_dict(), "plan": plan.__dict__}
    _say(f"reproduce --preset {preset}: {jobs} stage(s) at a time, {stages.threads} thread(s) each, in {out}")

    stages.run(Stage("tokenizer", settings, _copy_tokenizer, (tok_dir,)))
    variants = {"meta": cfg, "nometa": cfg.with_overrides(meta_attention=False)}
    stages.run(*(Stage(f"train/{name}", settings, _train, (c, models / name, device, tok_dir),
                       watch=models / name / "train_log.jsonl", total=c.total_steps) for name, c in variants.items()))
    stages.run(*(Stage(f"extend/{name}", settings, _extend, (models / name, models / f"{name}-yarn2x",
                                                              plan.extend_steps, device),
                       watch=models / f"{name}-yarn2x" / "train_log.jsonl", total=plan.extend_steps)
                 for name in variants))

    suite = replace(eval_suite(cfg, tok_dir, plan.eval_samples), name=f"reproduce-{preset}")
    window = cfg.model.block_size
    with_lengths = {**settings, "lengths": list(suite.lengths)}
    samples = len(suite.entries) * len(suite.lengths) * plan.eval_samples
    stages.run(*(Stage(f"eval/{name}", with_lengths, _evaluate,
                       (models / name, suite, out / "results" / name, window, f"{preset}-{name}", preset),
                       watch=out / "results" / name / "results.jsonl", total=samples) for name in MODELS))
    stages.run(*(Stage(f"analyze/{name}", settings, _analyze,
                       (models / name, out / "analysis" / name, plan.analysis_samples, plan.ablation))
                 for name in ("meta", "nometa")))
    stages.run(Stage("leaderboard", with_lengths, _leaderboard, (out, preset)))

    numbers = json.loads((out / "leaderboard" / "results.json").read_text())
    if publish:
        dest = Path(publish)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(out / "leaderboard" / "index.html", dest / "index.html")
        shutil.copy2(out / "leaderboard" / "results.json", dest / "results.json")
        for name in MODELS:
            (dest / "runs" / name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(out / "results" / name / "summary.json", dest / "runs" / name / "summary.json")
        for name in ("meta", "nometa"):
            shutil.copy2(out / "analysis" / name / "analysis.json", dest / f"analysis-{name}.json")
        timing = {}  # how long each stage took, and with how many stages at once and threads each
        for marker in sorted((out / ".stages").glob("*.json")):
            done = json.loads(marker.read_text())
            timing[marker.stem.replace("__", "/")] = {k: done.get(k) for k in ("seconds", "jobs", "threads")}
        (dest / "stages.json").write_text(json.dumps({"cores": _cores(), "stages": timing}, indent=1) + "\n")
        _say(f"published to {dest}")
    return numbers


def collect(out: Path) -> dict[str, Any]:
    """Every number the README and model card quote: primary score per model x task x length, and analyses."""
    table: dict[str, Any] = {}
    for name in MODELS:
        summary = json.loads((out / "results" / name / "summary.json").read_text())
        cells = {}
        for c in summary["cells"]:
            if c["depth"] is None:
                m = c["metrics"][c["primary"]]
                cells.setdefault(c["entry"], {})[c["length_label"]] = {
                    "score": round(m["mean"], 4), "ci": [round(m["ci_low"], 4), round(m["ci_high"], 4)],
                    "n": c["n"], "chance": c["chance"], "metric": c["primary"]}
        table[name] = {"context": summary["model"]["context"], "window": summary["model"]["window"], "cells": cells}
    analyses = {}
    for name in ("meta", "nometa"):
        a = json.loads((out / "analysis" / name / "analysis.json").read_text())
        analyses[name] = {
            "mean_entropy_drop": a["attention"]["mean_entropy_drop"],
            "mean_max_logit_diff": a["attention"]["mean_max_logit_diff"],
            "residual_cosine": a["residual_cosine"],
            "zero_position_ablation": a.get("zero_position_ablation"),
        }
    return {"models": table, "analyses": analyses}
