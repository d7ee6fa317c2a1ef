"""needle: RULER-style needles in a haystack at a controlled depth.

Variants follow RULER's NIAH family: one needle; several keys with distractor
needles (multikey); one key with several values (multivalue); several keys
asked at once (multiquery). Keys are words, numbers or uuids; values are
numbers, words or uuids. The queried needle sits at the sample's depth
(cycled over `depths`); other needles sit at random depths. Scored with
RULER's string-match-all over the expected values.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Literal

from metabench import words as W
from metabench.tasks.base import Block, Layout, TaskSpec, with_marker

KeyType = Literal["words", "numbers", "uuids"]


def random_key(rng: random.Random, kind: KeyType) -> str:
    if kind == "words":
        a, b = rng.sample(W.KEY_WORDS, 2)
        return f"{a}-{b}"
    if kind == "numbers":
        return str(rng.randint(1_000_000, 9_999_999))
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def distinct(rng: random.Random, kind: KeyType, n: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        k = random_key(rng, kind)
        if k not in taken:
            taken.add(k)
            out.append(k)
    return out


@dataclass(frozen=True)
class NeedleSpec(TaskSpec):
    family = "needle"
    description = "find the value(s) hidden for a key in long filler text (RULER NIAH)"
    metrics = ("string_match_all", "exact_match")
    keys: int = 1  # needles with distinct keys (1 queried + distractors)
    values: int = 1  # values per queried key
    queries: int = 1  # keys asked about at once
    key_type: KeyType = "words"
    value_type: KeyType = "numbers"
    marker_after_needle: bool = False
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.queries > self.keys:
            raise ValueError(f"needle: queries ({self.queries}) cannot exceed keys ({self.keys})")
        for name in ("key_type", "value_type"):
            if getattr(self, name) not in ("words", "numbers", "uuids"):
                raise ValueError(f"needle: {name} must be words, numbers or uuids, got {getattr(self, name)!r}")

    def layout(self, rng: random.Random, index: int, marker: str | None) -> Layout:
        depth = self.depth_for(index)
        taken: set[str] = set()
        keys = distinct(rng, self.key_type, self.keys, taken)
        queried = keys[: self.queries]
        noun = {"numbers": "numbers", "words": "words", "uuids": "uuids"}[self.value_type]
        one = noun[:-1]
        values = {k: distinct(rng, self.value_type, self.values if k in queried else 1, taken) for k in keys}
        blocks: list[Block] = []
        for ki, k in enumerate(keys):
            for vi, v in enumerate(values[k]):
                text = f" One of the special magic {noun} for {k} is: {v}."
                markers: tuple[int, ...] = ()
                if self.marker_after_needle and k in queried:
                    text, off = with_marker(text, len(text), marker)
                    markers = (off,)
                first = ki == 0 and vi == 0
                blocks.append(Block(text, depth if first else rng.random(), markers, primary=first))
        # Blocks at the same slot keep list order; order them by depth so the text reads naturally.
        blocks.sort(key=lambda b: b.depth)
        answers = tuple(v for k in queried for v in values[k])
        q = queried[0] if len(queried) == 1 else ", ".join(queried[:-1]) + " and " + queried[-1]
        many = len(answers) > 1
        return Layout(
            instruction=(
                f"Some special magic {noun} are hidden within the following text. Make sure to memorize "
                f"them. I will quiz you about the {noun} afterwards.\n\nText:"
            ),
            blocks=tuple(blocks),
            question=f"\n\nWhat {'are all the' if many else 'is the'} special magic {noun if many else one} for {q} mentioned in the provided text?",
            answer_prefix=f"\nAnswer: The special magic {noun if many else one} for {q} mentioned in the provided text {'are' if many else 'is'}",
            target=", ".join(answers),
            answers=answers,
            depth=depth,
            info={"keys": keys, "queried": queried},
            avoid=tuple(keys) + tuple(v for vs in values.values() for v in vs),
        )


VARIANTS: dict[str, TaskSpec] = {
    "single": NeedleSpec(),
    "single_number": NeedleSpec(key_type="numbers"),
    "single_uuid": NeedleSpec(key_type="uuids", value_type="uuids"),
    "multikey": NeedleSpec(keys=4),
    "multikey_uuid": NeedleSpec(keys=4, key_type="uuids", value_type="uuids"),
    "multivalue": NeedleSpec(values=4),
    "multiquery": NeedleSpec(keys=4, queries=4),
    "single_meta": NeedleSpec(marker_after_needle=True),
}
