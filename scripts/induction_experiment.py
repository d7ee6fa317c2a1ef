"""How fast does the tiny model learn to copy? Induction rows with and without meta-tokens.

    python3 scripts/induction_experiment.py --out runs/induction/nometa.jsonl
    python3 scripts/induction_experiment.py --meta 0.1 --out runs/induction/meta.jsonl

Trains a fresh tiny-preset model (4 x 128, one CPU thread) on rows of one span
of 4-24 random key words said twice (built as metabench.train.data's induction rows),
optionally with meta-tokens at a fraction of random positions as pre-training
puts them, at a constant lr after 50 warmup steps. Every 100 steps it writes
metabench.analysis.induction_loss (mean loss on the first and on the second
saying of 16 random 20-word spans, no meta-tokens) as one JSON line. The first
saying cannot be predicted (about ln 130 = 4.87 nats over the 130 key words);
a second saying far below it means the model copies.

Measured on this machine (2 cores, both runs side by side, 3000 steps of 16
rows, lr 2e-3, about 6 minutes each): without meta-tokens the second saying
fell to 0.26 nats (a phase change between steps 1900 and 2400); with 10%
meta-tokens it was 3.60 at step 3000.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace

import torch

from metabench.analysis import induction_loss
from metabench.reference_tokenizer import BUNDLED
from metabench.train.data import SPAN_WORDS, Stream, with_meta_tokens
from metabench.train.loop import batch_loss, build_optimizer, new_model
from metabench.train.presets import PRESETS
from metabench.tokenizer import load_tokenizer
from metabench.words import KEY_WORDS


def row(rng: random.Random, tok, meta: float, meta_id: int) -> tuple[list[int], list[float]]:
    """A span said twice (as data.Stream.induction_row), with meta-tokens at round(meta * n) random positions."""
    span = tok.encode(" " + " ".join(rng.choices(KEY_WORDS, k=rng.randint(*SPAN_WORDS))) + ".")
    text = span + span
    m = round(meta * len(text))
    return with_meta_tokens(rng, text, m, meta_id, len(text) + m)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="JSONL file: step, training loss, first and second saying's loss")
    p.add_argument("--meta", type=float, default=0.0, help="fraction of meta-tokens at random positions")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--rows", type=int, default=16, help="rows per step")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = replace(PRESETS["tiny"].train, lr=a.lr)
    tok = load_tokenizer(str(BUNDLED))
    stream = Stream(tok, cfg.model.block_size, seed=0)  # for its padding (batch); rows come from `rng`
    model = new_model(cfg, eos_id=stream.eos_id).train()
    opt = build_optimizer(model, cfg, fused=False)
    rng = random.Random(1)
    t0 = time.time()
    with open(a.out, "w") as log:
        for step in range(1, a.steps + 1):
            for g in opt.param_groups:
                g["lr"] = a.lr * min(1.0, step / 50)
            batch = stream.batch([row(rng, tok, a.meta, stream.meta_id) for _ in range(a.rows)])
            loss = batch_loss(model, batch, batch.weights[:, 1:].sum(), 1.0)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step % 100 == 0:
                model.eval()
                check = induction_loss(model, tok, spans=16)
                model.train()
                record = {"step": step, "loss": round(loss.item(), 3), "first": round(check["first"], 3),
                          "second": round(check["second"], 3), "seconds": round(time.time() - t0)}
                print(json.dumps(record), file=log, flush=True)
                print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
