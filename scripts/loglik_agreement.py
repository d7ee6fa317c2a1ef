"""How often loglik's greedy_match agrees with generated exact_match, sample by sample, on the bundled models.

    python3 scripts/loglik_agreement.py [--samples 40] [--lengths 1x] [--keep DIR]

Runs the smoke suite's tasks on every model in reference_model/ twice
(`metabench run --scoring generate` and `--scoring loglik`, same samples)
and prints, per model and overall, the share of samples where both say the
same thing, and the two kinds of disagreement:
- generate only: the generated answer was scored correct although greedy
  decoding did not begin with the gold tokens (the extraction found the answer
  later in the output, or wrote it with other tokens);
- loglik only: greedy decoding began with the gold answer but the output was
  not scored correct (it went on past the answer, e.g. repeating it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rows(folder: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (folder / "results.jsonl").read_text().splitlines())}


def _run(model: Path, scoring: str, out: Path, args: argparse.Namespace) -> dict[str, dict]:
    cmd = [sys.executable, "-m", "metabench", "run", "--model", f"hf:{model}", "--suite", "smoke", "--lengths",
           args.lengths, "--samples", str(args.samples), "--scoring", scoring, "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return _rows(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--lengths", default="1x")
    p.add_argument("--keep", help="keep the results folders here")
    args = p.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="loglik-agreement-"))
    total = {"n": 0, "agree": 0, "generate_only": 0, "loglik_only": 0}
    print(f"{'model':<22}{'samples':>8}{'agree':>8}{'generate only':>15}{'loglik only':>13}")
    for model in sorted(p for p in (REPO / "reference_model").iterdir() if (p / "config.json").is_file()):
        gen = _run(model, "generate", root / model.name / "generate", args)
        ll = _run(model, "loglik", root / model.name / "loglik", args)
        em = {i: r["scores"]["exact_match"] == 1.0 for i, r in gen.items()}
        gm = {i: r["scores"]["greedy_match"] == 1.0 for i, r in ll.items()}
        assert em.keys() == gm.keys()
        counts = {"n": len(em), "agree": sum(em[i] == gm[i] for i in em),
                  "generate_only": sum(em[i] and not gm[i] for i in em),
                  "loglik_only": sum(gm[i] and not em[i] for i in em)}
        for k in total:
            total[k] += counts[k]
        print(f"{model.name:<22}{counts['n']:>8}{100 * counts['agree'] / counts['n']:>7.1f}%"
              f"{counts['generate_only']:>15}{counts['loglik_only']:>13}")
    print(f"{'all':<22}{total['n']:>8}{100 * total['agree'] / total['n']:>7.1f}%"
          f"{total['generate_only']:>15}{total['loglik_only']:>13}")


if __name__ == "__main__":
    main()
