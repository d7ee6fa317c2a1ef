"""mrcr: multi-round coreference in a long conversation (OpenAI-MRCR, Michelangelo).

The prompt is a conversation: the user asks for short pieces of writing
("Write a poem about tapirs."), the assistant answers each with procedural
text. The same request is made `needles` times, with a different answer
each time; `distractors` near-duplicate requests (the same form on another
topic, another form on the same topic) and ordinary exchanges fill the rest
of the budget. The last request asks for the i-th answer to that request,
prefixed by a random string:

    Prepend Xq3vT9bLwe to the 2nd (1 indexed) poem about tapirs. Do not include any other text in your response.

Metric (`sequence_ratio`, as OpenAI-MRCR grades): 0 unless the reply starts
with the prefix; otherwise difflib's SequenceMatcher ratio between the rest
of the reply and the expected answer. `exact_match` is kept beside it (the
answers are one line).

Turns are written in the `Turns` generate passes: plain `User:` /
`Assistant:` labels, or with `--chat-template` the tokenizer's own template
text around every turn, so each turn's template tokens count in the length.
The asked-for answer's exchange sits at the sample's depth; the other
needles sit before and after it at random depths, so its ordinal is right.
Ordinary exchanges never repeat the asked-for request.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

from metabench import words as W
from metabench.haystack import procedural_sentences
from metabench.tasks.base import PLAIN_TURNS, Block, Layout, TaskSpec, Turns

FORMS = ("poem", "story", "riddle", "song", "letter", "speech", "fable", "toast")
TOPICS = W.KEY_WORDS
PREFIX_CHARS = string.ascii_letters + string.digits


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def request(form: str, topic: str) -> str:
    return f"Write a {form} about {topic}."


def answer(rng: random.Random, words: int) -> str:
    """Procedural sentences until about `words` words: one line, as a model would answer."""
    out: list[str] = []
    while sum(len(s.split()) for s in out) < words:
        out.extend(procedural_sentences(rng, 1))
    return " ".join(out)


@dataclass(frozen=True)
class MRCRSpec(TaskSpec):
    family = "mrcr"
    description = "repeat the i-th answer to a request from a long conversation, after a given prefix (OpenAI-MRCR)"
    metrics = ("sequence_ratio", "exact_match")
    category = "retrieval"  # find an earlier answer by its request and ordinal
    conversation = True
    needles: int = 2  # times the asked-for request is made, each with its own answer
    distractors: int = 2  # near-duplicate requests: same form on another topic, or another form on the same topic
    answer_words: int = 16  # about this many words per answer
    prefix_length: int = 10
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)

    def exchange(self, turns: Turns, form: str, topic: str, reply: str) -> str:
        """One user request and its answer, as they continue a conversation after an assistant turn."""
        return turns.assistant_end + request(form, topic) + turns.user_end + reply

    def layout(self, rng: random.Random, index: int, marker: str | None, turns: Turns = PLAIN_TURNS) -> Layout:
        depth = self.depth_for(index)
        form, topic = rng.choice(FORMS), rng.choice(TOPICS)
        # The asked-for needle is the `which`-th; depth 0 (1) leaves no room before (after) it.
        which = 1 if depth == 0.0 else self.needles if depth == 1.0 else rng.randint(1, self.needles)
        depths = sorted(rng.uniform(0.0, depth) for _ in range(which - 1))
        depths += [depth] + sorted(rng.uniform(depth, 1.0) for _ in range(self.needles - which))
        replies = [answer(rng, self.answer_words) for _ in range(self.needles)]
        blocks = [Block(self.exchange(turns, form, topic, r), d, primary=i == which - 1)
                  for i, (r, d) in enumerate(zip(replies, depths))]
        for k in range(self.distractors):
            other_form = rng.choice([f for f in FORMS if f != form])
            other_topic = rng.choice([t for t in TOPICS if t != topic])
            near = (form, other_topic) if k % 2 == 0 else (other_form, topic)
            blocks.append(Block(self.exchange(turns, *near, answer(rng, self.answer_words)), rng.random()))
        blocks.sort(key=lambda b: b.depth)
        prefix = "".join(rng.choice(PREFIX_CHARS) for _ in range(self.prefix_length))
        target = prefix + replies[which - 1]

        def units(r: random.Random, k: int) -> list[str]:
            """Ordinary exchanges: any request but the asked-for one, answers of one to three sentences."""
            out = []
            while len(out) < k:
                f, t = r.choice(FORMS), r.choice(TOPICS)
                if (f, t) != (form, topic):
                    out.append(self.exchange(turns, f, t, answer(r, r.randint(8, 2 * self.answer_words))))
            return out

        return Layout(
            instruction=(
                "I will ask you for short pieces of writing on many topics. Answer each request in one "
                "paragraph." + turns.user_end + "Of course. What would you like first?"
            ),
            blocks=tuple(blocks),
            question=(
                turns.assistant_end + f"Prepend {prefix} to the {ordinal(which)} (1 indexed) {form} about {topic}. "
                "Do not include any other text in your response."
            ),
            answer_prefix="",
            target=target,
            answers=(target,),
            depth=depth,
            info={"prefix": prefix, "request": request(form, topic), "which": which, "needles": self.needles},
            filler="turns",
            avoid=(request(form, topic), *replies),
            units=units,
        )


VARIANTS: dict[str, TaskSpec] = {
    "2needle": MRCRSpec(),
    "4needle": MRCRSpec(needles=4),
    "8needle": MRCRSpec(needles=8),
}
