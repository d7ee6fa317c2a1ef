"""What every task family provides: a typed spec that turns an RNG into a layout.

A task does not build prompts of a given length itself. It returns a `Layout`:
the instruction, the pieces of content (`Block`s) with the relative depth at
which each sits in the filler, the question and the answer. `lengths.fit`
then surrounds the blocks with filler until the prompt fills its token budget.
This keeps every family a small pure function and puts all length handling in
one place.

Grown content: aggregation tasks (common and frequent words) have no filler;
their word list is the whole context and grows with the budget. Their layout
carries a `Grown`: content of size n (rare words, words in all), counted
piece by piece, that `grown.fit_grown` sizes to the budget instead.

Categories: every family names the kind of ability it measures, RULER's
categories plus the paper's (`CATEGORIES`); leaderboards average over them.

Meta-token markers: each block lists the character offsets where the paper
places meta-tokens (after the queried list, around the counted segment, ...).
With a marker string given, the spec inserts it there; without one the offsets
still record where it would go. Visible delimiters (brackets, `|`) always
mark those places too, so ordinary models can solve every task.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Literal, Protocol, Sequence

# Where filler comes from: the run's haystack (procedural or files), RULER's noise sentences,
# units the spec makes itself (`filler_units`: key-value pairs, distractor needles), or units
# the layout makes for its own sample (`Layout.units`: conversation turns).
Filler = Literal["haystack", "noise", "kv_pairs", "needles", "turns"]
Category = Literal["retrieval", "multi-hop tracing", "aggregation", "recall and copying", "counting"]
CATEGORIES: tuple[Category, ...] = ("retrieval", "multi-hop tracing", "aggregation", "recall and copying", "counting")


class Counter(Protocol):
    """Token counts of content pieces under the sample's tokenizer (no special tokens), cached."""

    def __call__(self, pieces: Sequence[str]) -> list[int]: ...

    def cumulative(self, name: str, piece: Callable[[int], str], n: int) -> int:
        """Tokens of piece(1) + ... + piece(n), counted piece by piece; sums are kept per tokenizer."""
        ...


@dataclass(frozen=True)
class Block:
    """A piece of content placed at `depth` (0 = start, 1 = end) of the filler.

    `text` is inserted verbatim: it starts with a space (inline prose) or a
    newline (line-based content). `markers` are character offsets into `text`.
    `primary` marks the block the question is about (the sample's recorded
    depth is where that block landed); at most one block of a layout has it.
    `name` asks for the block's measured depth to be recorded too, in the
    sample's `info["depths_actual"][name]` (two-hop facts, say).
    """

    text: str
    depth: float
    markers: tuple[int, ...] = ()
    primary: bool = False
    name: str = ""


@dataclass(frozen=True)
class Layout:
    instruction: str  # ends where the filler begins
    blocks: tuple[Block, ...]
    question: str  # starts after the filler, e.g. "\n\nQuestion: ..."
    answer_prefix: str  # put after the question (and after a chat template's assistant turn)
    target: str  # the canonical answer, as a model should write it
    answers: tuple[str, ...]  # the strings that string-match scoring looks for
    depth: float | None = None  # the task's primary depth, where it has one
    info: dict[str, Any] = field(default_factory=dict)  # task-specific facts, recorded per sample
    filler: Filler = "haystack"
    avoid: tuple[str, ...] = ()  # strings that must not occur in the filler (needle keys, values)
    grown: "Grown | None" = None  # content that is the context itself, sized to the budget (no filler)
    units: Callable[[random.Random, int], list[str]] | None = None  # this sample's own filler maker (turns)


class Grown:
    """Content whose size n fills the budget: a numbered word list, a coded text.

    The content at size n is a run of pieces joined by plain concatenation;
    every piece but the first starts with a space, so a tokenizer that splits
    at spaces counts the content as the sum of its pieces' counts. `tokens`
    gives that sum without building the text (sizes are searched on it);
    `grown.fit_grown` checks it once per tokenizer, content type and frame
    against a full tokenization and tokenizes in full where it does not hold. Sizes from `minimum` up pose
    the task unambiguously; `tokens` must grow with n.
    """

    minimum: int = 1
    maximum: int | None = None  # the largest size the task can make (a finite vocabulary), if any
    first: str = ""  # a piece the content starts with, for counting the instruction's boundary
    last: str = ""  # a piece the content may end with, for counting the question's boundary

    def tokens(self, n: int, count: Counter) -> int:
        raise NotImplementedError

    def upper(self, budget: int) -> int:
        """A size whose content surely takes more than `budget` tokens (every piece is >= 1 token)."""
        raise NotImplementedError

    def render(self, n: int) -> tuple[str, dict[str, Any]]:
        """The content at size n, and facts about it recorded in the sample's info."""
        raise NotImplementedError


@dataclass(frozen=True)
class Turns:
    """How a conversation is written: a chat template's own text around each turn, or plain labels.

    before + user text + user_end + assistant text + assistant_end + user text ... + after:
    `before` opens the first user turn (BOS and system text included), `after`
    opens the assistant turn the model writes.
    """

    before: str
    user_end: str
    assistant_end: str
    after: str


PLAIN_TURNS = Turns(before="User: ", user_end="\n\nAssistant: ", assistant_end="\n\nUser: ", after="\n\nAssistant:")


def with_marker(text: str, offset: int, marker: str | None) -> tuple[str, int]:
    """Insert `" " + marker` at `offset`; return the new text and the marker's own offset."""
    if not marker:
        return text, offset
    return text[:offset] + " " + marker + text[offset:], offset + 1


def insert_markers(text: str, offsets: list[int], marker: str | None) -> tuple[str, tuple[int, ...]]:
    """Insert the marker at several offsets (given in the unmarked text)."""
    if not marker:
        return text, tuple(offsets)
    out: list[int] = []
    shift = 0
    for off in sorted(offsets):
        text, pos = with_marker(text, off + shift, marker)
        out.append(pos)
        shift += len(marker) + 1
    return text, tuple(out)


@dataclass(frozen=True)
class TaskSpec:
    """Base of every family's spec: frozen, typed, validated in `__post_init__`.

    Subclasses set `family`, `description`, `metrics` (the first is primary),
    `category` and implement `layout`. A conversation family sets `conversation` and
    takes a fourth argument, the `Turns` to write its turns in; generate puts
    `before`/`after` around its prompt. `depths` are the needle depths cycled over samples
    (sample i uses depths[i % len(depths)]); families without depth ignore them.
    """

    family: ClassVar[str]
    description: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]
    category: ClassVar[Category]
    conversation: ClassVar[bool] = False  # True: `layout` takes the Turns its conversation is written in
    depths: tuple[float, ...] = (0.5,)

    def __post_init__(self) -> None:
        if not self.depths or any(not 0.0 <= d <= 1.0 for d in self.depths):
            raise ValueError(f"{self.family}: depths must be a non-empty list of numbers in [0, 1], got {self.depths}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value <= 0:
                raise ValueError(f"{self.family}: {f.name} must be a positive integer, got {value}")

    def depth_for(self, index: int) -> float:
        return self.depths[index % len(self.depths)]

    def layout(self, rng: random.Random, index: int, marker: str | None) -> Layout:
        raise NotImplementedError

    def chance(self) -> float:
        """Expected primary score of a model that guesses (0 when guessing is hopeless)."""
        return 0.0

    def params(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out
