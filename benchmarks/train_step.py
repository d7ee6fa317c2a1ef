"""Tiny-preset CPU training step: the loss computation, and one 2-thread run vs two 1-thread runs.

    python3 benchmarks/train_step.py

Prints, on the tiny preset's own block-wide batches (its first 12 pre-training
steps and 10 of its last fine-tuning steps; the short induction rows are left
out), seconds per optimizer step for:

1. the loss as metabench.train.loop.batch_loss computes it (targets shifted)
   against its peer, the usual `logits[:, :-1]` slice, which copies the
   (B, T, vocab) logits and zero-fills their gradient; both with all threads;
2. one training process with 2 threads against two 1-thread processes side by
   side (what `metabench reproduce --jobs 2` does with its two trainings), as
   seconds per step per model: the pair's wall time is the slower process's.

Measured on this machine's 2 quiet cores (two runs): sliced 0.417-0.418 vs
shifted 0.398-0.400 s/step (4-5% less); one 2-thread training 0.385-0.390
s/step vs two 1-thread ones side by side at 0.673-0.676 s/step each (13% less
wall time for the pair).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

WARMUP = 2


def steps() -> list[int]:
    """12 pre-training and 10 fine-tuning steps of the tiny preset (step numbers over the whole run)."""
    from metabench.train.presets import PRESETS

    cfg = PRESETS["tiny"].train
    first = cfg.induction_steps  # pre-training's first step
    return [*range(first, first + 12), *range(cfg.total_steps - 100, cfg.total_steps - 90)]


def sliced_loss(model, batch, denom, scale):
    """The peer: cross-entropy on logits[:, :-1] (a copy of the logits, and a zero-filled gradient)."""
    logits = model(input_ids=batch.ids, use_cache=False).logits
    ce = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), batch.ids[:, 1:].flatten(), reduction="none")
    return (ce * batch.weights[:, 1:].flatten()).sum() / denom * scale


def seconds_per_step(loss_fn, threads: int) -> float:
    from metabench.reference_tokenizer import BUNDLED
    from metabench.tokenizer import load_tokenizer
    from metabench.train.data import Stream
    from metabench.train.loop import StepData, batch_loss, build_optimizer, new_model
    from metabench.train.presets import PRESETS

    torch.set_num_threads(threads)
    cfg = PRESETS["tiny"].train
    tok = load_tokenizer(str(BUNDLED))
    stream = Stream.for_config(tok, cfg)
    data = StepData(stream, cfg, 0, 1)
    batches = [data[s][1][0] for s in steps()]  # the phase's rows, built before timing: only the step is measured
    model = new_model(cfg, stream.eos_id).train()
    opt = build_optimizer(model, cfg, fused=False)
    fn = batch_loss if loss_fn == "shifted" else sliced_loss
    for i, b in enumerate(batches[:WARMUP] + batches):
        if i == WARMUP:
            t = time.perf_counter()
        fn(model, b, b.weights[:, 1:].sum(), 1.0).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t) / len(batches)


def worker(loss_fn: str, threads: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--worker", loss_fn, str(threads)], stdout=subprocess.PIPE,
                            text=True)


def result(p: subprocess.Popen) -> float:
    out, _ = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"a benchmark process failed (exit {p.returncode})")
    return json.loads(out.strip().splitlines()[-1])["s_per_step"]


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        print(json.dumps({"s_per_step": seconds_per_step(sys.argv[2], int(sys.argv[3]))}))
        return
    threads = torch.get_num_threads()
    sliced = result(worker("sliced", threads))
    shifted = result(worker("shifted", threads))
    print(f"loss, {threads} threads: sliced logits (peer) {sliced:.3f} s/step, shifted targets {shifted:.3f} "
          f"s/step: ratio {shifted / sliced:.2f} ({100 * (1 - shifted / sliced):.0f}% less)")
    one = result(worker("shifted", 2))
    pair = [worker("shifted", 1), worker("shifted", 1)]
    side = max(result(p) for p in pair)
    print(f"two trainings: one after the other with 2 threads {one:.3f} s/step each (pair {2 * one:.3f}); side by "
          f"side with 1 thread {side:.3f} s/step each: ratio {side / (2 * one):.2f} "
          f"({100 * (1 - side / (2 * one)):.0f}% less wall time for the pair)")


if __name__ == "__main__":
    main()
