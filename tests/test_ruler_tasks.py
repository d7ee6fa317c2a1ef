"""RULER's variable tracking, common and frequent words: answers solved from the prompt alone,
never ambiguous, exact lengths, golden hashes, and lengths too short named."""

from __future__ import annotations

import collections
import hashlib
import json
import re

import pytest

from metabench import words as W
from metabench.errors import LengthError, MetabenchError
from metabench.generate import Options, iter_samples, make_sample
from metabench.lengths import Length
from metabench.reference_tokenizer import BUNDLED
from metabench.suite import parse_suite
from metabench.tasks import FAMILIES, resolve
from metabench.tasks.base import CATEGORIES
from metabench.tasks.frequent_words import zeta
from metabench.tokenizer import load_tokenizer

from families import RULER_FAMILIES


@pytest.fixture(scope="module")
def bundled():
    return load_tokenizer(BUNDLED)


def _samples(tok, tasks, lengths=(2000,), n=4, **opts):
    suite = parse_suite({"lengths": list(lengths), "samples": n, "tasks": tasks})
    return list(iter_samples(suite, tok, Options(**opts)))


def _question_part(s) -> str:
    """The sample's own task: after the one-shot example (which ends with a blank line), before the question."""
    body = s.prompt.rsplit("\nQuestion:", 1)[0]
    return body.rsplit("\n\n", 1)[-1] if s.task == "variable_tracking" else body


def solve_vt(s) -> list[str]:
    """Follow the assignments from the queried value, as a reader would."""
    value = re.search(r"assigned the value (\d+) in the text above\?*\.", s.prompt.rsplit("\nQuestion:", 1)[1]).group(1)
    text = _question_part(s)
    held = {value}
    found: list[str] = []
    for lhs, rhs in re.findall(r"VAR ([A-Z]+) = (VAR [A-Z]+|\d+)", text):
        source = rhs.removeprefix("VAR ")
        if source in held:
            held.add(lhs)
            found.append(lhs)
    return found


def word_counts(s) -> collections.Counter:
    text = _question_part(s)
    if s.task == "common_words":
        listing = text.rsplit("most often.\n", 1)[1]
        return collections.Counter(re.findall(r"(?:^| )\d+\. ([a-z]+)", listing))
    return collections.Counter(w for w in text.split("coded words.", 1)[1].split() if w != "...")


def solve_top(s, k: int) -> list[str]:
    """The k most frequent words, asserting the cut is unambiguous (no tie with rank k+1)."""
    ranked = word_counts(s).most_common()
    assert ranked[k - 1][1] > (ranked[k][1] if len(ranked) > k else 0), s.id
    return [w for w, _ in ranked[:k]]


def test_answers_solved_from_the_prompt(bytelevel):
    tasks = [{"task": "variable_tracking", "variant": v} for v in FAMILIES["variable_tracking"]]
    tasks += [{"task": "common_words", "variant": "short"}, {"task": "frequent_words"}]
    samples = _samples(bytelevel, tasks, lengths=(1500, 3000), n=3)
    assert len(samples) == 2 * 3 * len(tasks)
    for s in samples:
        if s.task == "variable_tracking":
            assert solve_vt(s) == list(s.answers) and s.target == " ".join(s.answers), s.id
            assert len(s.answers) == s.params["hops"] + 1
        elif s.task == "common_words":
            assert sorted(solve_top(s, 10)) == sorted(s.answers), s.id
        else:
            assert solve_top(s, 3) == list(s.answers) and s.target == ", ".join(s.answers), s.id


def test_each_answer_occurs_exactly_as_expected(bytelevel):
    samples = _samples(bytelevel, [{"task": "variable_tracking", "variant": "two_chains"},
                                   {"task": "common_words", "variant": "short"}, "frequent_words"], n=3)
    for s in samples:
        if s.task == "variable_tracking":
            names = s.answers
            # The first variable is named twice (assigned, then read), ..., the last once.
            assert [s.prompt.count(n) for n in names] == [2] * (len(names) - 1) + [1], s.id
            assert s.prompt.count(s.info["value"]) == 3  # its statement, the question, the answer prefix
        else:
            counts = word_counts(s)
            text = s.prompt
            for w in s.answers:
                assert text.count(w) == counts[w], (s.id, w)  # nowhere but in the list itself
            if s.task == "common_words":
                assert {counts[w] for w in s.answers} == {s.params["freq_common"]}
                assert set(counts.values()) == {s.params["freq_common"], s.params["freq_rare"]}
                example = s.prompt.rsplit("most often.\n", 1)[0]
                assert not any(w in example for w in counts), s.id  # the one-shot example shares no word


def test_frequent_words_follow_zipf():
    from metabench.tasks.frequent_words import unambiguous, zipf_counts

    counts = zipf_counts(10_000, 2.0)
    assert counts[:4] == [int(10_000 / (k * k * 1.6449340668482264)) for k in range(1, 5)]
    assert unambiguous(counts, 3)
    assert not unambiguous(zipf_counts(20, 2.0), 3)  # ranks 3 to 5 all occur once: a tie at the cut
    spec = resolve("frequent_words")
    assert unambiguous(zipf_counts(spec.minimum(), 2.0), 3) and not unambiguous(zipf_counts(spec.minimum() - 1, 2.0), 3)


def test_zeta_matches_scipy():
    special = pytest.importorskip("scipy.special")
    for alpha in (1.1, 1.5, 2.0, 3.0):
        assert zeta(alpha) == pytest.approx(float(special.zeta(alpha)), rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bundled", "bytelevel", "metaspace"])
def test_exact_lengths_from_quarter_to_twice_the_context(name, request):
    """Never over budget, >= 97% full; prompt_tokens is what a full tokenization gives."""
    tok = request.getfixturevalue(name)
    suite = parse_suite({
        "lengths": ["0.25x", "0.5x", "1x", "1.5x", "2x"], "samples": 2,
        "tasks": ["variable_tracking", {"task": "common_words", "variant": "short"}, "frequent_words"],
    })
    for s in iter_samples(suite, tok, Options(context=6144)):
        assert tok.count(s.prompt, specials=s.add_special_tokens) == s.prompt_tokens, s.id
        used = s.prompt_tokens + s.answer_budget
        assert 0.97 * s.length <= used <= s.length, (s.id, used)


def test_exact_lengths_with_a_chat_template(metaspace):
    suite = parse_suite({"lengths": [1500, 3000], "samples": 2,
                         "tasks": [{"task": "common_words", "variant": "short"}, "frequent_words", "variable_tracking"]})
    for s in iter_samples(suite, metaspace, Options(chat_template=True)):
        assert s.prompt.startswith("<s><|user|>\n") and s.add_special_tokens is False
        assert metaspace.count(s.prompt, specials=False) == s.prompt_tokens, s.id
        assert 0.97 * s.length <= s.prompt_tokens + s.answer_budget <= s.length


def test_full_tokenization_gives_the_same_samples(bytelevel):
    """The summed piece counts that size a word list agree with tokenizing every candidate in full."""
    tasks = [{"task": "common_words", "variant": "short"}, "frequent_words"]
    fast = [s.to_json() for s in _samples(bytelevel, tasks, lengths=(1800,), n=2)]
    full = [s.to_json() for s in _samples(bytelevel, tasks, lengths=(1800,), n=2, verify=True)]
    assert fast == full


def test_common_words_default_cannot_fit_256_tokens(bytelevel):
    entry = parse_suite({"lengths": [1], "tasks": ["common_words"]}).entries[0]
    with pytest.raises(LengthError, match="too short for common_words/default: its smallest word list"):
        make_sample(entry, Length("256", 256), 0, 0, bytelevel, Options())


SUITE = {"seed": 3, "lengths": [1600, 2400], "samples": 2,
         "tasks": [{"task": "variable_tracking", "variant": "two_chains"}, {"task": "common_words", "variant": "short"},
                   {"task": "frequent_words"}]}
# Pinned like tests/test_generate.py's: CONTENT depends only on the generators, FILE also
# on the fixture tokenizer. An intended change to generation updates both, saying so.
GOLDEN_CONTENT = "f58719de1d3847d2"
GOLDEN_FILE = "150ae76372375c83"


def test_golden_hashes(bytelevel, tmp_path):
    from metabench.generate import generate_to_file

    out = tmp_path / "data.jsonl"
    generate_to_file(parse_suite(SUITE), bytelevel, Options(), out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    content = json.dumps([[r["id"], r["target"], r["answers"]] for r in rows], sort_keys=True)
    assert hashlib.sha256(content.encode()).hexdigest()[:16] == GOLDEN_CONTENT
    assert hashlib.sha256(out.read_bytes()).hexdigest()[:16] == GOLDEN_FILE


def test_sample_i_does_not_depend_on_how_many(bytelevel):
    a = {s.id: s.to_json() for s in iter_samples(parse_suite({**SUITE, "samples": 1}), bytelevel, Options())}
    b = {s.id: s.to_json() for s in iter_samples(parse_suite({**SUITE, "samples": 3}), bytelevel, Options())}
    assert len(a) == 2 * 3 and set(a) <= set(b) and all(a[k] == b[k] for k in a)


def test_same_question_for_every_tokenizer(bytelevel, metaspace):
    a = [(s.id, s.answers) for s in iter_samples(parse_suite(SUITE), bytelevel, Options())]
    b = [(s.id, s.answers) for s in iter_samples(parse_suite(SUITE), metaspace, Options())]
    assert a == b


def test_variable_tracking_markers_follow_every_statement(bytelevel):
    meta_id = bytelevel.backend.token_to_id("<|meta|>")
    for s in _samples(bytelevel, [{"task": "variable_tracking", "variant": "two_chains"}], n=2, marker="<|meta|>"):
        statements = re.findall(r"VAR [A-Z]{5} = (?:VAR [A-Z]{5}|\d+) <\|meta\|>", s.prompt)
        assert len(statements) == len(s.marker_token_positions) == 2 * (s.params["hops"] + 1)
        ids = bytelevel.encode(s.prompt, specials=True)
        assert {ids[i] for i in s.marker_token_positions} == {meta_id}


def test_every_family_has_a_category():
    for family, variants in FAMILIES.items():
        for spec in variants.values():
            assert spec.category in CATEGORIES, family
    assert {FAMILIES[f]["default"].category for f in RULER_FAMILIES} == {"multi-hop tracing", "aggregation"}


@pytest.mark.parametrize("task, params, message", [
    ("common_words", {"freq_rare": 30}, "freq_common must exceed freq_rare"),
    ("common_words", {"example_words": 10}, "example_words must exceed n_common"),
    ("frequent_words", {"alpha": 1.0}, "alpha must exceed 1"),
    ("variable_tracking", {"hops": 0}, "hops must be a positive integer"),
    ("variable_tracking", {"chians": 2}, "did you mean chains"),
])
def test_spec_validation(task, params, message):
    with pytest.raises(MetabenchError, match=message):
        resolve(task, "", params)


def test_ruler_suite_has_rulers_synthetic_tasks(bytelevel):
    from metabench.suite import load_suite

    suite = load_suite("ruler")
    assert [e.name for e in suite.entries] == [
        "niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
        "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe"]
    assert suite.lengths == ("4k", "8k", "16k", "32k", "64k", "128k")
    short = parse_suite({"lengths": [1500], "samples": 2, "tasks": [
        {"task": e.task, "variant": e.variant} for e in suite.entries if e.task == "needle"]})
    for s in iter_samples(short, bytelevel, Options()):
        assert bytelevel.count(s.prompt, specials=True) == s.prompt_tokens, s.id
        body = s.prompt.split("Text:", 1)[1].rsplit("\n\n", 1)[0]
        sentences = re.split(r"(?<=\.) ", body.strip())
        if s.params.get("filler") == "noise":
            assert s.haystack == "noise-v1" and set(sentences) - {*W.NOISE_SENTENCES} == {
                x for x in sentences if "special magic" in x}
        if s.params.get("filler") == "needles":
            assert all(x.startswith("One of the special magic") for x in sentences), s.id
            assert len(sentences) > 10 and sum(s.info["queried"][0] in x for x in sentences) == 1
