"""Evaluate the bundled reference models and print reference_model/MODEL_CARD.md's Scores table.

    python3 scripts/model_card_scores.py             # runs what is missing, prints the table
    python3 scripts/model_card_scores.py --runs DIR  # where the runs go (default runs/model-card)

Six `metabench run`s on the default suite, 20 samples per cell, meta-tokens in
place: tiny and tiny-nometa at 0.5x and 1x of their 256-token window, and their
YaRN-2x extensions at 2x (512 tokens, --context 256). At 0.5x (128 tokens) only
the tasks whose prompts fit are run. Runs resume, so a second call only prints.
Each cell is the task's primary metric in percent; copy also shows its token
accuracy. The table is printed, never typed by hand.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FITS_HALF = "list_recall:default,copy:default,needle:single,segment_count:default,parity:default"  # 128 tokens
COLUMNS = [  # (heading, model folder, length, extra arguments)
    ("meta 0.5x", "tiny", "0.5x", ["--tasks", FITS_HALF]),
    ("meta 1x", "tiny", "1x", []),
    ("meta 2x (yarn)", "tiny-yarn2x", "2x", ["--context", "256"]),
    ("no-meta 0.5x", "tiny-nometa", "0.5x", ["--tasks", FITS_HALF]),
    ("no-meta 1x", "tiny-nometa", "1x", []),
    ("no-meta 2x (yarn)", "tiny-nometa-yarn2x", "2x", ["--context", "256"]),
]


def run(model: str, length: str, extra: list[str], out: Path) -> dict:
    if not (out / "summary.json").is_file():
        cmd = ["metabench", "run", "--model", f"hf:reference_model/{model}", "--suite", "default", "--lengths", length,
               "--samples", "20", "--marker", "<|meta|>", "--quiet", "--out", str(out), *extra]
        print(" ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads((out / "summary.json").read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default=str(ROOT / "runs" / "model-card"))
    runs = Path(p.parse_args().runs)
    cells: dict[tuple[str, str], dict] = {}
    entries: list[str] = []
    for heading, model, length, extra in COLUMNS:
        summary = run(model, length, extra, runs / f"{model}-{length}")
        for c in summary["cells"]:
            if c["depth"] is None:
                cells[(heading, c["entry"])] = c
                entries += [c["entry"]] if c["entry"] not in entries else []
    print("| task | chance | " + " | ".join(h for h, *_ in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for entry in entries:
        chance = next(c["chance"] for (_, e), c in cells.items() if e == entry)
        row = [entry, f"{100 * chance:.1f}"]
        for heading, *_ in COLUMNS:
            c = cells.get((heading, entry))
            if c is None:
                row.append("n/a")
                continue
            text = f"{100 * c['metrics'][c['primary']]['mean']:.0f}"
            if "token_accuracy" in c["metrics"]:
                text += f" (tok {100 * c['metrics']['token_accuracy']['mean']:.0f})"
            row.append(text)
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
