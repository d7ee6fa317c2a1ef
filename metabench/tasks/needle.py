"""needle: RULER-style needles in a haystack at a controlled depth.

Variants follow RULER's NIAH family: one needle; several keys with distractor
needles (multikey); one key with several values (multivalue); several keys
asked at once (multiquery). Filler is the run's haystack, RULER's repeated
noise sentences, or (RULER's needle haystack) distractor needles throughout. Keys are words, numbers or uuids; values are
numbers, words or uuids. The queried needle sits at the sample's depth
(cycled over `depths`); other needles sit at random depths. Scored with
RULER's string-match-all over the expected values.

Abstention (`absent`): the queried key is in no needle, and the prompt names
the fixed answer to give then (`ABSTAIN`). It measures hallucination: a
model that reads the distractor needles and reports one of their values
scores 0. One distractor's key shares a word with the queried key, so a
key matched on one word alone is wrong. `absent_control` asks the same
question, with the same escape offered, about a key that is there: the pair
tells abstaining-by-default apart from reading. Both are scored by exact
match first: "none" inside a hallucinated sentence must not count. Chance is
1 / (keys + 1): a model that picks one of the answers the prompt offers
(each needle's value, or the fixed string) at random.
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


def needle_text(noun: str, key: str, value: str) -> str:
    return f" One of the special magic {noun} for {key} is: {value}."


ABSTAIN = "none"  # the answer an abstention prompt names for a key that is not in the text


@dataclass(frozen=True)
class NeedleSpec(TaskSpec):
    family = "needle"
    description = "find the value(s) hidden for a key in long filler text (RULER NIAH)"
    metrics = ("string_match_all", "exact_match")
    category = "retrieval"
    keys: int = 1  # needles with distinct keys (1 queried + distractors)
    values: int = 1  # values per queried key
    queries: int = 1  # keys asked about at once
    key_type: KeyType = "words"
    value_type: KeyType = "numbers"
    marker_after_needle: bool = False
    filler: Literal["text", "noise", "needles"] = "text"  # the run's haystack, RULER's noise, or distractor needles
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.queries > self.keys:
            raise ValueError(f"needle: queries ({self.queries}) cannot exceed keys ({self.keys})")
        for name in ("key_type", "value_type"):
            if getattr(self, name) not in ("words", "numbers", "uuids"):
                raise ValueError(f"needle: {name} must be words, numbers or uuids, got {getattr(self, name)!r}")
        if self.filler not in ("text", "noise", "needles"):
            raise ValueError(f"needle: filler must be text, noise or needles, got {self.filler!r}")

    def params(self) -> dict:
        # `filler` is left out at its default, so samples of the variants that predate it
        # (their seeds hash these params) stay byte-identical.
        out = super().params()
        if out["filler"] == "text":
            del out["filler"]
        return out

    def noun(self) -> str:
        return {"numbers": "numbers", "words": "words", "uuids": "uuids"}[self.value_type]

    def filler_units(self, rng: random.Random, k: int) -> list[str]:
        """RULER's needle haystack: distractor needles with fresh keys and values (a clash with
        the sample's own keys is caught by `avoid` and redrawn)."""
        return [needle_text(self.noun(), random_key(rng, self.key_type), random_key(rng, self.value_type))
                for _ in range(k)]

    def layout(self, rng: random.Random, index: int, marker: str | None) -> Layout:
        depth = self.depth_for(index)
        taken: set[str] = set()
        keys = distinct(rng, self.key_type, self.keys, taken)
        queried = keys[: self.queries]
        noun = self.noun()
        one = noun[:-1]
        values = {k: distinct(rng, self.value_type, self.values if k in queried else 1, taken) for k in keys}
        blocks: list[Block] = []
        for ki, k in enumerate(keys):
            for vi, v in enumerate(values[k]):
                text = needle_text(noun, k, v)
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
            filler={"text": "haystack", "noise": "noise", "needles": "needles"}[self.filler],
        )


@dataclass(frozen=True)
class AbstainSpec(TaskSpec):
    """Needles whose queried key may be absent; the prompt offers ABSTAIN as the answer then."""

    family = "needle"
    description = "say the fixed answer when the queried key is not in the text (abstention)"
    metrics = ("exact_match", "string_match_all")
    category = "retrieval"
    keys: int = 4  # needles in the text, all distractors when the queried key is absent
    present: bool = False  # the control: the queried key is one of the needles
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)

    def layout(self, rng: random.Random, index: int, marker: str | None) -> Layout:
        depth = self.depth_for(index)
        a, b, c = rng.sample(W.KEY_WORDS, 3)
        queried = f"{a}-{b}"
        near = f"{a}-{c}"  # shares a word with the queried key
        taken = {queried, near}
        others = distinct(rng, "words", self.keys - 1, taken)
        keys = [queried, near, *others][: self.keys] if self.present else [near, *others]
        values = distinct(rng, "numbers", len(keys), taken)
        # The first needle sits at the sample's depth: the queried one, or (absent) its near miss.
        blocks = [
            Block(f" One of the special magic numbers for {k} is: {v}.", depth if i == 0 else rng.random(), primary=i == 0)
            for i, (k, v) in enumerate(zip(keys, values))
        ]
        blocks.sort(key=lambda bl: bl.depth)
        target = values[0] if self.present else ABSTAIN
        return Layout(
            instruction=(
                "Some special magic numbers are hidden within the following text. Make sure to memorize "
                "them. I will quiz you about the numbers afterwards.\n\nText:"
            ),
            blocks=tuple(blocks),
            question=(
                f"\n\nWhat is the special magic number for {queried} mentioned in the provided text? "
                f'If the text mentions no special magic number for {queried}, answer "{ABSTAIN}".'
            ),
            answer_prefix=f"\nAnswer: The special magic number for {queried} mentioned in the provided text is",
            target=target,
            answers=(target,),
            depth=depth,
            info={"keys": keys, "queried": [queried], "present": self.present, "near_miss": near},
            avoid=(queried, near, *others, *values),
        )

    def chance(self) -> float:
        return 1.0 / (self.keys + 1)


VARIANTS: dict[str, TaskSpec] = {
    "single": NeedleSpec(),
    "single_number": NeedleSpec(key_type="numbers"),
    "single_uuid": NeedleSpec(key_type="uuids", value_type="uuids"),
    "multikey": NeedleSpec(keys=4),
    "multikey_uuid": NeedleSpec(keys=4, key_type="uuids", value_type="uuids"),
    "multivalue": NeedleSpec(values=4),
    "multiquery": NeedleSpec(keys=4, queries=4),
    "single_meta": NeedleSpec(marker_after_needle=True),
    "absent": AbstainSpec(),
    "absent_control": AbstainSpec(present=True),
    # RULER's NIAH settings that the variants above do not cover (README: "RULER in metabench").
    "single_noise": NeedleSpec(filler="noise"),  # niah_single_1
    "single_uuid_value": NeedleSpec(value_type="uuids"),  # niah_single_3
    "multikey_needles": NeedleSpec(filler="needles"),  # niah_multikey_2
    "multikey_needles_uuid": NeedleSpec(filler="needles", key_type="uuids", value_type="uuids"),  # niah_multikey_3
}
