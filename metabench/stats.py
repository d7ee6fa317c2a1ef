"""One-sided tests for "the candidate scores lower than the baseline", from scipy.stats.

`check` uses these and only these (and scripts/detectable_drop.py, to say
what a gate can see), so a regression means one thing everywhere.

Paired (both sides scored the same samples, matched by id):
- McNemar's exact test for 0/1 scores: only the discordant samples carry
  information; under no change a sample lost is as likely as one gained, so
  the losses among the b + c discordant samples are Binomial(b + c, 1/2).
- the paired t-test for graded scores (fractions of answers, token accuracy).

Unpaired (different samples, or a baseline without per-sample scores):
- the two-proportion z-test with pooled variance for 0/1 scores;
- Welch's t-test from means and sample sds for graded ones.

Pairing removes the between-sample variance, which dominates on long-context
tasks (some samples are hard for every checkpoint): a drop the unpaired test
needs dozens of samples to see, the paired test sees in a few
(benchmarks/check_sensitivity.py measures it on the bundled model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

Test = Literal["mcnemar", "paired_t", "z", "welch", "z_stderr"]
TEST_NAMES: dict[str, str] = {"mcnemar": "McNemar exact", "paired_t": "paired t", "z": "z", "welch": "Welch t",
                              "z_stderr": "z (stderr)"}


@dataclass(frozen=True)
class Side:
    """One side's primary-metric summary: enough for the unpaired tests."""

    n: int
    mean: float
    sd: float  # sample sd (n - 1), 0 for n = 1
    binary: bool  # every score was 0 or 1


def is_binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def side(values: Sequence[float]) -> Side:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1)) if n > 1 else 0.0
    return Side(n, mean, sd, is_binary(values))


def paired_drop_p(base: Sequence[float], cur: Sequence[float]) -> tuple[float, Test]:
    """One-sided p-value that `cur` is lower than `base`, the two matched sample by sample."""
    from scipy import stats

    if len(base) != len(cur) or not base:
        raise ValueError("a paired test needs two equally long, non-empty lists of scores")
    if is_binary(base) and is_binary(cur):
        lost = sum(1 for b, c in zip(base, cur) if b > c)
        gained = sum(1 for b, c in zip(base, cur) if c > b)
        if lost + gained == 0:  # no sample changed
            return 1.0, "mcnemar"
        return float(stats.binomtest(lost, lost + gained, 0.5, alternative="greater").pvalue), "mcnemar"
    diffs = [b - c for b, c in zip(base, cur)]
    if max(diffs) == min(diffs):  # every sample moved by the same amount: no spread, the drop is exact
        return (0.0 if diffs[0] > 0 else 1.0), "paired_t"
    return float(stats.ttest_rel(base, cur, alternative="greater").pvalue), "paired_t"


def unpaired_drop_p(base: Side, cur: Side) -> tuple[float, Test]:
    """One-sided p-value that `cur`'s mean is lower than `base`'s, from summaries of different samples.

    Graded scores need two samples a side unless neither side has any spread
    (`regress.compare` judges a one-sample graded cell by the tolerance alone).
    """
    from scipy import stats

    if base.binary and cur.binary:
        pooled = (base.mean * base.n + cur.mean * cur.n) / (base.n + cur.n)
        se = math.sqrt(pooled * (1 - pooled) * (1 / base.n + 1 / cur.n))
        if se == 0:  # both 0% or both 100%: identical
            return 1.0, "z"
        return float(stats.norm.sf((base.mean - cur.mean) / se)), "z"
    if base.sd == 0 and cur.sd == 0:  # no spread on either side: the means are exact
        return (0.0 if base.mean > cur.mean else 1.0), "welch"
    res = stats.ttest_ind_from_stats(base.mean, base.sd, base.n, cur.mean, cur.sd, cur.n,
                                     equal_var=False, alternative="greater")
    return float(res.pvalue), "welch"


def holm(p: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (scipy.stats has no Holm step-down)."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


def stderr_drop_p(base: float, base_se: float, cur: float, cur_se: float) -> tuple[float, Test]:
    """One-sided p-value that `cur` is lower than `base`, from two values and their standard errors (normal)."""
    from scipy import stats

    se = math.sqrt(base_se ** 2 + cur_se ** 2)
    if se == 0:
        return (0.0 if base > cur else 1.0), "z_stderr"
    return float(stats.norm.sf((base - cur) / se)), "z_stderr"
