"""results.py: the row every writer builds, as documented, and the summary's cells and answer outcomes."""

from __future__ import annotations

import dataclasses
import re

import metabench.results as results
from metabench.generate import Options, make_sample
from metabench.lengths import parse_length
from metabench.results import PROMPT_EXCERPT, outcome_counts, result_row, summarize_rows, truncation_warnings
from metabench.scoring import score, scored_metrics
from metabench.suite import parse_suite


def _documented_row_keys() -> set[str]:
    block = results.__doc__.split("A row (results.jsonl):")[1].split("summary.json:")[0]
    return set(re.findall(r'"(\w+)"', block))


def _sample(bytelevel, task: str, length: int):
    suite = parse_suite({"lengths": [length], "tasks": [task]})
    return make_sample(suite.entries[0], parse_length(str(length), None), 2, suite.seed, bytelevel, Options())


def test_a_row_holds_the_documented_fields(bytelevel):
    s = _sample(bytelevel, "needle", 600)
    fields = dataclasses.asdict(s)
    row = result_row(fields, s.target, score(fields, s.target), output_tokens=5, latency_s=0.123456)
    assert set(row) == _documented_row_keys()
    assert row["scores"] == {m: 1.0 for m in scored_metrics(s.metrics)} and row["primary"] == s.metrics[0]
    assert row["depth"] == s.depth is not None and row["latency_s"] == 0.1235
    assert len(s.prompt) > 2 * PROMPT_EXCERPT
    assert row["prompt_head"] == s.prompt[:PROMPT_EXCERPT] and row["prompt_tail"] == s.prompt[-PROMPT_EXCERPT:]


def test_a_short_prompt_is_not_kept_twice_and_unknowns_stay_null(bytelevel):
    s = _sample(bytelevel, "parity", 120)
    fields = dataclasses.asdict(s)
    assert len(s.prompt) <= PROMPT_EXCERPT
    row = result_row(fields, "no", score(fields, "no"), output_tokens=None, latency_s=None)
    assert row["prompt_head"] == s.prompt and row["prompt_tail"] == ""
    assert row["output_tokens"] is None and row["latency_s"] is None


def test_cells_per_length_and_depth(bytelevel):
    rows = []
    for i, (depth, right) in enumerate([(0.0, 1.0), (1.0, 0.0), (1.0, 1.0)]):
        rows.append({"entry": "needle/single", "task": "needle", "variant": "single", "length": 600,
                     "length_label": "600", "depth": depth, "primary": "exact_match", "chance": 0.0,
                     "scores": {"exact_match": right}})
    cells = summarize_rows(rows)
    assert [(c["depth"], c["n"]) for c in cells] == [(None, 3), (0.0, 1), (1.0, 2)]
    assert abs(cells[0]["metrics"]["exact_match"]["mean"] - 2 / 3) < 1e-12



def _row(i: int, finish: str | None, prediction: str = "x", server: int | None = None) -> dict:
    row = {"id": f"e/1x/{i}", "entry": "e", "task": "t", "variant": "v", "length": 100, "length_label": "1x",
           "depth": None, "primary": "exact_match", "scores": {"exact_match": 1.0}, "prediction": prediction,
           "prompt_tokens": 90 + i, "server_prompt_tokens": server}
    if finish is not None:
        row["finish_reason"] = finish
    return row


def test_counts_by_hand():
    rows = [_row(0, "stop"), _row(1, "length", ""), _row(2, "length"), _row(3, "error", " \n"), _row(4, "stop")]
    c = outcome_counts(rows)
    assert (c["truncated"], c["errors"], c["empty"]) == (2, 1, 2)
    assert c["prompt_tokens"] == {"intended": 92.0, "measured": None}


def test_measured_prompt_tokens_are_the_servers_mean():
    rows = [_row(0, "stop", server=95), _row(1, "stop", server=97), _row(2, "stop")]
    assert outcome_counts(rows)["prompt_tokens"] == {"intended": 91.0, "measured": 96.0}


def test_rows_without_finish_reasons_count_none_not_zero():
    c = outcome_counts([_row(0, None), _row(1, None, "")])  # e.g. imported from lm-eval
    assert c["truncated"] is None and c["errors"] is None and c["empty"] == 1


def test_more_than_a_fifth_cut_off_warns_naming_the_option():
    ok = summarize_rows([_row(i, "length" if i == 0 else "stop") for i in range(5)])  # exactly a fifth
    assert truncation_warnings(ok) == []
    bad = summarize_rows([_row(i, "length" if i < 2 else "stop") for i in range(5)])
    (line,) = truncation_warnings(bad)
    assert line.startswith("2 of 5 answers of e @ 1x were cut off") and line.endswith("raise --max-tokens")


def test_a_summary_missing_a_cell_of_the_rows_is_refused(bytelevel):
    """check_counts refuses a summary.json that leaves out a cell the rows hold, not only one that miscounts."""
    import pytest

    from metabench.errors import MetabenchError

    rows = [{"id": f"e/1x/{i}", "entry": "e", "length_label": "1x", "depth": None} for i in range(3)]
    rows.append({"id": "f/1x/0", "entry": "f", "length_label": "1x", "depth": None})
    full = {"cells": [{"entry": "e", "length_label": "1x", "depth": None, "n": 3},
                      {"entry": "f", "length_label": "1x", "depth": None, "n": 1}]}
    results.check_counts(full, rows, "run")
    with pytest.raises(MetabenchError, match="no cell for f @ 1x"):
        results.check_counts({"cells": full["cells"][:1]}, rows, "run")
    with pytest.raises(MetabenchError, match="no cell for e @ 1x"):
        results.check_counts({"cells": []}, rows, "run")
