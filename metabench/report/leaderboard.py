"""Leaderboard numbers: per-length scores, RULER's weighted averages, effective lengths.

All inputs and outputs are fractions in [0, 1]; the template shows percent.

Per-length score: the mean, over a run's entries, of the primary metric of
each (entry, length) cell pooled over depths. This is RULER's per-length
average over its tasks (Hsieh et al. 2024, "RULER", Table 3). The average
score is the unweighted mean of the per-length scores.

Weighted averages (RULER, Sec. 4): the run's L lengths are sorted ascending
and ranked 1..L; "inc" weighs length i by i, "dec" by L+1-i, both normalised
to sum to 1. Weights follow the rank, not the token count, so 4k..128k in
powers of two weigh 1..6, as in RULER.

Effective length (RULER's definition, made exact): the longest evaluated
length L such that the per-length score at L *and at every shorter evaluated
length* is >= the threshold (85.6%, Llama-2-7B's score at 4k). A dip below
the threshold ends it even if a longer length recovers. It is None when the
shortest length already fails; when every length passes, the true value may
be longer, so it is flagged `lower_bound`.

Categories: each entry's task variant names its category (RULER's retrieval,
multi-hop tracing and aggregation, and the paper's recall and copying and
counting); a category's score is the mean over its entries, as RULER's
per-category tables average their tasks. Families unknown to this version
of metabench count as "other".

Relative effective length: the same rule with the threshold set to a
fraction (85% by default) of the run's own score at its shortest length: how
far a model keeps its short-context quality, whatever that quality is. It is
None when that shortest-length score is 0 (every length would pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

from metabench.report.runs import Cell
from metabench.tasks.base import CATEGORIES

# Categories in the order pages list them; a family this version does not know is "other", last.
CATEGORY_ORDER: tuple[str, ...] = (*CATEGORIES, "other")


@dataclass(frozen=True)
class Point:
    """One length of one run: the mean over entries of the primary score."""

    length: int
    label: str
    score: float


@dataclass(frozen=True)
class Effective:
    length: int | None  # None: the shortest length already fails (or undefined)
    label: str | None
    threshold: float  # the fraction the scores had to reach
    lower_bound: bool  # every evaluated length passed: the true value may be longer

    @property
    def sort_key(self) -> int:
        return self.length if self.length is not None else -1


@dataclass(frozen=True)
class Standing:
    points: tuple[Point, ...]
    average: float
    weighted_inc: float
    weighted_dec: float
    effective: Effective
    relative: Effective | None
    task_scores: dict[str, float]  # entry -> mean over its lengths
    category_scores: dict[str, float]  # category -> mean of its entries' task scores, in CATEGORIES order


def category_of(task: str, variant: str = "") -> str:
    """The category of a task's variant (a Cell's `task` and `variant`; a variant this version does not
    know takes its family's first), or "other" for a family this version does not know."""
    from metabench.tasks import FAMILIES

    variants = FAMILIES.get(task)
    if not variants:
        return "other"
    return (variants.get(variant) or next(iter(variants.values()))).category


def by_category(entries: dict[str, tuple[str, str]], scores: dict[str, float]) -> dict[str, float]:
    """Mean score per category over entries (entry -> (family, variant)), in CATEGORY_ORDER."""
    groups: dict[str, list[float]] = {}
    for entry, score in scores.items():
        groups.setdefault(category_of(*entries[entry]), []).append(score)
    return {c: sum(groups[c]) / len(groups[c]) for c in sorted(groups, key=CATEGORY_ORDER.index)}


def length_points(cells: Iterable[Cell]) -> tuple[Point, ...]:
    """Per-length scores over the depth-pooled cells, ascending by length."""
    by_length: dict[int, list[Cell]] = {}
    for c in cells:
        if c.depth is None:
            by_length.setdefault(c.length, []).append(c)
    return tuple(
        Point(length, cs[0].label, sum(c.mean for c in cs) / len(cs))
        for length, cs in sorted(by_length.items())
    )


def rank_weights(n: int, mode: Literal["inc", "dec"]) -> list[float]:
    """RULER's weights over n lengths sorted ascending: proportional to rank (inc) or reverse rank (dec)."""
    if n <= 0:
        raise ValueError(f"rank_weights needs at least one length, got {n}")
    ranks = range(1, n + 1) if mode == "inc" else range(n, 0, -1)
    total = n * (n + 1) / 2
    return [r / total for r in ranks]


def weighted_average(scores: Sequence[float], mode: Literal["inc", "dec"]) -> float:
    """Scores ordered by ascending length, weighted by `rank_weights`."""
    return sum(w * s for w, s in zip(rank_weights(len(scores), mode), scores))


def effective_length(points: Sequence[Point], threshold: float) -> Effective:
    """Longest length whose score and every shorter length's score are >= threshold."""
    best: Point | None = None
    for p in sorted(points, key=lambda p: p.length):
        if p.score < threshold:
            break
        best = p
    return Effective(
        length=best.length if best else None,
        label=best.label if best else None,
        threshold=threshold,
        lower_bound=best is not None and best.length == max(p.length for p in points),
    )


def standing(cells: Sequence[Cell], threshold: float = 0.856, relative: float = 0.85) -> Standing:
    """Every leaderboard number of one run. `threshold` and `relative` are fractions."""
    points = length_points(cells)
    if not points:
        raise ValueError("standing: the run has no depth-pooled cells")
    scores = [p.score for p in points]
    base = points[0].score
    tasks: dict[str, list[float]] = {}
    for c in cells:
        if c.depth is None:
            tasks.setdefault(c.entry, []).append(c.mean)
    task_scores = {e: sum(v) / len(v) for e, v in tasks.items()}
    return Standing(
        points=points,
        average=sum(scores) / len(scores),
        weighted_inc=weighted_average(scores, "inc"),
        weighted_dec=weighted_average(scores, "dec"),
        effective=effective_length(points, threshold),
        relative=effective_length(points, relative * base) if base > 0 else None,
        task_scores=task_scores,
        category_scores=by_category({c.entry: (c.task, c.variant) for c in cells}, task_scores),
    )
