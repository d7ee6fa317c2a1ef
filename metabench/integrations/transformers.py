"""A transformers `Trainer` callback that evaluates the model being trained every N steps.

    from metabench.integrations.transformers import MetabenchCallback

    trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                      callbacks=[MetabenchCallback(suite="smoke", every=500, out_dir="runs/metabench",
                                                   lengths=["0.5x", "1x"])])

Every `every` steps, on the main process only (state.is_world_process_zero),
it runs metabench.evaluate on the trainer's model and tokenizer
(processing_class) and writes OUT_DIR/step-N/, a results folder recording
step N, so `metabench report OUT_DIR` draws the series. Each entry's primary
metric per length goes through `Trainer.log` as `metabench/ENTRY@LABEL`
(e.g. metabench/kv_recall/single@1x): into state.log_history and every
reporting integration (W&B, TensorBoard, ...). The Trainer calls callbacks
without itself, so the callback takes the Trainer that calls its
on_train_begin (or the one given as `trainer=`).

The suite and its options are checked when the callback is made, so bad
input fails before training starts. A step already evaluated (a resumed
training run) is read back from its folder, not run again; an evaluation
that cannot run (a length beyond the model's window, a step folder holding
other weights) is one warning line on stderr, and training goes on. Other
processes go on training meanwhile; with DDP they wait at the next gradient
sync.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from metabench.api import evaluate, pick_suite
from metabench.errors import MetabenchError, warn


class MetabenchCallback(TrainerCallback):
    """Evaluate with metabench every `every` steps; see the module docstring. `options` go to metabench.evaluate
    (tasks, lengths, samples, context, marker, batch_size, name, progress); `tokenizer` replaces the trainer's
    processing_class (a transformers tokenizer or a tokenizer folder)."""

    def __init__(self, suite: str | Path = "smoke", every: int = 500, out_dir: str | Path = "metabench",
                 scoring: str = "generate", tokenizer: Any = None, trainer: Trainer | None = None, **options: Any):
        if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
            raise MetabenchError(f"every={every!r}: evaluate every N training steps, N a positive integer")
        unknown = set(options) - {"context", "marker", "batch_size", "name", "progress", "tasks", "lengths", "samples"}
        if unknown:
            raise MetabenchError(f"MetabenchCallback: unknown option(s) {', '.join(sorted(unknown))}; see metabench.evaluate")
        picks = {k: options.pop(k) for k in ("tasks", "lengths", "samples") if k in options}
        self.suite = pick_suite(suite, **picks)  # bad input fails now, not after hours of training
        self.every, self.out_dir, self.scoring, self.tokenizer, self.trainer = every, Path(out_dir), scoring, tokenizer, trainer
        self.options = options

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        if self.tokenizer is None and kwargs.get("processing_class") is None:
            raise MetabenchError("MetabenchCallback needs the tokenizer: pass processing_class=tokenizer to the "
                                 "Trainer, or tokenizer= to the callback")
        self.trainer = self.trainer or _calling_trainer()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        step = state.global_step
        if step % self.every or not state.is_world_process_zero:
            return
        try:
            result = evaluate(kwargs["model"], self.tokenizer or kwargs["processing_class"], suite=self.suite,
                              scoring=self.scoring, out=self.out_dir / f"step-{step}", step=step, **self.options)
        except MetabenchError as exc:  # an evaluation that cannot run is said, and ends no training run
            warn(f"step {step} not evaluated: {exc}")
            return
        logs = {f"metabench/{key}": value for key, value in result.scores().items()}
        if self.trainer is not None:
            due = control.should_log  # the callback handler's on_log clears it: the step's own log would be lost
            self.trainer.log(logs)
            control.should_log = due
        else:  # callbacks driven by something else than a Trainer: the history at least
            state.log_history.append({**logs, "step": step})


def _calling_trainer() -> Trainer | None:
    """The Trainer whose callback handler is calling us (a few frames up), or None."""
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, Trainer):
            return owner
        frame = frame.f_back
    return None
