"""Leaderboard build speed and size: 20 models x 6 tasks x 6 lengths.

Writes 20 simulated results folders (metabench/simulate.py: rows scored
with metabench.scoring, summaries from metabench.results) with different
contexts and accuracy curves, then times `metabench report` on them, with
and without the sample browsers, in-process (best of --repeat) and as the
real CLI (one process, imports included). Targets: under 2 s and under
2 MB without samples.

    python3 benchmarks/report_speed.py [--models 20] [--samples 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from metabench.report import ReportOptions, build_report
from metabench.simulate import ENTRIES, decay, write_results

ROOT = Path(__file__).resolve().parents[1]

MULTIPLES = ("0.25x", "0.5x", "1x", "1.5x", "2x", "4x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--samples", type=int, default=50, help="samples per task and length")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folders = []
        t = time.perf_counter()
        for i in range(args.models):
            context = (4096, 8192, 16384, 32768)[i % 4]
            lengths = {m: int(float(m[:-1]) * context) for m in MULTIPLES}
            folders.append(write_results(
                Path(tmp) / f"model-{i:02d}", model=f"model-{i:02d}", context=context, samples=args.samples,
                lengths=lengths, accuracy=decay(context, top=0.99 - 0.01 * i, half=1.0 + 0.05 * i)))
        print(f"setup: {args.models} models x {len(ENTRIES)} tasks x {len(MULTIPLES)} lengths x "
              f"{args.samples} samples in {time.perf_counter() - t:.1f} s")
        for samples in (False, True):
            out = Path(tmp) / f"site-{samples}" / "index.html"
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                build_report(folders, out, ReportOptions(samples=samples))
                times.append(time.perf_counter() - t)
            cli = [sys.executable, "-m", "metabench", "report", *map(str, folders), "--out", str(out)]
            t = time.perf_counter()
            subprocess.run(cli + ([] if samples else ["--no-samples"]), check=True, cwd=ROOT, capture_output=True)
            wall = time.perf_counter() - t
            size = out.stat().st_size
            name = "with samples   " if samples else "without samples"
            print(f"{name}: build {min(times):.3f} s (best of {args.repeat}), CLI {wall:.2f} s wall, "
                  f"{size / 1e6:.2f} MB{'' if samples or (min(times) < 2 and size < 2e6) else '  <- over target'}")


if __name__ == "__main__":
    main()
