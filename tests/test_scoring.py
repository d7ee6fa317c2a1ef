"""Metrics on hand-worked cases."""

import pytest

from metabench.scoring import exact_match, score, string_match_all, string_match_any, token_accuracy


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
    assert score(sample, "a b x") == {"exact_match": 0.0, "token_accuracy": pytest.approx(2 / 3)}
