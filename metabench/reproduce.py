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
one machine give the same numbers.

Evaluation lengths: the standard 0.25x, 0.5x, 0.75x, 1x, 1.5x, 2x of the
model's training window, keeping those that hold every task's prompt (a
256-token window cannot hold a needle prompt at 0.25x); the dropped lengths
are printed. Base models are evaluated beyond their window on purpose
(`allow_beyond_context`): that column is what YaRN is compared against.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from metabench.errors import LengthError, MetabenchError

STANDARD_LENGTHS = ("0.25x", "0.5x", "0.75x", "1x", "1.5x", "2x")
MARKER = "<|meta|>"


@dataclass(frozen=True)
class Plan:
    """What `reproduce` does beyond training, per preset."""

    extend_steps: int  # fine-tuning steps at the YaRN-extended window
    eval_samples: int  # per task and length
    analysis_samples: int  # per task, at 1x, for the attention and cosine analyses
    ablation: bool = True  # the zeroed-positional-encoding evaluation


PLANS: dict[str, Plan] = {
    "micro": Plan(extend_steps=2, eval_samples=2, analysis_samples=2),
    "tiny": Plan(extend_steps=200, eval_samples=20, analysis_samples=10),
    "small": Plan(extend_steps=400, eval_samples=50, analysis_samples=20),
    "paper": Plan(extend_steps=1000, eval_samples=100, analysis_samples=50),
}
MODELS = ("meta", "nometa", "meta-yarn2x", "nometa-yarn2x")


def _say(text: str) -> None:
    print(text, flush=True)


class Stages:
    """Runs named stages once: out/.stages/NAME.json records a finished stage and its inputs."""

    def __init__(self, out: Path, total: int):
        self.dir = out / ".stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.total, self.k = total, 0

    def run(self, name: str, inputs: dict[str, Any], fn: Callable[[], Any]) -> bool:
        """Run fn unless the stage is done; returns whether it ran."""
        self.k += 1
        marker = self.dir / (name.replace("/", "__") + ".json")
        if marker.is_file():
            done = json.loads(marker.read_text())
            if done["inputs"] != json.loads(json.dumps(inputs)):
                raise MetabenchError(
                    f"stage {name} in {self.dir.parent} was run with other settings; use a new --out folder"
                )
            _say(f"[{self.k}/{self.total}] {name}: done")
            return False
        _say(f"[{self.k}/{self.total}] {name}: running")
        t = time.time()
        fn()
        marker.write_text(json.dumps({"inputs": inputs, "seconds": round(time.time() - t, 1)}, indent=1) + "\n")
        _say(f"[{self.k}/{self.total}] {name}: finished in {time.time() - t:.0f} s")
        return True


def eval_suite(cfg: Any, tokenizer_dir: Path, samples: int):
    """The preset's fine-tuning tasks at the standard lengths that hold all of them."""
    from metabench.generate import Options, make_sample
    from metabench.lengths import parse_length
    from metabench.suite import parse_suite
    from metabench.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    window = cfg.model.block_size
    tasks = [{"task": t.split("/")[0], "variant": t.split("/")[1]} for t in cfg.tasks]
    suite = parse_suite({"name": "reproduce", "seed": 0, "lengths": list(STANDARD_LENGTHS), "samples": samples,
                         "tasks": tasks})
    keep, dropped = [], []
    for label in STANDARD_LENGTHS:
        length = parse_length(label, window)
        try:
            for e in suite.entries:
                make_sample(e, length, 0, suite.seed, tok, Options(context=window, marker=MARKER))
            keep.append(label)
        except LengthError as exc:
            dropped.append(f"{label} ({exc})")
    if not keep:
        raise MetabenchError(f"no standard length of a {window}-token window holds these tasks")
    for d in dropped:
        _say(f"  evaluation skips length {d}")
    return suite.with_overrides(lengths=tuple(keep))


def reproduce(preset: str, out: str | Path, device: str = "auto", publish: str | Path | None = None) -> dict[str, Any]:
    from metabench.train.presets import PRESETS

    if preset not in PRESETS or preset not in PLANS:
        raise MetabenchError(f"unknown preset {preset!r}: choose from {', '.join(p for p in PRESETS if p in PLANS)}")
    cfg, plan = PRESETS[preset], PLANS[preset]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    models = out / "models"
    stages = Stages(out, total=1 + 2 + 2 + 4 + 2 + 1)
    tok_dir = out / "tokenizer"
    settings = {"preset": preset, "train": cfg.to_dict(), "plan": plan.__dict__}

    def build_tokenizer() -> None:
        from metabench.cli import default_tokenizer

        shutil.copytree(default_tokenizer(), tok_dir, dirs_exist_ok=True)

    stages.run("tokenizer", settings, build_tokenizer)

    from metabench.train.extend import extend_and_finetune
    from metabench.train.loop import train

    variants = {"meta": cfg, "nometa": cfg.with_overrides(meta_attention=False)}
    for name, c in variants.items():
        stages.run(f"train/{name}", settings,
                   lambda c=c, name=name: train(c, models / name, device=device, tokenizer_dir=tok_dir))
    for name in variants:
        stages.run(f"extend/{name}", settings, lambda name=name: extend_and_finetune(
            models / name, models / f"{name}-yarn2x", 2.0, steps=plan.extend_steps, device=device))

    from metabench.generate import Options
    from metabench.runner import RunConfig, run

    suite = eval_suite(cfg, tok_dir, plan.eval_samples)
    window = cfg.model.block_size
    for name in MODELS:
        stages.run(f"eval/{name}", {**settings, "lengths": list(suite.lengths)}, lambda name=name: run(RunConfig(
            model=f"hf:{models / name}", suite=replace(suite, name=f"reproduce-{preset}"), out=out / "results" / name,
            context=window, name=f"{preset}-{name}", options=Options(marker=MARKER), allow_beyond_context=True,
            progress=False, command=f"metabench reproduce --preset {preset}")))

    from metabench.analysis import AnalysisConfig, analyze

    for name in ("meta", "nometa"):
        stages.run(f"analyze/{name}", settings, lambda name=name: analyze(AnalysisConfig(
            checkpoint=str(models / name), out=out / "analysis" / name, suite="paper", lengths=("1x",),
            samples=plan.analysis_samples, marker=MARKER, ablation=plan.ablation)))

    def leaderboard() -> None:
        from metabench.report import ReportOptions, build_report

        build_report([out / "results" / m for m in MODELS], out / "leaderboard" / "index.html",
                     ReportOptions(title=f"metabench reference models ({preset})"),
                     analyses=[f"{preset}-{m}={out / 'analysis' / m / 'analysis.json'}" for m in ("meta", "nometa")])
        (out / "leaderboard" / "results.json").write_text(json.dumps(collect(out), indent=1, sort_keys=True) + "\n")

    stages.run("leaderboard", {**settings, "lengths": list(suite.lengths)}, leaderboard)
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
