"""Print the smallest drop `metabench check` flags, by samples per cell and baseline score.

    python3 scripts/detectable_drop.py [--markdown]

A drop fails the check when it is beyond the tolerance (default 2 points) and
significant at alpha (default 0.05, one-sided), by the tests `check` runs
(metabench.stats): McNemar's exact test when baseline and results scored the
same samples (the usual case: same suite and seed), the two-proportion z-test
when they did not. The paired column is its best case: every changed sample
was lost, none gained. The table says what a gate can see with 20 or 100
samples per cell.
"""

from __future__ import annotations

from collections.abc import Callable

from metabench.stats import Side, paired_drop_p, unpaired_drop_p

TOLERANCE, ALPHA = 2.0, 0.05
SAMPLES = (20, 100)
SCORES = (90, 50, 20)


def unpaired(n: int, right: int, lost: int) -> float:
    def side(k: int) -> Side:
        mean = k / n
        return Side(n, mean, (mean * (1 - mean) * n / (n - 1)) ** 0.5, True)

    return unpaired_drop_p(side(right), side(right - lost))[0]


def paired(n: int, right: int, lost: int) -> float:
    base = [1.0] * right + [0.0] * (n - right)
    cur = [0.0] * lost + base[lost:]
    return paired_drop_p(base, cur)[0]


def smallest_drop(test: Callable[[int, int, int], float], n: int, score: float) -> float | None:
    """The smallest drop in points (from `score` percent) that is beyond the tolerance and significant."""
    right = round(score / 100 * n)
    for lost in range(1, right + 1):
        drop = 100 * lost / n
        if drop > TOLERANCE and test(n, right, lost) < ALPHA:
            return drop
    return None


def table() -> list[list[float | None]]:
    """One row per baseline score: paired then unpaired, each at every sample count."""
    return [[smallest_drop(test, n, score) for test in (paired, unpaired) for n in SAMPLES] for score in SCORES]


def markdown() -> str:
    """The table as README shows it (between its detectable:start and :end marks)."""
    heads = [f"{name}, {n} per cell" for name in ("paired", "unpaired") for n in SAMPLES]
    lines = ["| baseline score | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(heads)]
    for score, row in zip(SCORES, table()):
        lines.append(f"| {score}% | " + " | ".join("none" if d is None else f"{d:.0f} points" for d in row) + " |")
    return "\n".join(lines)


def main() -> None:
    import sys

    if "--markdown" in sys.argv[1:]:
        print(markdown())
        return
    print(f"smallest drop flagged (points), tolerance {TOLERANCE:g}, alpha {ALPHA:g} one-sided")
    print("baseline " + "".join(f"{f'{name} n={n}':>15}" for name in ("paired", "unpaired") for n in SAMPLES))
    for score, row in zip(SCORES, table()):
        print(f"{score:>7}% " + "".join(f"{'-' if d is None else f'{d:.0f}':>15}" for d in row))


if __name__ == "__main__":
    main()
