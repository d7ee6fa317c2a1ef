"""Reasoning models: their thinking separated from their answer, so scoring sees the answer only.

`--thinking` (every backend):

- `auto` (default): a reasoning field the server sent (`reasoning_content`,
  or `reasoning`: vLLM's reasoning parsers, hosted APIs) is the reasoning and
  the message content is the answer; otherwise `<think>` ... `</think>` in
  the text is;
- `START,END`: the same with other tags, e.g. `<|begin_of_thought|>,<|end_of_thought|>`
  (a reasoning field, when sent, is still the reasoning);
- `none`: no separation; the whole output is the answer.

The three shapes reasoning models produce:

1. a separate field: the answer is the content as sent;
2. inline tags, `<think>R</think>A`: the reasoning is R, the answer A (text
   after the LAST end tag, so an answer never holds reasoning);
3. the end tag only, `R</think>A`: templates that open the tag inside the
   prompt (DeepSeek-R1, Qwen3 thinking): the same rule.

An output with no end tag is all reasoning (the answer is empty) when it
opened the tag itself, or when the prompt ended with the start tag; with
neither it holds no reasoning, and all of it is the answer. A model cut off
while thinking therefore scores on an empty answer and counts as truncated
(its finish_reason is length), never as having answered with its thoughts.

`--max-tokens N` gives a thinking model N tokens on top of each sample's
answer budget: the generation cap is N + the budget, and prompt + cap must
fit the model's window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from metabench.errors import MetabenchError


@dataclass(frozen=True)
class Thinking:
    mode: Literal["auto", "none", "tags"] = "auto"
    start: str = "<think>"
    end: str = "</think>"

    @classmethod
    def parse(cls, text: str) -> "Thinking":
        """'auto' | 'none' | 'START,END'."""
        text = text.strip()
        if text in ("auto", "none"):
            return cls(text)  # type: ignore[arg-type]
        start, sep, end = text.partition(",")
        if not sep or not start.strip() or not end.strip() or "," in end:
            raise MetabenchError(
                f"--thinking {text!r}: write auto, none, or the start and end strings of the reasoning, "
                "e.g. --thinking '<think>,</think>'"
            )
        return cls("tags", start.strip(), end.strip())

    def spec(self) -> str:
        return self.mode if self.mode != "tags" else f"{self.start},{self.end}"


@dataclass(frozen=True)
class Split:
    answer: str  # what scoring sees
    reasoning: str | None  # None: the output holds no reasoning


def split(text: str, field: str | None, thinking: Thinking, prompt: str = "") -> Split:
    """The answer and the reasoning of one output; `field` is a server's separate reasoning, `prompt` the sample's."""
    if thinking.mode == "none":
        return Split(text, None)
    if field is not None:
        return Split(text, field)
    head = text.lstrip()
    if thinking.end in text:
        cut = text.rindex(thinking.end)
        reasoning = text[:cut].lstrip()
        if reasoning.startswith(thinking.start):
            reasoning = reasoning[len(thinking.start):]
        return Split(text[cut + len(thinking.end):], reasoning)
    if head.startswith(thinking.start):
        return Split("", head[len(thinking.start):])  # still thinking when it stopped
    if prompt.rstrip().endswith(thinking.start):
        return Split("", text)  # the template opened the tag: all of it is thinking
    return Split(text, None)
