"""Lengths: parsing, and the budget guarantee checked by full tokenization."""

from __future__ import annotations

import pytest

from metabench.errors import LengthError, MetabenchError
from metabench.generate import Options, iter_samples, make_sample
from metabench.haystack import build_haystack
from metabench.lengths import parse_length, parse_lengths
from metabench.suite import parse_suite
from metabench.tasks import FAMILIES

from families import RULER_FAMILIES  # noqa: E402


@pytest.mark.parametrize(
    "text, context, tokens, label",
    [("2x", 4096, 8192, "2x"), ("0.25x", 4096, 1024, "0.25x"), ("1.5x", 1000, 1500, "1.5x"),
     ("4k", None, 4096, "4096"), ("4096", None, 4096, "4096"), ("1M", None, 1048576, "1048576")],
)
def test_parse_length(text, context, tokens, label):
    length = parse_length(text, context)
    assert (length.tokens, length.label) == (tokens, label)


@pytest.mark.parametrize("text, context, needle", [
    ("2x", None, "--context"), ("abc", 100, "cannot read"), ("0x", 100, "positive"), ("1.5", None, "whole"),
])
def test_parse_length_errors(text, context, needle):
    with pytest.raises(MetabenchError, match=needle):
        parse_length(text, context)


def test_parse_lengths_rejects_duplicates_and_empty():
    with pytest.raises(MetabenchError, match="both 4096"):
        parse_lengths("1x,4096", 4096)
    with pytest.raises(MetabenchError, match="no lengths"):
        parse_lengths(" , ", 4096)


def _one_variant_per_family():
    return parse_suite({
        "lengths": ["0.25x", "0.5x", "1x", "1.5x", "2x"],
        "samples": 2,
        # RULER's variable tracking and word-frequency families: tests/test_ruler_tasks.py, with their own minimums.
        "tasks": [{"task": f} for f in FAMILIES if f not in RULER_FAMILIES]
        + [{"task": "needle", "variant": "multikey_uuid"}],
    })


@pytest.mark.parametrize("context", [2000, 4096, 6144])
def test_every_family_fits_its_budget_exactly(any_tok, context):
    """Never over budget; >= 97% full from 1000 tokens, within one filler unit below.
    prompt_tokens is what a full tokenization of the prompt gives."""
    max_unit = build_haystack(any_tok).max_count
    for s in iter_samples(_one_variant_per_family(), any_tok, Options(context=context)):
        full = any_tok.count(s.prompt, specials=s.add_special_tokens)
        assert full == s.prompt_tokens, s.id
        used = s.prompt_tokens + s.answer_budget
        assert used <= s.length, s.id
        unit = {"kv_recall": 64, "mrcr": 100}.get(s.task, max_unit)  # mrcr's unit is a whole exchange
        if s.length >= 1000 and s.task != "mrcr":
            assert used >= 0.97 * s.length, (s.id, used)
        assert s.length - used < unit, (s.id, used)


def test_chat_template_lengths(metaspace):
    suite = parse_suite({"lengths": ["0.5x", "2x"], "samples": 2, "tasks": ["needle", "copy", "parity"]})
    for s in iter_samples(suite, metaspace, Options(context=1200, chat_template=True)):
        assert s.prompt.startswith("<s><|user|>\n") and "<|assistant|>\n\nAnswer:" in s.prompt
        assert s.add_special_tokens is False
        assert metaspace.count(s.prompt, specials=False) == s.prompt_tokens
        assert s.prompt_tokens + s.answer_budget <= s.length


def test_verify_mode_gives_the_same_samples(bytelevel):
    suite = parse_suite({"lengths": [1500], "samples": 3, "tasks": ["needle", "list_recall"]})
    fast = [s.to_json() for s in iter_samples(suite, bytelevel, Options())]
    full = [s.to_json() for s in iter_samples(suite, bytelevel, Options(verify=True))]
    assert fast == full


# (task, a length too short for it): every family that fixes a floor names it
TOO_SHORT = [("needle", 50), ({"task": "needle", "variant": "twohop"}, 64), ({"task": "mrcr", "variant": "4needle"}, 100),
             ("variable_tracking", 200), ("common_words", 200), ("frequent_words", 200)]


@pytest.mark.parametrize("task,short", TOO_SHORT, ids=[str(t if isinstance(t, str) else t["variant"]) for t, _ in TOO_SHORT])
def test_too_short_names_the_smallest_length_that_fits(bytelevel, task, short):
    from metabench.lengths import Length

    entry = parse_suite({"lengths": [1], "tasks": [task]}).entries[0]
    with pytest.raises(LengthError, match=r"at least (\d+) tokens") as info:
        make_sample(entry, Length(str(short), short), 0, 0, bytelevel, Options())
    message = info.value.args[0]
    assert "\n" not in message
    minimum = int(message.split("at least ")[1].split()[0])
    ok = make_sample(entry, Length(str(minimum), minimum), 0, 0, bytelevel, Options())
    assert ok.prompt_tokens + ok.answer_budget <= minimum
