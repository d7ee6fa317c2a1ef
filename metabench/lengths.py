"""Token budgets: parse "2x" / "4k" / "4096", and fit a prompt to a budget exactly.

Budget convention: a sample of target length L satisfies

    prompt tokens (specials and chat template included) + answer budget <= L

and fills it: the slack left is smaller than the next filler unit (one
sentence), which is at least 97% of L for L >= 1000.

How fitting avoids re-tokenizing: the prompt is fixed text (instruction,
content blocks, question) interleaved with runs of filler units whose token
counts are known from the haystack pool. Fixed pieces are counted in a small
window with their neighbouring units, so boundary merges are included, and
the total is a sum. That sum equals a full tokenization whenever the
tokenizer splits at unit boundaries; the haystack checks this once per
tokenizer over its whole pool (`Haystack.additive`). For tokenizers that fail
the check, for filler that is not pooled (key-value pairs), and under
`verify=True`, every candidate prompt is tokenized in full instead. Either
way the result is exact, never an estimate.
"""

from __future__ import annotations

import bisect
import itertools
import random
import re
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from metabench.errors import MetabenchError
from metabench.haystack import Haystack, UnitStream
from metabench.tasks.base import Layout
from metabench.tokenizer import Tokenizer


# ----------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Length:
    label: str  # as the user wrote it, normalised: "0.5x", "4096"
    tokens: int


_MULT = re.compile(r"^(\d+(?:\.\d+)?)x$")
_ABS = re.compile(r"^(\d+(?:\.\d+)?)([kKmM]?)$")


# A sample is built whole in memory (text, token counts, offsets: ~100 bytes a token), so
# 16M tokens is a few GB; past that a machine runs out of memory long before an error.
MAX_TOKENS = 1 << 24


def parse_length(text: str, context: int | None) -> Length:
    """'2x' (a multiple of `context`), '4k' (x1024), '4096' -> Length."""
    s = str(text).strip().lower()
    if m := _MULT.match(s):
        mult = float(m.group(1))
        if context is None:
            raise MetabenchError(f"length {text!r} is a multiple of the context: pass --context N (tokens)")
        if context <= 0:
            raise MetabenchError(f"context must be a positive number of tokens, got {context}")
        tokens = round(mult * context)
        label = f"{mult:g}x"
    elif m := _ABS.match(s):
        value = float(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2)]
        if value != int(value):
            raise MetabenchError(f"length {text!r} is not a whole number of tokens")
        tokens = int(value)
        label = str(tokens)
    else:
        raise MetabenchError(f"cannot read length {text!r}: use tokens (4096, 4k) or context multiples (0.5x, 2x)")
    if tokens <= 0:
        raise MetabenchError(f"length {text!r} must be a positive number of tokens")
    if tokens > MAX_TOKENS:
        raise MetabenchError(f"length {text!r} is {tokens} tokens; at most {MAX_TOKENS} (16M) can be generated in memory")
    return Length(label, tokens)


def parse_lengths(spec: str | Sequence[str | int | float], context: int | None) -> list[Length]:
    """A comma-separated string or a list of lengths; duplicates are an error."""
    items = [p for p in spec.split(",")] if isinstance(spec, str) else [str(p) for p in spec]
    items = [p.strip() for p in items if p.strip()]
    if not items:
        raise MetabenchError("no lengths given: pass e.g. --lengths 0.5x,1x,2x or --lengths 1024,4096")
    out = [parse_length(p, context) for p in items]
    seen: dict[int, str] = {}
    for length in out:
        if length.tokens in seen:
            raise MetabenchError(f"lengths {seen[length.tokens]} and {length.label} are both {length.tokens} tokens")
        seen[length.tokens] = length.label
    return out


# ----------------------------------------------------------------------------- filler sources


class Source(Protocol):
    """A sample's filler units in order: `texts[i]`, `counts[i]` exist for i < n after `ensure(n)`."""

    additive: bool
    texts: list[str]
    counts: list[int]

    def ensure(self, n: int) -> None: ...

    def swap(self, i: int, j: int) -> None: ...


class PoolSource:
    """Units drawn from a pre-counted haystack pool (cheap: counts are lookups)."""

    def __init__(self, haystack: Haystack, rng: random.Random):
        self.h = haystack
        self.stream = UnitStream(haystack, rng)
        self.additive = haystack.additive
        self.texts: list[str] = []
        self.counts: list[int] = []

    def ensure(self, n: int) -> None:
        if len(self.texts) < n:
            idx = self.stream.take(n)[len(self.texts) :]
            units, counts = self.h.units, self.h.counts
            self.texts += [units[i] for i in idx]
            self.counts += [counts[i] for i in idx]

    def swap(self, i: int, j: int) -> None:
        self.ensure(max(i, j) + 1)
        for xs in (self.texts, self.counts):
            xs[i], xs[j] = xs[j], xs[i]


class FreshSource:
    """Units made on demand by `make(rng, k)` and counted in chunks (e.g. key-value pairs).

    Units are drawn one after another from the sample's RNG, so the chunk size
    changes only how many are made ahead, never which units a sample gets."""

    CHUNK = 32

    def __init__(self, make: Callable[[random.Random, int], list[str]], rng: random.Random, tokenizer: Tokenizer):
        self.make, self.rng, self.tok = make, rng, tokenizer
        self.texts: list[str] = []
        self.counts: list[int] = []
        self.additive = False  # no pool to check once: verify every prompt in full

    def ensure(self, n: int) -> None:
        while len(self.texts) < n:
            chunk = self.make(self.rng, self.CHUNK)
            self.texts.extend(chunk)
            self.counts.extend(self.tok.count_batch(chunk))

    def swap(self, i: int, j: int) -> None:
        self.ensure(max(i, j) + 1)
        for xs in (self.texts, self.counts):
            xs[i], xs[j] = xs[j], xs[i]


# ----------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class Fitted:
    prompt: str
    prompt_tokens: int
    filler_units: int
    filler_tokens: int
    block_offsets: tuple[int, ...]  # character offset of each block in the prompt (layout order)
    block_depths: tuple[float, ...]  # actual depth of each block: filler tokens before it / all filler tokens


@dataclass(frozen=True)
class Frame:
    """The text around the task's own prompt: a chat template's, and where the answer prefix goes."""

    before: str = ""
    after: str = ""  # between the question and the answer prefix


class _Plan:
    """Where each block goes among n units: block b sits before unit slot[b] (slot n = after the last)."""

    def __init__(self, layout: Layout, frame: Frame, n: int):
        self.n = n
        self.slot = [round(b.depth * n) for b in layout.blocks]
        self.head = frame.before + layout.instruction
        self.tail = layout.question + frame.after + layout.answer_prefix
        self.at: dict[int, list[int]] = {}
        for b, k in enumerate(self.slot):
            self.at.setdefault(k, []).append(b)
        self.texts = [b.text for b in layout.blocks]

    def fixed(self, k: int) -> str:
        return "".join(self.texts[b] for b in self.at.get(k, ()))

    def groups(self) -> list[tuple[int | None, str, int | None]]:
        """Fixed text between units: (index of the unit on its left, text, index of the unit on its right)."""
        n = self.n
        if n == 0:
            return [(None, self.head + self.fixed(0) + self.tail, None)]
        out: list[tuple[int | None, str, int | None]] = [(None, self.head + self.fixed(0), 0)]
        out += [(k - 1, self.fixed(k), k) for k in sorted(self.at) if 0 < k < n]
        out.append((n - 1, self.fixed(n) + self.tail, None))
        return out

    def render(self, texts: list[str]) -> tuple[str, list[int]]:
        parts = [self.head]
        pos = len(self.head)
        offsets = [0] * len(self.texts)
        prev = 0
        for k in sorted(set(self.at) | {self.n}):
            run = "".join(texts[prev:k])
            parts.append(run)
            pos += len(run)
            for b in self.at.get(k, ()):
                offsets[b] = pos
                parts.append(self.texts[b])
                pos += len(self.texts[b])
            prev = k
        parts.append(self.tail)
        return "".join(parts), offsets


def _count_local(tok: Tokenizer, plan: _Plan, source: Source, specials: bool) -> int:
    """Exact count for additive tokenizers: each fixed group is counted in a window
    with its neighbouring units (so merges across the boundary are included),
    minus those units' own counts, plus every unit's known count."""
    groups = plan.groups()
    t = source.texts
    windows = [(t[l] if l is not None else "") + f + (t[r] if r is not None else "") for l, f, r in groups]
    sides = sum(source.counts[i] for l, _, r in groups for i in (l, r) if i is not None)
    fixed = sum(tok.count_batch(windows)) - sides
    return fixed + sum(source.counts[: plan.n]) + (tok.special_overhead() if specials else 0)


def fit(
    layout: Layout,
    tok: Tokenizer,
    source: Source,
    budget: int,
    frame: Frame = Frame(),
    verify: bool = False,
    specials: bool = True,
    label: str = "",
) -> Fitted:
    """Fill `layout` with filler units until its prompt is as close to `budget` tokens as units allow.

    `budget` is the target length minus the answer budget; `specials` says
    whether the backend adds special tokens (False when a chat template's
    rendered text already carries them). Raises TooShort when even the prompt
    without filler does not fit.
    """
    full = verify or not source.additive

    def measure(n: int) -> tuple[int, _Plan]:
        source.ensure(n)
        plan = _Plan(layout, frame, n)
        if full:
            return tok.count(plan.render(source.texts)[0], specials=specials), plan
        return _count_local(tok, plan, source, specials), plan

    empty_total = measure(0)[0]
    if empty_total > budget:
        raise TooShort(empty_total - budget)

    # First guess from counts in isolation, then correct with exact measurements.
    n = _units_within(source, budget - empty_total)
    # Grow while units fit; once a measurement overshoots (boundary merges can
    # make a unit cost more in place than alone), shrink and stop. Growth only
    # happens before the first overshoot and shrinking strictly lowers n, so
    # the loop ends, at most one unit short of a perfect fill.
    overshot = False
    for _ in range(256):
        total, plan = measure(n)
        if total > budget:
            overshot = True
            over, removed = total - budget, 0
            while removed < over and n > 0:
                n -= 1
                removed += source.counts[n]
            continue
        gap = budget - total
        source.ensure(n + LOOKAHEAD)
        fits = next((j for j in range(n, n + LOOKAHEAD) if source.counts[j] <= gap), None)
        if not overshot and fits is not None:
            # The next unit may not fit but a later one does: bring it forward
            # (deterministically), then keep adding units while they fit.
            source.swap(n, fits)
            while source.counts[n] <= gap:
                gap -= source.counts[n]
                n += 1
                source.ensure(n + 1)
            continue
        prompt, offsets = plan.render(source.texts)
        filler = sum(source.counts[:n])
        cum = [0, *itertools.accumulate(source.counts[:n])]
        depths = tuple(cum[k] / filler if filler else layout.blocks[b].depth for b, k in enumerate(plan.slot))
        return Fitted(prompt, total, n, filler, tuple(offsets), depths)
    raise RuntimeError(f"fitting {label} to {budget} tokens did not converge; please report this with the tokenizer")


LOOKAHEAD = 64  # units searched past the next one for one that fills the last gap


class TooShort(Exception):
    """The prompt without any filler is `over` tokens above the budget."""

    def __init__(self, over: int):
        super().__init__(over)
        self.over = over


def _units_within(source: Source, need: int) -> int:
    """How many units, taken in order, fit in `need` tokens (by their counts alone)."""
    k = 64
    while True:
        source.ensure(k)
        cum = list(itertools.accumulate(source.counts[:k]))
        i = bisect.bisect_right(cum, need)
        if i < k:
            return i
        k *= 2
