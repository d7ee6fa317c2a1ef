"""Print the smallest drop `metabench check` flags, by samples per cell and baseline score.

    python3 scripts/detectable_drop.py

A drop fails the check when it is beyond the tolerance (default 2 points) and
significant at alpha (default 0.05, one-sided), by the same test `check` runs
(regress.drop_p_value: a two-proportion z-test for 0/1 scores). The table says
what a gate can see with 20 or 100 samples per cell.
"""

from __future__ import annotations

from metabench.regress import CellStats, drop_p_value

TOLERANCE, ALPHA = 2.0, 0.05


def cell(n: int, successes: int) -> CellStats:
    mean = successes / n
    sd = (mean * (1 - mean) * n / (n - 1)) ** 0.5
    return CellStats("task", "1x", 1024, None, "exact_match", n, mean, sd, True, successes)


def smallest_drop(n: int, score: float) -> float | None:
    """The smallest drop in points (from `score` percent) that is beyond the tolerance and significant."""
    base = cell(n, round(score / 100 * n))
    for k in range(base.successes - 1, -1, -1):
        drop = 100 * (base.successes - k) / n
        if drop > TOLERANCE and drop_p_value(base, cell(n, k))[0] < ALPHA:
            return drop
    return None


def main() -> None:
    print(f"smallest drop flagged (points), tolerance {TOLERANCE:g}, alpha {ALPHA:g} one-sided")
    print("baseline   n=20   n=100")
    for score in (90, 50, 20):
        row = [smallest_drop(n, score) for n in (20, 100)]
        print(f"{score:>7}%" + "".join(f"{'-' if d is None else f'{d:.0f}':>7}" for d in row))


if __name__ == "__main__":
    main()
