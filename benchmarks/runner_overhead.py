"""Runner overhead: `metabench run`'s wall time vs the backend's own generate time on the same prompts.

In one process: load a transformers model once; time the runner on a suite
(sample generation, tokenization, batching, scoring, JSONL writes, summary);
then time the bare backend generating the very same token ids in the same
batches. Prints both and the overhead ratio (target: under 5%).

    python3 benchmarks/runner_overhead.py [--model DIR] [--suite smoke] [--context 2048]

Without --model it builds a small random Llama (4 layers, width 256, head_dim 64)
with the bundled tokenizer in a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from metabench.backends import BackendOptions, Request, make_backend
from metabench.reference_tokenizer import BUNDLED
from metabench.generate import Options, make_sample
from metabench.lengths import parse_lengths
from metabench.runner import RunConfig, run
from metabench.suite import load_suite
from metabench.tokenizer import load_tokenizer


def small_llama(folder: Path, context: int) -> Path:
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = load_tokenizer(BUNDLED)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=tok.backend.get_vocab_size(), hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, head_dim=64, max_position_embeddings=context,
                      eos_token_id=0, pad_token_id=0, bos_token_id=None)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    for f in Path(BUNDLED).iterdir():
        shutil.copy(f, folder / f.name)
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="transformers model folder (default: a small random Llama)")
    p.add_argument("--suite", default="smoke")
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--samples", type=int, default=16, help="samples per task and length (fixed costs amortise as in real runs)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    model = Path(args.model) if args.model else small_llama(tmp / "model", args.context)
    suite = load_suite(args.suite).with_overrides(samples=args.samples)
    options = BackendOptions(dtype="float32", batch_size=args.batch_size)
    backend = make_backend(f"hf:{model}", options, str(model))

    # The same prompts, tokenized outside the timing, in the runner's batches.
    tok = load_tokenizer(str(model))
    opts = Options(context=args.context)
    batches = []
    for length in sorted(parse_lengths(list(suite.lengths), args.context), key=lambda l: l.tokens):
        todo = [(e, i) for e in suite.entries for i in range(e.samples)]
        for k in range(0, len(todo), args.batch_size):
            reqs = []
            for e, i in todo[k : k + args.batch_size]:
                s = make_sample(e, length, i, suite.seed, tok, opts)
                reqs.append(Request(tok.encode(s.prompt, specials=s.add_special_tokens), s.answer_budget))
            batches.append(sorted(reqs, key=lambda r: len(r.token_ids)))

    def bare() -> float:
        t = time.perf_counter()
        for b in batches:
            backend.generate(b)
        return time.perf_counter() - t

    def harness(k: int) -> float:
        t = time.perf_counter()
        run(RunConfig(model=f"hf:{model}", suite=suite, out=tmp / f"run{k}", context=args.context, backend=options,
                      progress=False), backend=backend)
        return time.perf_counter() - t

    backend.generate(batches[0])  # warm-up, outside every timing
    # Alternate bare and harness runs and compare medians, so drift on a busy machine cancels out.
    bares, harnesses = [], []
    for k in range(args.repeats):
        bares.append(bare())
        harnesses.append(harness(k))
    bare_s, harness_s = statistics.median(bares), statistics.median(harnesses)

    n = sum(len(b) for b in batches)
    print(f"suite {suite.name}: {n} samples, lengths {', '.join(suite.lengths)} of {args.context} tokens")
    print(f"metabench run (harness):  {harness_s:8.2f} s  median of {', '.join(f'{x:.2f}' for x in harnesses)}")
    print(f"backend generate alone:   {bare_s:8.2f} s  median of {', '.join(f'{x:.2f}' for x in bares)}")
    print(f"overhead: {100 * (harness_s / bare_s - 1):+.1f}%  (target < 5%)")


if __name__ == "__main__":
    main()
