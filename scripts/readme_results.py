"""Write README's Results table from the leaderboard files the runs wrote (never typed by hand).

    python3 scripts/readme_results.py          # rewrite the block in README.md
    python3 scripts/readme_results.py --check  # exit 1 if README's block is stale

The block sits between `<!-- results:start -->` and `<!-- results:end -->` and
is built from leaderboards/reference-tiny/runs/*.summary.json (written by
scripts/leaderboards.sh) and the tiny model's analysis in
leaderboards/reproduce-tiny-cpu/analysis-meta.json. The bundled models are the models of the run published
in leaderboards/reproduce-tiny-cpu, so that run's numbers are the same and get no
columns of their own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "leaderboards" / "reference-tiny" / "runs"
ANALYSIS = ROOT / "leaderboards" / "reproduce-tiny-cpu" / "analysis-meta.json"  # `metabench analyze` of the tiny model
START, END = "<!-- results:start -->", "<!-- results:end -->"
COLUMNS = [("tiny", "1x"), ("tiny-nometa", "1x"), ("tiny-yarn2x", "2x"), ("tiny-nometa-yarn2x", "2x"), ("tiny", "2x")]


def table() -> str:
    runs = {p.name.removesuffix(".summary.json"): json.loads(p.read_text()) for p in sorted(RUNS.glob("*.summary.json"))}
    cells: dict[tuple[str, str, str], dict] = {}
    entries: list[str] = []
    for name, s in runs.items():
        for c in s["cells"]:
            if c["depth"] is None:
                cells[(name, c["entry"], c["length_label"])] = c
                if c["entry"] not in entries:
                    entries.append(c["entry"])
    head = "| task | chance | " + " | ".join(f"{m} {l}" for m, l in COLUMNS) + " |"
    lines = [head, "|" + " --- |" * (len(COLUMNS) + 2)]
    for e in entries:
        row = [e]
        chance = next((c["chance"] for (m, en, _), c in cells.items() if en == e), 0.0)
        row.append(f"{100 * chance:.0f}")
        for m, l in COLUMNS:
            c = cells.get((m, e, l))
            if c is None:
                row.append("-")
                continue
            mean = c["metrics"][c["primary"]]
            row.append(f"{100 * mean['mean']:.0f} ({100 * mean['ci_low']:.0f}-{100 * mean['ci_high']:.0f})")
        lines.append("| " + " | ".join(row) + " |")
    n = next(iter(runs.values()))["cells"][0]["n"] if runs else 0
    note = (f"Primary metric in percent with its 95% interval, {n} samples per cell; the window is 256 tokens, "
            "so `tiny 2x` runs past it and `*-yarn2x` runs inside the YaRN-extended window. The models are "
            "those of `metabench reproduce --preset tiny` on 2 CPU cores (leaderboards/reproduce-tiny-cpu).")
    return "\n".join(lines) + "\n\n" + note + "\n\n" + entropy_line() + "\n"


def entropy_line() -> str:
    """The measured attention-entropy drop at meta-tokens, with its sign, beside the paper's."""
    a = json.loads(ANALYSIS.read_text())
    att, paper = a["attention"], a["paper"]["mean_entropy_drop"]
    drop = att["mean_entropy_drop"]
    way = "sharper (as in the paper)" if drop > 0 else "flatter (the paper finds it sharper)"
    return (f"Attention entropy at meta-tokens, `tiny` (`{ANALYSIS.relative_to(ROOT)}`): mean drop {drop:+.2f} nats "
            f"(meta rows {att['mean_entropy_meta']:.2f}, other rows {att['mean_entropy_other']:.2f}; drop = other - meta), "
            f"so attention at meta-tokens is {way}; the paper reports {paper:+.2f}.")


def main() -> int:
    readme = (ROOT / "README.md").read_text()
    if START not in readme or END not in readme:
        print("README.md has no results block", file=sys.stderr)
        return 1
    before, rest = readme.split(START, 1)
    _, after = rest.split(END, 1)
    new = before + START + "\n" + table() + END + after
    if "--check" in sys.argv:
        if new != readme:
            print("README.md's results block is stale: run python3 scripts/readme_results.py", file=sys.stderr)
            return 1
        return 0
    (ROOT / "README.md").write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
