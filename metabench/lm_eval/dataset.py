"""The data side of the lm-eval tasks: `custom_dataset`, sample <-> doc, per-length scores.

`samples(**kwargs)` is what the YAMLs name as `custom_dataset`. It reads the
settings, refuses lengths lm-eval would truncate, and generates the samples
with metabench's own generator (the same `make_sample` as `metabench
generate`), so an lm-eval doc is a metabench sample: same prompt, target and
answer budget, byte for byte.

Doc order is index-major (every entry and length at index 0, then index 1,
...), so `--limit N` keeps whole rounds instead of the first entry's first
length only.

Reasoning models: a doc's `max_gen_toks` is its answer budget plus
`--metadata thinking_tokens=N`, and the prediction's reasoning (`<think>`
... `</think>`, or all of it when cut off while thinking) is taken out
before scoring, whether or not lm-eval's `think_end_token` already did
(lm-eval keeps the whole output when that token never comes).

Log-likelihood tasks (`metabench_recall_ll`, ..., group `metabench_all_ll`;
their YAMLs set `scoring: loglik`): a doc also carries `continuation`, the
gold answer as written after the prompt, and `answer_tokens`, its length in
tokens (metabench/loglik.py: the same rule lm-eval uses to split context and
continuation). lm-eval returns the continuation's summed log-probability and
whether it was the greedy one; `doc_loglik_scores` turns those into
`greedy_match` and `answer_prob`, the scores `metabench run --scoring loglik`
writes. Tasks whose answers form a set (variable tracking, common and
frequent words, multi-value and multi-query needles) have no `_ll` variant.

Scores per doc (`doc_scores`): every metric the sample names, under its plain
name (aggregated over all lengths) and under `metric@tokens`, e.g.
`exact_match@1024`. A doc reports only its own length's keys; lm-eval
collects each key's values from the docs that report it, so a length's mean
is over that length's samples only. RULER instead reports every length for
every doc, with -1 for the others, and filters the -1s out in a custom
aggregation; with nothing to filter, lm-eval's own `mean` (and its standard
error) applies unchanged. lm-eval 0.4.13 logs a warning that metrics were
scored on different numbers of documents: that is this design, and the group
`metabench_all` aggregates `exact_match`, which every doc reports, so its
size weights are right.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Mapping

from metabench import loglik
from metabench.generate import Options, check_lengths, make_sample
from metabench.lengths import Length
from metabench.lm_eval.settings import Settings, check_fits, check_specials, read_settings
from metabench.reasoning import Thinking, split
from metabench.schema import Sample, dumps
from metabench.scoring import score, scored_metrics
from metabench.suite import Suite, parse_suite
from metabench.tokenizer import Tokenizer, load_tokenizer

JSON_FIELDS = ("params", "info")  # free-form dicts: kept as JSON text so every doc has one Arrow schema


def metric_key(metric: str, length: int) -> str:
    return f"{metric}@{length}"


def to_doc(sample: Sample, thinking_tokens: int = 0, tok: Tokenizer | None = None) -> dict[str, Any]:
    """The sample's fields, plus max_gen_toks: its answer budget and the thinking allowance; with `tok` (loglik
    tasks), the gold continuation and its token count."""
    doc = asdict(sample)
    doc["max_gen_toks"] = sample.answer_budget + thinking_tokens
    if tok is not None:
        loglik.single_answer(sample.entry, sample.answers)
        doc["continuation"] = loglik.continuation(sample.prompt, sample.target)
        doc["answer_tokens"] = len(loglik.answer_ids(tok, sample.prompt, sample.target))
    for k in JSON_FIELDS:
        doc[k] = dumps(doc[k])
    return doc


def from_doc(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A doc (as lm-eval logs it) back to the sample's fields."""
    out = dict(doc)
    for k in JSON_FIELDS:
        if isinstance(out.get(k), str):
            out[k] = json.loads(out[k])
    return out


def doc_scores(doc: Mapping[str, Any], prediction: str) -> dict[str, float]:
    """Overall and per-length scores of one prediction's answer (reasoning taken out), with metabench's metrics."""
    scores = score(doc, split(prediction, None, Thinking(), doc["prompt"]).answer)
    return {**scores, **{metric_key(m, int(doc["length"])): v for m, v in scores.items()}}


def doc_loglik_scores(doc: Mapping[str, Any], logprob: float, greedy: bool) -> dict[str, float]:
    """Overall and per-length scores of a loglik doc from lm-eval's (summed log-probability, is greedy)."""
    scores = {"greedy_match": float(greedy), "answer_prob": math.exp(logprob / doc["answer_tokens"])}
    return {**scores, **{metric_key(m, int(doc["length"])): v for m, v in scores.items()}}


def metric_names(docs: Iterator[Mapping[str, Any]]) -> list[str]:
    """Every key `doc_scores` (or `doc_loglik_scores`) can return for these docs: metrics first, then per length
    ascending."""
    metrics: dict[str, None] = {}
    lengths: set[int] = set()
    for d in docs:
        metrics.update(dict.fromkeys(loglik.METRICS if "continuation" in d else scored_metrics(d["metrics"])))
        lengths.add(int(d["length"]))
    return [*metrics, *(metric_key(m, n) for m in metrics for n in sorted(lengths))]


def iter_docs(suite: Suite, lengths: tuple[Length, ...], tok: Tokenizer, opts: Options,
              thinking: int = 0, loglik_docs: bool = False) -> Iterator[dict[str, Any]]:
    rounds = max(e.samples for e in suite.entries)
    for i in range(rounds):
        for entry in suite.entries:
            if i < entry.samples:
                for length in lengths:
                    sample = make_sample(entry, length, i, suite.seed, tok, opts)
                    yield to_doc(sample, thinking, tok if loglik_docs else None)


def build(settings: Settings, task: str = "metabench") -> list[dict[str, Any]]:
    check_fits(settings, task)
    tok = load_tokenizer(settings.tokenizer)
    check_specials(settings, tok, task)
    suite = parse_suite(settings.suite, f"{task} (lm-eval)")
    opts = Options(context=settings.context, marker=settings.marker, chat_template=settings.chat_template)
    check_lengths(suite, tok, opts)  # a length too short for an entry fails before any generation
    return list(iter_docs(suite, settings.lengths, tok, opts, settings.thinking_tokens, settings.loglik))


def samples(**kwargs: Any) -> dict[str, Any]:
    """custom_dataset for the metabench YAMLs: {"test": datasets.Dataset} of metabench samples."""
    import datasets

    settings = read_settings(kwargs)
    task = Path(str(kwargs.get("config_source", "metabench"))).stem  # our YAMLs are named after their task
    return {"test": datasets.Dataset.from_list(build(settings, task))}
