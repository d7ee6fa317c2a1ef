"""Data generation speed: metabench's generators vs lm-eval's RULER generators.

Both generate the same number of samples at 4k, 16k and 32k tokens with the
same tokenizer, in one run: single needles (word key, number value, RULER's
`niah_single_1` setting), then variable tracking, common words and frequent
words (RULER's vt, cwe and fwe, each with RULER's defaults). Prints samples/s
of each, their ratio, and how full each fills its budget. Then checks that
metabench's memory stays flat in the number of samples (it streams to disk).

Cold start: the whole `metabench generate` process (interpreter start,
imports, tokenizer, haystack, 500 needles at 16k, written to disk), timed
end to end as a user runs it, against RULER's generator alone, in-process
with its tokenizer already loaded (its imports not counted).

    python3 benchmarks/datagen.py [--tokenizer DIR] [--samples 500] [--only cold]

Needs lm-eval with its RULER extras (`pip install lm-eval wonderwords nltk`).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from metabench.reference_tokenizer import BUNDLED
from metabench.generate import Options, generate_to_file, iter_samples
from metabench.suite import parse_suite
from metabench.tokenizer import load_tokenizer


def ruler(tokenizer_dir: str, length: int, n: int) -> tuple[float, float]:
    from transformers import AutoTokenizer
    from lm_eval.tasks.ruler.niah_utils import TEMPLATE
    from lm_eval.tasks.ruler.prepare_niah import generate_samples, get_haystack

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    t = time.perf_counter()
    rows = generate_samples(
        get_haystack(type_haystack="repeat"), max_seq_length=length, template=TEMPLATE,
        type_haystack="repeat", type_needle_k="words", type_needle_v="numbers", num_samples=n, TOKENIZER=tok,
    )
    dt = time.perf_counter() - t
    fill = statistics.mean((r["length"] + 128) / length for r in rows)  # RULER reserves 128 answer tokens
    return len(rows) / dt, fill


def ruler_aggregate(task: str, tokenizer_dir: str, length: int, n: int) -> tuple[float, float]:
    """lm-eval's RULER generator for vt, cwe or fwe, as its get_dataset calls it (vt builds its one-shot example too)."""
    import contextlib
    import io

    from transformers import AutoTokenizer
    from lm_eval.tasks.ruler import cwe_utils, fwe_utils, vt_utils

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)

    def vt() -> list[dict]:
        icl = vt_utils.sys_vartrack_w_noise_random(tokenizer=tok, num_samples=1, max_seq_length=500, incremental=5)[0]
        return vt_utils.sys_vartrack_w_noise_random(tokenizer=tok, num_samples=n, max_seq_length=length, icl_example=icl)

    make = {
        "vt": vt,
        "cwe": lambda: cwe_utils.sys_word_pair_random(num_samples=n, max_seq_length=length, tokenizer=tok),
        "fwe": lambda: fwe_utils.sys_kwext(tokenizer=tok, max_seq_length=length, num_samples=n),
    }[task]
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its progress prints
        rows = make()
    dt = time.perf_counter() - t
    return len(rows) / dt, statistics.mean(r["length"] / length for r in rows)  # its length counts its answer budget


RULER_TASKS = {"vt": "variable_tracking", "cwe": "common_words", "fwe": "frequent_words"}


def ours(tokenizer_dir: str, length: int, n: int, task: str = "needle", variant: str = "single") -> tuple[float, float]:
    tok = load_tokenizer(tokenizer_dir)
    suite = parse_suite({"lengths": [length], "samples": n, "tasks": [{"task": task, "variant": variant}]})
    # Warm the per-tokenizer caches (haystack pool, piece counts) as any run's first sample does.
    list(iter_samples(parse_suite({"lengths": [length], "samples": 1, "tasks": [task]}), tok, Options()))
    t = time.perf_counter()
    rows = list(iter_samples(suite, tok, Options()))
    dt = time.perf_counter() - t
    fill = statistics.mean((r.prompt_tokens + r.answer_budget) / length for r in rows)
    return len(rows) / dt, fill


def cold_start(tokenizer_dir: str, length: int, n: int, repeats: int = 3) -> float:
    """Seconds of a whole `metabench generate` process (best of `repeats`)."""
    best = float("inf")
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "metabench", "generate", "--tokenizer", tokenizer_dir, "--tasks", "needle:single",
               "--samples", str(n), "--lengths", str(length), "--quiet", "--out", str(Path(d) / "x.jsonl")]
        for _ in range(repeats):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=os.environ)
            best = min(best, time.perf_counter() - t)
    return best


def print_cold_start(tokenizer_dir: str, n: int, length: int = 16384) -> None:
    ours_s = cold_start(tokenizer_dir, length, n)
    r_rate, _ = ruler(tokenizer_dir, length, n)
    ruler_s = n / r_rate
    print(f"cold start, {n} needles at {length}: `metabench generate` process {ours_s:.2f} s, RULER's generator "
          f"in-process {ruler_s:.2f} s: {ruler_s / ours_s:.1f}x")


def peak_memory(tokenizer_dir: str, n: int) -> float:
    tok = load_tokenizer(tokenizer_dir)
    list(iter_samples(parse_suite({"lengths": [16384], "samples": 1, "tasks": ["needle"]}), tok, Options()))
    suite = parse_suite({"lengths": [16384], "samples": n, "tasks": ["needle"]})
    with tempfile.TemporaryDirectory() as d:
        tracemalloc.start()
        generate_to_file(suite, tok, Options(), Path(d) / "x.jsonl")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", default=BUNDLED)
    p.add_argument("--samples", type=int, default=500, help="samples per length (lm-eval's RULER uses 500)")
    p.add_argument("--lengths", default="4096,16384,32768")
    p.add_argument("--only", choices=["cold"], help="run one measurement only")
    p.add_argument("--tasks", default="needle,vt,cwe,fwe",
                   help="which comparisons to run, of needle (with the cold start), vt, cwe, fwe")
    p.add_argument("--no-memory", action="store_true", help="skip the memory check")
    args = p.parse_args()
    tasks = args.tasks.split(",")
    logging.disable(logging.WARNING)
    print(f"tokenizer: {args.tokenizer}; {args.samples} samples per length\n")
    if args.only == "cold":
        print_cold_start(args.tokenizer, args.samples)
        return
    header = f"{'length':>7} {'RULER/s':>9} {'metabench/s':>12} {'ratio':>7} {'RULER fill':>11} {'metabench fill':>15}"
    if "needle" in tasks:
        print(f"RULER niah_single_1 vs metabench needle:single\n{header}")
    for length in map(int, args.lengths.split(",")) if "needle" in tasks else ():
        r_rate, r_fill = ruler(args.tokenizer, length, args.samples)
        m_rate, m_fill = ours(args.tokenizer, length, args.samples)
        print(f"{length:>7} {r_rate:>9.1f} {m_rate:>12.1f} {m_rate / r_rate:>6.1f}x {r_fill:>10.1%} {m_fill:>14.1%}")
    for name, family in ((n, f) for n, f in RULER_TASKS.items() if n in tasks):
        print(f"\nRULER {name} vs metabench {family}\n{header}")
        for length in map(int, args.lengths.split(",")):
            r_rate, r_fill = ruler_aggregate(name, args.tokenizer, length, args.samples)
            m_rate, m_fill = ours(args.tokenizer, length, args.samples, family, "default")
            print(f"{length:>7} {r_rate:>9.1f} {m_rate:>12.1f} {m_rate / r_rate:>6.1f}x {r_fill:>10.1%} {m_fill:>14.1%}")
    if "needle" in tasks:
        print()
        print_cold_start(args.tokenizer, args.samples)
    if args.no_memory:
        return
    small, large = 100, 1000
    a, b = peak_memory(args.tokenizer, small), peak_memory(args.tokenizer, large)
    print(f"\npeak Python memory writing 16k-token samples to disk: {small} samples {a:.1f} MiB, "
          f"{large} samples {b:.1f} MiB ({b / a:.2f}x for {large // small}x the samples)")


if __name__ == "__main__":
    main()
