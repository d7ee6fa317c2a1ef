"""Metrics on hand-worked cases."""

import pytest

from metabench.scoring import exact_match, extract_answer, score, string_match_all, string_match_any, token_accuracy


def test_exact_match():
    assert exact_match(" 1234567.", "1234567") == 1.0
    assert exact_match("1234567\nQuestion: what else?", "1234567") == 1.0
    assert exact_match('"mango"', "mango") == 1.0
    assert exact_match("Mango", "mango") == 0.0  # case matters: copying must be exact
    assert exact_match("123456", "1234567") == 0.0
    assert exact_match("", "0") == 0.0


def test_token_accuracy():
    assert token_accuracy("a b c d", "a b c d") == 1.0
    assert token_accuracy("a x c", "a b c d") == 0.5  # a and c in place; b wrong, d missing
    assert token_accuracy("b c d", "a b c d") == 0.0  # shifted by one: nothing in place
    assert token_accuracy("a b c d e f", "a b") == 1.0  # extra words are not penalised


def test_string_match():
    refs = ["123", "456", "789"]
    assert string_match_all("the numbers are 123 and 789", refs) == pytest.approx(2 / 3)
    assert string_match_any("the numbers are 123 and 789", refs) == 1.0
    assert string_match_any("none here", refs) == 0.0
    assert string_match_all("ABC-def", ["abc-DEF"]) == 1.0
    with pytest.raises(ValueError):
        string_match_all("x", [])


def test_score_uses_the_samples_metrics():
    sample = {"metrics": ["exact_match", "token_accuracy"], "target": "a b c", "answers": ["a b c"]}
    assert score(sample, "a b x") == {"exact_match": 0.0, "token_accuracy": pytest.approx(2 / 3), "exact_match_strict": 0.0}


def test_score_keeps_the_strict_exact_match_beside():
    sample = {"metrics": ["exact_match"], "target": "4417", "answers": ["4417"]}
    assert score(sample, "The answer is: **4417**.") == {"exact_match": 1.0, "exact_match_strict": 0.0}
    assert score(sample, " 4417\nQuestion: and the next?") == {"exact_match": 1.0, "exact_match_strict": 1.0}


@pytest.mark.parametrize("wrapped", [
    "The answer is: 4417.", "answer: 4417", "Final answer: `4417`", "**4417**", "The value is **4417**.",
    '"4417"', "Here is the value you asked for:\n\n4417", "Let me look through the lists.\nThe answer is 4417.",
    "  4417  ", "*4417*",
])
def test_wrapped_answers_count(wrapped):
    assert exact_match(wrapped, "4417") == 1.0


@pytest.mark.parametrize("listed", [
    "4417, 5521", "4417 or 5521", "It is **4417** or **5521**.", "The answer is 5521.\n4417",
    "Candidates:\n4417, 5521, 6630", "The answer is: 4417 or 5521",
])
def test_candidate_lists_do_not_count(listed):
    assert exact_match(listed, "4417") == 0.0


def test_extract_answer_rules_in_order():
    assert extract_answer("Answer: X\n**Y**") == "X"  # 1: a marker on the first line
    assert extract_answer("I think **X**, surely **X**.") == "X"  # 2: one distinct bold value
    assert extract_answer("**X** or **Y**") is None
    assert extract_answer("The item is:\n\nX\nmore") == "X"  # 3: an introduction, then the line after
    assert extract_answer("I read the lists.\nSo the answer is Y") == "Y"  # 4: a marker on the last line
    assert extract_answer("X\nQuestion: Y?") == "X"  # 5: the first line
    assert extract_answer(" 1\nQuestion: and now?\nAnswer: 0") == " 1"  # a base model running on
    assert extract_answer("\n\n") == ""


def test_string_match_refuses_several_candidates_of_the_targets_shape():
    assert string_match_all("The special magic number is 6966298.", ["6966298"]) == 1.0
    assert string_match_all("6966298, 1234567, 7654321", ["6966298"]) == 0.0
    uuid, other = "420c0bcf-56d3-4fd0-9ac4-3a0e9f32854d", "03df815b-ed1a-4c2e-8a9b-0123456789ab"
    assert string_match_any(f"It is {uuid} (or maybe {other})", [uuid]) == 0.0
    assert string_match_any(f"The value is {uuid}. It is at line 12.", [uuid]) == 1.0  # 12 is not its shape
    assert string_match_all("6966298 and 6966298 again", ["6966298"]) == 1.0  # one value, said twice
    assert string_match_all("the numbers are 123 and 789", ["123", "456", "789"]) == pytest.approx(2 / 3)  # several refs: as RULER
