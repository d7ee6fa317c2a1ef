"""needle:absent / absent_control (abstention) and needle:twohop: answers read off the
prompt by independent solvers, exact lengths on three tokenizers, golden hashes."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from metabench.generate import Options, iter_samples
from metabench.reference_tokenizer import BUNDLED
from metabench.suite import parse_suite
from metabench.tasks import resolve
from metabench.tasks.twohop import TEMPLATES
from metabench.tokenizer import load_tokenizer

ENTRIES = [{"task": "needle", "variant": v} for v in ("absent", "absent_control", "twohop")]
GOLDEN_CONTENT = "5be6d4d3c6f9b4dd"
GOLDEN_FILE = "24e382db69d9cdb1"
STOPWORDS = {"the", "a", "an", "of", "in", "is", "are", "to", "on", "that", "its", "with", "which", "where", "by",
             "under", "every", "was", "must", "be", "question", "answer"}


@pytest.fixture(scope="module")
def bundled():
    return load_tokenizer(BUNDLED)


def _samples(tok, lengths=(1500,), n=6, entries=ENTRIES, **opts):
    suite = parse_suite({"lengths": list(lengths), "samples": n, "tasks": entries, "seed": 3})
    return list(iter_samples(suite, tok, Options(**opts)))


def _body(s) -> str:
    return s.prompt.split("Text:", 1)[1].rsplit("\n\n", 1)[0]


def solve_absent(s) -> str:
    key = s.info["queried"][0]
    found = re.findall(rf"numbers for {re.escape(key)} is: (\d+)\.", _body(s))
    return found[0] if found else "none"


def solve_twohop(s) -> str:
    """Find the key's bridge by the bridge templates, then the value by the answer templates."""
    body, key = _body(s), s.info["key"]
    for bridge_t, answer_t, _ in TEMPLATES:
        m = re.search(re.escape(bridge_t.strip()).replace(re.escape("{a}"), re.escape(key))
                      .replace(re.escape("{b}"), r"(\S+?)"), body)
        if m:
            pattern = re.escape(answer_t.strip()).replace(re.escape("{b}"), re.escape(m.group(1)))
            return re.search(pattern.replace(re.escape("{v}"), r"(\d+)"), body).group(1)
    raise AssertionError(f"no bridge fact for {key} in {s.id}")


def test_answers_follow_from_the_prompt(bytelevel):
    samples = _samples(bytelevel)
    assert len(samples) == 18
    for s in samples:
        want = solve_twohop(s) if s.variant == "twohop" else solve_absent(s)
        assert want == s.target == s.answers[0], s.id


def test_absent_key_is_nowhere_but_its_near_miss_is(bytelevel):
    for s in _samples(bytelevel, entries=ENTRIES[:2]):
        key, near = s.info["queried"][0], s.info["near_miss"]
        body = _body(s)
        assert (key in body) == s.info["present"], s.id
        assert near in body and near.split("-")[0] == key.split("-")[0], s.id
        assert 'answer "none"' in s.prompt and s.metrics[0] == "exact_match"
        assert len(re.findall(r"special magic numbers for \S+ is: \d+\.", body)) == 4
        assert s.chance == pytest.approx(1 / 5)
    assert resolve("needle", "absent", {"keys": 9}).chance() == pytest.approx(0.1)


def test_twohop_question_shares_no_content_word_with_the_answer_fact():
    def words(text: str) -> set[str]:
        return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOPWORDS}

    for bridge_t, answer_t, question_t in TEMPLATES:
        fixed_q = words(question_t.replace("{a}", ""))
        assert not fixed_q & words(answer_t.replace("{b}", "").replace("{v}", "")), question_t
        assert "{a}" in bridge_t and "{b}" in bridge_t and "{b}" in answer_t


def test_twohop_sample_question_and_keys(bytelevel):
    for s in _samples(bytelevel, entries=ENTRIES[2:], n=8):
        question = s.prompt.rsplit("Question:", 1)[1]
        key_words, bridge_words = set(s.info["key"].split("-")), set(s.info["bridge"].split("-"))
        assert not key_words & bridge_words and s.info["bridge"] not in question, s.id
        # Three chains: every value-bearing fact is a candidate, only the bridge tells which.
        assert len(re.findall(r"\b\d{7}\b", _body(s))) == 3, s.id


def test_twohop_records_both_depths(bytelevel):
    spec = resolve("needle", "twohop")
    pairs = spec.pairs()
    assert len(pairs) == 20 and all(a != b for a, b in pairs)
    for s in _samples(bytelevel, lengths=(4000,), entries=ENTRIES[2:], n=12):
        want = dict(zip(("answer", "bridge"), pairs[s.index % len(pairs)]))
        assert s.info["depths"] == want and s.depth == want["answer"]
        got = s.info["depths_actual"]
        assert got["answer"] == s.depth_actual
        for name in ("answer", "bridge"):
            assert abs(got[name] - want[name]) <= 0.03, (s.id, name)  # slots are placed by units, not tokens
        bridge_at = s.prompt.index(f"{s.info['key']} ")
        answer_at = s.prompt.index(s.target)
        assert (bridge_at < answer_at) == (want["bridge"] < want["answer"]), s.id
    with pytest.raises(ValueError, match="bridge_depths"):
        resolve("needle", "twohop", {"depths": [0.5], "bridge_depths": [0.5]})


@pytest.mark.parametrize("name", ["bytelevel", "metaspace", "bundled"])
def test_exact_lengths_from_quarter_to_twice_the_context(request, name):
    tok = request.getfixturevalue(name)
    suite = parse_suite({"lengths": ["0.25x", "0.5x", "1x", "1.5x", "2x"], "samples": 2, "tasks": ENTRIES})
    for s in iter_samples(suite, tok, Options(context=2048)):
        assert tok.count(s.prompt, specials=s.add_special_tokens) == s.prompt_tokens, s.id
        used = s.prompt_tokens + s.answer_budget
        assert 0.97 * s.length <= used <= s.length, (s.id, used)


def test_sample_i_does_not_depend_on_how_many(bytelevel):
    few = {s.id: s.to_json() for s in _samples(bytelevel, n=2)}
    many = {s.id: s.to_json() for s in _samples(bytelevel, n=5)}
    assert len(few) == 6 and all(many[k] == v for k, v in few.items())


def _content(samples) -> str:
    """What the generators decide, tokenizer aside (measured depths depend on the filler)."""
    rows = [[s.id, s.target, s.answers, {k: v for k, v in s.info.items() if k != "depths_actual"}, s.depth]
            for s in samples]
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def test_golden_hashes(bytelevel, metaspace):
    samples = _samples(bytelevel, n=4)
    assert _content(samples) == _content(_samples(metaspace, n=4)) == GOLDEN_CONTENT
    file = "".join(s.to_json() + "\n" for s in samples)
    assert hashlib.sha256(file.encode()).hexdigest()[:16] == GOLDEN_FILE
