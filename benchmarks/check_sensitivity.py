"""Sensitivity of `metabench check`: the smallest drop the paired and the unpaired tests detect.

Runs the bundled tiny model on the smoke suite at 1x (`--samples` per task),
makes the baseline from that run, then copies of the run with one task
degraded by a known amount: k of its right answers turned wrong (prediction
emptied, rescored with metabench.scoring; every other row unchanged). For each
k it runs the real `check` (tolerance 0, alpha 0.05) against the baseline with
per-sample scores (McNemar's exact test) and against the same baseline without
them (the two-proportion z-test), and prints the smallest k each detects.

    python3 benchmarks/check_sensitivity.py [--samples 100] [--out runs/check-sensitivity]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from metabench.reference_tokenizer import META_TOKEN
from metabench.regress import CheckOptions, check, write_baseline
from metabench.results import read_rows, read_summary, summarize_rows, write_json
from metabench.schema import dumps
from metabench.scoring import score

ROOT = Path(__file__).resolve().parents[1]


def base_run(out: Path, samples: int) -> Path:
    from metabench.cli import main

    code = main(["run", "--model", f"hf:{ROOT / 'reference_model' / 'tiny'}", "--suite", "smoke", "--lengths", "1x",
                 "--samples", str(samples), "--marker", META_TOKEN, "--quiet", "--out", str(out)])
    if code != 0:
        raise SystemExit(f"metabench run exited {code}")
    return out


def degraded(base: Path, out: Path, entry: str, k: int) -> Path:
    """A copy of `base` in which k right answers of `entry` are wrong."""
    rows = list(read_rows(base / "results.jsonl"))
    flipped = 0
    for r in rows:
        if flipped < k and r["entry"] == entry and r["scores"][r["primary"]] == 1.0:
            sample = {"metrics": list(r["scores"]), "target": r["target"], "answers": r["answers"]}
            r["prediction"] = ""
            r["scores"] = score(sample, "")
            flipped += 1
    if flipped < k:
        raise SystemExit(f"{entry} has only {flipped} right answers; cannot take away {k}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy(base / "config.json", out / "config.json")
    (out / "results.jsonl").write_text("".join(dumps(r) + "\n" for r in rows), encoding="utf-8")
    summary = read_summary(base)
    summary["cells"] = summarize_rows(rows)
    write_json(out / "summary.json", summary)
    return out


def unpaired(baseline: Path, out: Path) -> Path:
    data = json.loads(baseline.read_text())
    for c in data["cells"]:
        c["outcomes"] = None
    write_json(out, data)
    return out


def smallest_detected(base: Path, baselines: dict[str, Path], entry: str, right: int, work: Path) -> dict[str, int | None]:
    found: dict[str, int | None] = {name: None for name in baselines}
    opts = CheckOptions(tolerance=0.0, alpha=0.05)
    for k in range(1, right + 1):
        cand = degraded(base, work / "degraded", entry, k)
        for name, b in baselines.items():
            if found[name] is None and any(c.base.entry == entry for c in check(cand, b, opts).failures):
                found[name] = k
        if all(v is not None for v in found.values()):
            break
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100, help="samples per task at 1x (default 100)")
    p.add_argument("--out", default="runs/check-sensitivity", help="work folder (the base run resumes)")
    args = p.parse_args()
    work = Path(args.out)
    base = base_run(work / "base", args.samples)
    paired_b = write_baseline(base, work / "baseline.json")
    baselines = {"paired (McNemar exact)": paired_b, "unpaired (z-test)": unpaired(paired_b, work / "baseline-unpaired.json")}
    cells = [c for c in read_summary(base)["cells"] if c["depth"] is None]
    print(f"bundled tiny model, smoke suite at 1x, {args.samples} samples per task; check with tolerance 0, alpha 0.05")
    print(f"{'task':<24}{'score':>7}  " + "  ".join(f"{name:>24}" for name in baselines) + "   ratio")
    for c in cells:
        right = round(c["metrics"][c["primary"]]["mean"] * c["n"])
        if c["metrics"][c["primary"]]["mean"] * c["n"] != right or right == 0:
            continue  # graded or all-wrong cells: no right answers to take away one by one
        found = smallest_detected(base, baselines, c["entry"], right, work)
        n = c["n"]
        shown = [f"{'none' if k is None else f'{k} samples = {100 * k / n:.0f} pts':>24}" for k in found.values()]
        ks = list(found.values())
        ratio = f"{ks[1] / ks[0]:.1f}x" if None not in ks else "-"
        print(f"{c['entry']:<24}{100 * c['metrics'][c['primary']]['mean']:>6.0f}%  " + "  ".join(shown) + f"   {ratio}")


if __name__ == "__main__":
    main()
