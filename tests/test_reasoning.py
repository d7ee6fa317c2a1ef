"""Reasoning split from the answer, on output shapes recorded from common reasoning models."""

from __future__ import annotations

import pytest

from metabench.errors import MetabenchError
from metabench.reasoning import Split, Thinking, split

AUTO = Thinking()

# Shapes as these models send them (abridged): the answer is what scoring must see.
QWEN3_INLINE = "<think>\nThe list named cedar has items ... the third is 4417.\n</think>\n\nThe answer is 4417."
R1_END_ONLY = "Okay, the user wants the value for key 'amber'. Scanning...\n</think>\n\n4417"  # template opened <think>
VLLM_FIELD = ("\n\n4417", "The key amber appears once; its value is 4417.")  # (content, reasoning_content)
R1_PROMPT_TAIL = "<｜User｜>What is the value?<｜Assistant｜><think>\n"
# Qwen3 with enable_thinking=False: the template writes an empty think block into the prompt, the model answers only.
QWEN3_NO_THINK_TAIL = "<|im_start|>assistant\n<think>\n\n</think>\n\n"
# Qwen3 answering "/no_think" itself: an empty think block, then the answer.
QWEN3_EMPTY_THINK = "<think>\n\n</think>\n\n4417"
# vLLM's deepseek_r1 parser on an output cut off while thinking: no content (the backend makes it ""), all reasoning.
VLLM_FIELD_CUT = ("", "Okay, so I need to find the value for the key amber. Let me scan the JSON object from")


def test_inline_tags():
    assert split(QWEN3_INLINE, None, AUTO) == Split("\n\nThe answer is 4417.", "\nThe list named cedar has items ... the third is 4417.\n")


def test_end_tag_only():
    s = split(R1_END_ONLY, None, AUTO, prompt=R1_PROMPT_TAIL)
    assert s.answer == "\n\n4417" and s.reasoning.startswith("Okay, the user")


def test_separate_field():
    content, field = VLLM_FIELD
    assert split(content, field, AUTO) == Split(content, field)


def test_separate_field_cut_off_while_thinking():
    content, field = VLLM_FIELD_CUT
    assert split(content, field, AUTO) == Split("", field)


def test_empty_think_block():
    assert split(QWEN3_EMPTY_THINK, None, AUTO) == Split("\n\n4417", "\n\n")


def test_thinking_closed_in_the_prompt_leaves_a_plain_answer():
    assert split("4417", None, AUTO, prompt=QWEN3_NO_THINK_TAIL) == Split("4417", None)


def test_cut_off_while_thinking_leaves_no_answer():
    assert split("<think>\nLet me count the segments: 1, 2, 3", None, AUTO) == Split("", "\nLet me count the segments: 1, 2, 3")
    # the template opened the tag, so an output without the end tag is all thinking
    assert split("Let me count: 1, 2, 3", None, AUTO, prompt=R1_PROMPT_TAIL) == Split("", "Let me count: 1, 2, 3")


def test_plain_answers_and_none_pass_through():
    assert split(" 4417\nQuestion:", None, AUTO) == Split(" 4417\nQuestion:", None)
    assert split(QWEN3_INLINE, None, Thinking.parse("none")) == Split(QWEN3_INLINE, None)


def test_the_answer_follows_the_last_end_tag():
    s = split("<think>a</think>b</think> c", None, AUTO)
    assert s.answer == " c" and s.reasoning == "a</think>b"


def test_custom_tags():
    t = Thinking.parse("<|begin_of_thought|>,<|end_of_thought|>")
    out = "<|begin_of_thought|>hmm<|end_of_thought|>\n<|begin_of_solution|>42"
    assert split(out, None, t) == Split("\n<|begin_of_solution|>42", "hmm")
    assert split(QWEN3_INLINE, None, t).reasoning is None  # other tags are text


@pytest.mark.parametrize("bad", ["always", "<think>", "<think>,", ",</think>", "a,b,c", ""])
def test_bad_thinking_values_name_the_forms(bad):
    with pytest.raises(MetabenchError, match="write auto, none, or the start and end strings"):
        Thinking.parse(bad)


def test_spec_round_trips():
    for text in ("auto", "none", "<t>,</t>"):
        assert Thinking.parse(text).spec() == text
