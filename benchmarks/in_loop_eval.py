"""In-loop evaluation cost: loglik vs generate scoring, and metabench.evaluate vs the `metabench run` CLI.

On the bundled tiny model that README's first command uses (reference_model/tiny-yarn2x, 1x = 256 tokens with
its meta-token marker), the smoke suite at 1x:

(a) `metabench.evaluate` with scoring="loglik" against scoring="generate", on the same model in memory, whole
    calls and the time inside the backend alone (summary provenance generate_seconds_this_session);
(b) `metabench.evaluate` (model already in memory) against `python3 -m metabench run` as a subprocess
    (process start, imports and model load included), both scoring generate.

Runs alternate (generate, loglik, CLI, ...) so drift on a busy machine falls on all of them; medians are
compared. Each run writes a fresh results folder, so nothing is resumed.

    python3 benchmarks/in_loop_eval.py [--repeats 3] [--model reference_model/tiny-yarn2x] [--threads N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "reference_model" / "tiny-yarn2x"))
    p.add_argument("--context", type=int, default=256, help="1x in tokens (README's first command: 256)")
    p.add_argument("--marker", default="<|meta|>")
    p.add_argument("--suite", default="smoke")
    p.add_argument("--lengths", default="1x")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch threads here and in the CLI (default: torch's)")
    args = p.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import metabench
    from metabench.model import register

    if args.threads:
        torch.set_num_threads(args.threads)
    register()
    model = AutoModelForCausalLM.from_pretrained(args.model)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    common = dict(suite=args.suite, lengths=args.lengths, context=args.context, marker=args.marker)
    tmp = Path(tempfile.mkdtemp(prefix="in-loop-eval-"))
    cli = [sys.executable, "-m", "metabench", "run", "--quiet", "--model", f"hf:{args.model}", "--suite", args.suite,
           "--lengths", args.lengths, "--context", str(args.context), "--marker", args.marker]
    env = None
    if args.threads:
        import os

        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}

    backend: dict[str, list[float]] = {"generate": [], "loglik": []}  # seconds inside the backend's calls

    def api(scoring: str, k: int) -> float:
        t = time.perf_counter()
        result = metabench.evaluate(model, tokenizer, scoring=scoring, out=tmp / f"{scoring}-{k}", **common)
        if k >= 0:
            backend[scoring].append(result.summary["provenance"]["generate_seconds_this_session"])
        return time.perf_counter() - t

    def command(k: int) -> float:
        t = time.perf_counter()
        subprocess.run([*cli, "--out", str(tmp / f"cli-{k}")], check=True, capture_output=True, env=env)
        return time.perf_counter() - t

    api("generate", -1)  # warm-up (first forward passes, tokenizer caches), outside every timing
    times: dict[str, list[float]] = {"generate": [], "loglik": [], "cli": []}
    for k in range(args.repeats):
        times["generate"].append(api("generate", k))
        times["loglik"].append(api("loglik", k))
        times["cli"].append(command(k))
    med = {name: statistics.median(xs) for name, xs in times.items()}
    n = len((tmp / "generate-0" / "results.jsonl").read_text().splitlines())
    shutil.rmtree(tmp)

    print(f"{Path(args.model).name}, suite {args.suite} at {args.lengths} of {args.context} tokens: {n} samples, "
          f"median of {args.repeats}, torch threads {torch.get_num_threads()}")
    for name, label in (("generate", "evaluate(), scoring generate"), ("loglik", "evaluate(), scoring loglik"),
                        ("cli", "metabench run (subprocess), generate")):
        print(f"  {label:<40} {med[name]:7.2f} s   ({', '.join(f'{x:.2f}' for x in times[name])})")
    inside = {name: statistics.median(xs) for name, xs in backend.items()}
    print(f"  in the backend alone: generate {inside['generate']:.2f} s, loglik {inside['loglik']:.2f} s")
    print(f"(a) loglik / generate wall time:      {med['loglik'] / med['generate']:.2f}x "
          f"(in the backend alone {inside['loglik'] / inside['generate']:.2f}x)")
    print(f"(b) CLI / evaluate() wall time:        {med['cli'] / med['generate']:.2f}x")


if __name__ == "__main__":
    main()
