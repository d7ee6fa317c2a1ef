"""Evaluate a model in memory, from Python: the library's entry point for notebooks and training loops.

    import metabench
    result = metabench.evaluate(model, tokenizer, suite="smoke", lengths=["1x"], out="results/step-500", step=500)
    print(result.table)            # the table `metabench run` prints
    result.summary                 # summary.json's dict (metabench/results.py)
    result.scores()                # {"kv_recall/single@1x": 0.75, ...}: each task's primary metric per length

It is `metabench run --model hf:FOLDER` without the folder: the same runner
(metabench.runner.run) drives an HFBackend built around the model as it is
(HFBackend.from_model), so a results folder written here holds the same rows
(prompts, predictions, scores) as `metabench run` on the model saved to disk,
and resumes the same way (the weights are fingerprinted from the tensors).

The model is left as it was found: its device and dtype are never changed,
every module's train/eval mode is restored afterwards, and nothing runs with
gradients (torch.no_grad). 1x is the window its config states (window.py),
else `context=`. The tokenizer is a transformers tokenizer object (saved to a
temporary folder, since lengths are measured from a tokenizer's files) or a
tokenizer folder.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from metabench.errors import MetabenchError

if TYPE_CHECKING:
    from metabench.suite import Suite


@dataclass(frozen=True)
class Evaluation:
    """What evaluate returns: summary.json's dict and where its results folder is (None: a temporary one, removed)."""

    summary: dict[str, Any]
    out: Path | None

    @property
    def table(self) -> str:
        """The primary metric (percent) per task x length, as `metabench run` prints it."""
        from metabench.runner import format_table

        return format_table(self.summary)

    def scores(self) -> dict[str, float]:
        """Each entry's primary metric (a fraction) per length, keyed ENTRY@LABEL (e.g. "kv_recall/single@1x")."""
        return {f"{c['entry']}@{c['length_label']}": c["metrics"][c["primary"]]["mean"]
                for c in self.summary["cells"] if c["depth"] is None}

    def __str__(self) -> str:
        return self.table


def evaluate(
    model: Any,
    tokenizer: Any,
    *,
    suite: str | Path | Suite = "smoke",
    tasks: Sequence[str] | None = None,
    lengths: Sequence[str] | str | None = None,
    samples: int | None = None,
    context: int | None = None,
    marker: str | None = None,
    scoring: str = "generate",
    out: str | Path | None = None,
    batch_size: int = 8,
    step: int | None = None,
    name: str | None = None,
    progress: bool = False,
) -> Evaluation:
    """Evaluate a transformers causal LM in memory on a suite; see the module docstring.

    suite: a bundled suite's name, a YAML path or a Suite; tasks, lengths ("0.5x,1x" or a list) and samples override it
    as `metabench run`'s flags do. out: a results folder to write (or resume); None runs in a temporary one.
    step: the training step recorded in the summary. name: the model's name in reports (default: the folder it
    was loaded from, else its class).
    """
    from metabench.backends import BackendOptions
    from metabench.generate import Options
    from metabench.runner import RunConfig, run

    if not hasattr(model, "config") or not hasattr(model, "generate"):
        raise MetabenchError(f"model: pass a transformers causal LM (PreTrainedModel), got {type(model).__name__}")
    picked = pick_suite(suite, tasks, lengths, samples)
    name = name or Path(getattr(model, "name_or_path", "") or type(model).__name__).name or type(model).__name__
    options = BackendOptions(batch_size=batch_size)
    with tempfile.TemporaryDirectory(prefix="metabench-") as tmp:
        tok = _tokenizer_folder(tokenizer, Path(tmp) / "tokenizer")
        folder = Path(out) if out is not None else Path(tmp) / "results"
        cfg = RunConfig(model=f"hf:{name}", suite=picked, out=folder, context=context, name=name,
                        options=Options(marker=marker), backend=options, progress=progress,
                        command="metabench.evaluate", scoring=scoring, step=step)
        from metabench.backends.hf import HFBackend

        with _inference(model):
            summary = run(cfg, HFBackend.from_model(model, name, tok, options, context))
    return Evaluation(summary, Path(out) if out is not None else None)


def pick_suite(suite: str | Path | Suite, tasks: Sequence[str] | None = None, lengths: Sequence[str] | str | None = None,
               samples: int | None = None) -> Suite:
    """A suite (a bundled name, a YAML path or a Suite) with evaluate's overrides, as `metabench run`'s flags apply
    them; bad input is a one-line error (a training loop can check it before its first step)."""
    from metabench.suite import Suite, customize, load_suite

    if isinstance(lengths, str):
        lengths = lengths.split(",")
    labels = tuple(x.strip() for x in lengths if x.strip()) if lengths else None
    base = suite if isinstance(suite, Suite) else load_suite(suite)
    return customize(base, tasks=list(tasks) if tasks else None, lengths=labels, samples=samples)


def _tokenizer_folder(tokenizer: Any, into: Path) -> str:
    """A folder the tokenizer can be read from: the folder given, or the object saved into `into`."""
    from metabench.source import tokenizer_folder

    if isinstance(tokenizer, (str, Path)):
        return tokenizer_folder(str(tokenizer))
    if not callable(getattr(tokenizer, "save_pretrained", None)):
        raise MetabenchError(f"tokenizer: pass a transformers tokenizer or a tokenizer folder, got {type(tokenizer).__name__}")
    tokenizer.save_pretrained(str(into))
    return str(into)


@contextlib.contextmanager
def _inference(model: Any) -> Iterator[None]:
    """Eval mode and no gradients while inside; every module's own mode back afterwards (a frozen part stays eval)."""
    import torch

    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training
