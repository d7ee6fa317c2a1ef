"""suite.py: bundled suites load, and a command line's overrides merge as documented."""

from __future__ import annotations

import pytest

from metabench.errors import MetabenchError
from metabench.suite import bundled_suites, customize, load_suite, parse_suite

SUITE = {"name": "s", "seed": 1, "lengths": ["1x"], "samples": 5,
         "tasks": [{"task": "needle", "variant": "multikey", "samples": 7}, "parity"]}


def test_bundled_suites_load():
    assert {"default", "smoke", "paper"} <= set(bundled_suites())
    for name in bundled_suites():
        suite = load_suite(name)
        assert suite.entries and suite.lengths
    default = load_suite("default")
    assert {e.task for e in default.entries} == {"list_recall", "kv_recall", "copy", "needle", "segment_count", "parity"}
    assert default.lengths == ("0.25x", "0.5x", "1x", "1.5x", "2x")


def test_tasks_replace_entries_and_keep_their_family_samples():
    s = customize(parse_suite(SUITE), tasks=["needle:single", "copy"])
    assert [(e.name, e.samples) for e in s.entries] == [("needle/single", 7), ("copy/short", 7)]


def test_params_merge_generic_then_family_over_each_spec():
    base = parse_suite(SUITE)
    s = customize(base, params=["depths=0,1", "needle.keys=6", "parity.n_bits=3"], seed=9, lengths=("2x",), samples=2)
    needle, parity = s.entries
    assert needle.spec.depths == (0.0, 1.0) and needle.spec.keys == 6
    assert needle.spec.queries == base.entries[0].spec.queries  # untouched fields stay the variant's
    assert parity.spec.n_bits == 3 and parity.spec.depths == (0.0, 1.0) and (s.seed, s.lengths, [e.samples for e in s.entries]) == (9, ("2x",), [2, 2])
    assert customize(base) == base


@pytest.mark.parametrize("params, message", [
    (["keys"], "write KEY=VALUE"),
    (["copy.span=3"], "task copy is not in this run"),
    (["kyes=3"], "no task in this run has that parameter"),
])
def test_bad_params_say_what_to_fix(params, message):
    with pytest.raises(MetabenchError, match=message):
        customize(parse_suite(SUITE), params=params)
