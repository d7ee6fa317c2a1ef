"""Task properties: the answer is derivable from the prompt, needles are unique,
depth is where it says, markers sit where the paper puts meta-tokens."""

from __future__ import annotations

import re

import pytest

from metabench import words as W
from metabench.errors import MetabenchError
from metabench.generate import Options, iter_samples
from metabench.haystack import procedural_sentences
from metabench.suite import parse_suite
from metabench.tasks import FAMILIES, resolve
from metabench.tasks.base import PLAIN_TURNS

import random

from families import RULER_FAMILIES  # noqa: E402


def _samples(tok, tasks, lengths=(1500, 3000), n=5, **opts):
    suite = parse_suite({"lengths": list(lengths), "samples": n, "tasks": tasks})
    return list(iter_samples(suite, tok, Options(**opts)))


def solve(s) -> str:
    """Answer each task from the prompt alone, the way a perfect reader would."""
    p = s.prompt.split("Text:", 1)[-1].rsplit("\n\n", 1)[0]  # the body: no instruction, no question
    if s.task == "needle" and s.variant == "twohop":
        from test_needle_variants import solve_twohop

        return solve_twohop(s)
    if s.task == "needle" and s.variant.startswith("absent"):
        from test_needle_variants import solve_absent

        return solve_absent(s)
    if s.task == "mrcr":
        from test_mrcr import solve as solve_mrcr

        return "".join(solve_mrcr(s.prompt, PLAIN_TURNS))
    if s.task == "needle":
        keys = s.info["queried"]
        return ", ".join(v for k in keys for v in re.findall(rf"for {re.escape(k)} is: (\S+?)\.(?:\s|$)", p))
    if s.task == "kv_recall":
        return ", ".join(re.search(rf'"{re.escape(k)}": "([^"]+)"', p).group(1) for k in s.info["keys"])
    if s.task == "list_recall":
        items = re.search(rf"List {s.info['list']}: ([^.]+)\.", p).group(1).split(", ")
        return items[s.info["item_index"] - 1]
    if s.task == "copy":
        return re.search(r"<<< (.*?) >>>", p).group(1)
    if s.task == "segment_count":
        seg = re.search(r"\[ (.*?) \]", p).group(1).split()
        return str(seg.count(s.info["item"]))
    if s.task == "parity":
        bits = re.search(r"Bits: ([01 ]+?) \|", p).group(1).split()
        return str(sum(map(int, bits)) % 2)
    raise AssertionError(s.task)


def test_answer_is_derivable_from_prompt(bytelevel):
    # RULER's variable tracking and word-frequency families have their own solvers in test_ruler_tasks.py.
    tasks = [{"task": f, "variant": v} for f, vs in FAMILIES.items() for v in vs if f not in RULER_FAMILIES]
    samples = _samples(bytelevel, tasks, lengths=(1500,), n=3)
    assert len(samples) == 3 * len(tasks)
    for s in samples:
        if s.task == "needle":  # several values may appear in any order
            assert sorted(solve(s).split(", ")) == sorted(s.answers), s.id
        else:
            assert solve(s) == s.target, s.id


def test_needles_unique_and_distractors_distinct(bytelevel):
    for s in _samples(bytelevel, [{"task": "needle", "variant": v} for v in ("multikey", "multivalue", "multiquery")]):
        needles = re.findall(r"special magic \w+ for (\S+) is: (\S+?)\.", s.prompt)
        keys = [k for k, _ in needles]
        values = [v for _, v in needles]
        assert len(set(values)) == len(values), s.id
        for v in s.answers:
            assert s.prompt.count(v) == 1, s.id
        if s.variant == "multikey":
            assert len(set(keys)) == 4
            assert sum(k == s.info["queried"][0] for k in keys) == 1


def test_depth_is_where_it_says(bytelevel):
    for s in _samples(bytelevel, [{"task": "needle", "params": {"depths": [0, 0.1, 0.5, 0.9, 1]}}], lengths=(4000,), n=10):
        # One unit of filler is the finest step a depth can take.
        assert abs(s.depth_actual - s.depth) <= 40 / s.filler_tokens, s.id
        needle_at = s.prompt.index(f"for {s.info['queried'][0]} is:")
        text_start = s.prompt.index("Text:")
        rel = (needle_at - text_start) / (len(s.prompt) - text_start)
        assert abs(rel - s.depth) < 0.06, s.id


def test_one_primary_block_per_layout():
    """The recorded depth is the primary block's; it must be marked explicitly, never inferred."""
    for family, variants in FAMILIES.items():
        for name, spec in variants.items():
            for index in range(8):
                layout = spec.layout(random.Random(index), index, "<|meta|>")
                primary = [b for b in layout.blocks if b.primary]
                assert len(primary) == (layout.depth is not None), (family, name, index)
                if primary:
                    assert primary[0].depth == layout.depth, (family, name, index)


def test_markers_land_on_the_meta_token(bytelevel):
    meta_id = bytelevel.backend.token_to_id("<|meta|>")
    samples = _samples(bytelevel, ["list_recall", "copy", "segment_count", "parity", {"task": "needle", "variant": "single_meta"}],
                       lengths=(1200,), n=3, marker="<|meta|>")
    expected = {"list_recall": 1, "copy": 2, "segment_count": 2, "parity": 1, "needle": 1}
    for s in samples:
        ids = bytelevel.encode(s.prompt, specials=True)
        assert len(s.marker_token_positions) == expected[s.task] == s.prompt.count("<|meta|>")
        assert [ids[i] for i in s.marker_token_positions] == [meta_id] * expected[s.task]
        for off in s.marker_offsets:
            assert s.prompt.startswith("<|meta|>", off)
    # Where the paper puts them: right after the queried list, inside the brackets, after the bar.
    by_task = {s.task: s for s in samples}
    lr = by_task["list_recall"]
    assert re.search(rf"List {lr.info['list']}: [^.]+\. <\|meta\|>", lr.prompt)
    assert "[ <|meta|> " in by_task["segment_count"].prompt and " <|meta|> ]" in by_task["segment_count"].prompt
    assert "| <|meta|> " in by_task["parity"].prompt


def test_markers_off_by_default_but_positions_recorded(bytelevel):
    s = _samples(bytelevel, ["parity"], lengths=(800,), n=1)[0]
    assert s.marker is None and s.marker_token_positions is None
    assert s.prompt[s.marker_offsets[0] - 1] == "|"


def test_filler_and_key_vocabularies_are_disjoint():
    filler = set().union(W.FILLER_NOUNS, W.FILLER_ADJECTIVES, W.FILLER_VERBS_PAST, W.FILLER_VERBS_INTRANSITIVE,
                         W.FILLER_ADVERBS, W.FILLER_TIMES, {w.lower() for w in W.FILLER_NAMES})
    assert not filler & set(W.KEY_WORDS)
    assert not filler & set(W.COUNT_ITEMS)
    text = " ".join(procedural_sentences(random.Random(3), 5000))
    assert not re.search(r"\d", text)
    words = set(re.findall(r"[a-z]+", text.lower()))
    assert not words & set(W.KEY_WORDS) and not words & set(W.COUNT_ITEMS)


def test_procedural_filler_is_varied():
    sentences = procedural_sentences(random.Random(0), 2000)
    assert len(set(sentences)) > 1990
    assert len({s.split()[0] for s in sentences}) > 30


def test_file_haystack(bytelevel, tmp_path):
    f = tmp_path / "essay.txt"
    f.write_text(" ".join(f"This is sentence number {w} of my essay." for w in W.FILLER_NOUNS * 5))
    s = _samples(bytelevel, ["needle"], lengths=(2000,), n=2, haystack_files=(str(f),))
    assert all("of my essay." in x.prompt for x in s)
    assert all(x.haystack.startswith("files:") for x in s)
    assert all(bytelevel.count(x.prompt, True) == x.prompt_tokens for x in s)


def test_spec_validation():
    with pytest.raises(MetabenchError, match="queries"):
        resolve("needle", "single", {"queries": 3})
    with pytest.raises(MetabenchError, match="positive"):
        resolve("copy", "default", {"span_words": 0})
    with pytest.raises(MetabenchError, match="did you mean needle"):
        resolve("neddle")
    with pytest.raises(MetabenchError, match="did you mean multikey"):
        resolve("needle", "multikye")
    with pytest.raises(MetabenchError, match="no parameter 'kyes'.*keys"):
        resolve("needle", "single", {"kyes": 2})
