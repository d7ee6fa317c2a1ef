"""Fit grown content (a task's own word list or text, no filler) to a token budget exactly.

Aggregation tasks make their whole context: the prompt is

    frame.before + instruction + content(n) + question + frame.after + answer prefix

and the size n (rare words, words in all) is the largest whose prompt fits
the budget. The content's tokens at size n come from `Grown.tokens`, a sum
of per-piece counts that is never built as text, so the search costs no
tokenization. The instruction and question are counted once per sample,
each in a window with a piece of content beside it, so merges across the
boundary are included (as `lengths._count_local` does for filler).

The search counts the two boundaries around stand-in pieces; the size it
finds is then counted with the content's actual first and last pieces (a
metaspace tokenizer does not split at the newline before the question, so
the last word may merge with it) and shrunk while over budget. Within the
content, pieces meet at spaces, where byte-level and metaspace tokenizers
split, so the sum is exact there. That is checked once per tokenizer and
family against a full tokenization of a real prompt; where it fails, and
under `verify=True`, every candidate prompt is tokenized in full instead.
Either way the recorded count is the prompt's true count, never an estimate.
"""

from __future__ import annotations

from typing import Callable, Sequence

from metabench.errors import LengthError
from metabench.lengths import Fitted, Frame, TooShort
from metabench.tasks.base import Grown, Layout
from metabench.tokenizer import Tokenizer


class PieceCounter:
    """`tasks.base.Counter` for one tokenizer: counts cached on it (list words and numbers recur)."""

    def __init__(self, tok: Tokenizer):
        self.tok = tok
        self.cache: dict[str, int] = tok._cache.setdefault("piece_counts", {})
        self.sums: dict[str, list[int]] = tok._cache.setdefault("piece_sums", {})

    def __call__(self, pieces: Sequence[str]) -> list[int]:
        missing = list(dict.fromkeys(p for p in pieces if p not in self.cache))
        if missing:
            self.cache.update(zip(missing, self.tok.count_batch(missing)))
        return [self.cache[p] for p in pieces]

    def cumulative(self, name: str, piece: Callable[[int], str], n: int) -> int:
        sums = self.sums.setdefault(name, [0])
        if len(sums) <= n:
            start = len(sums)
            for c in self.tok.count_batch([piece(i) for i in range(start, max(n + 1, 2 * start))]):
                sums.append(sums[-1] + c)
        return sums[n]


def _largest(lo: int, hi: int, fits: Callable[[int], bool]) -> int:
    """The largest n in [lo, hi) with fits(n), given fits(lo) and fits monotone (true, then false)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def fit_grown(
    layout: Layout,
    tok: Tokenizer,
    budget: int,
    frame: Frame = Frame(),
    verify: bool = False,
    specials: bool = True,
    label: str = "",
) -> tuple[Fitted, dict]:
    """The largest size of `layout.grown` whose prompt is within `budget` tokens; its prompt and info."""
    g: Grown = layout.grown  # type: ignore[assignment]
    head = frame.before + layout.instruction
    tail = layout.question + frame.after + layout.answer_prefix
    count = PieceCounter(tok)
    first, last = count([g.first, g.last])
    head_t, tail_t = tok.count_batch([head + g.first, g.last + tail])
    windows = {head + g.first: head_t, g.last + tail: tail_t}  # the instruction is long (a one-shot example): count once
    fixed = head_t - first + tail_t - last + (tok.special_overhead() if specials else 0)

    def summed(n: int) -> int:
        return fixed + g.tokens(n, count)

    def full(n: int) -> int:
        return tok.count(head + g.render(n)[0] + tail, specials=specials)

    def exact(content: str, n: int) -> int:
        """The summed count with the boundaries counted around the content's actual first and last pieces.

        Inside the content pieces meet at spaces; at its ends they meet the instruction and the
        question, where a tokenizer that does not split at newlines (metaspace) may merge them."""
        cut, end = content.find(" ", 1), content.rfind(" ")
        first_p, last_p = content[: cut if cut > 0 else len(content)], content[end:] if end > 0 else content
        new = [w for w in (head + first_p, last_p + tail) if w not in windows]
        windows.update(zip(new, tok.count_batch(new)))
        f, l = count([first_p, last_p])
        h, t = windows[head + first_p], windows[last_p + tail]
        return h - f + t - l + (tok.special_overhead() if specials else 0) + g.tokens(n, count)

    key = ("grown_additive", type(g).__name__, frame)
    if key not in tok._cache:
        probe = min(g.upper(2048), g.maximum or 1 << 30)
        tok._cache[key] = exact(g.render(probe)[0], probe) == full(probe)
    measure = full if verify or not tok._cache[key] else summed

    smallest = measure(g.minimum)
    if smallest > budget:
        raise TooShort(smallest - budget)
    hi = g.upper(budget)
    if g.maximum is not None and hi > g.maximum:
        if measure(g.maximum) <= budget:
            raise LengthError(
                f"{label}: the task's vocabulary runs out before this length is filled "
                f"({g.maximum} at most); use shorter lengths"
            )
        hi = g.maximum
    n = _largest(g.minimum, hi, lambda k: measure(k) <= budget)
    while True:
        content, info = g.render(n)
        total = full(n) if measure is full else exact(content, n)
        if total <= budget or n == g.minimum:
            break
        n -= 1  # the actual first or last piece merged with the prompt around it more than the stand-in did
    if total > budget:
        raise TooShort(total - budget)
    # No filler: the content is the context. Its size is recorded in the sample's info.
    return Fitted(head + content + tail, total, 0, 0, (), ()), {**info, "size": n}
