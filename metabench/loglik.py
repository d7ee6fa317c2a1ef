"""Log-likelihood scoring: each sample's gold answer scored under the model, nothing generated.

    metabench run --scoring loglik ...      metabench.evaluate(..., scoring="loglik")

Training loops evaluate this way (Levanter's and OLMo's in-loop evaluation
take only log-likelihood requests): one forward pass over prompt + gold
answer per sample, no decoding loop, no answer parsing.

The gold answer is the sample's `target`, written after the prompt the way
the model would write it: `" " + target` when the prompt ends in a
non-space character (every task's answer prefix, "Answer:", ends so), the
target itself after whitespace (a chat template's generation prompt ends
with a newline). This is lm-eval's `target_delimiter`, so the `_ll` lm-eval
tasks score the same tokens. The answer's tokens are those of prompt +
answer tokenized together, past the prompt's own (lm-eval's rule, which
keeps a SentencePiece word boundary right); where the joint tokenization
moves the boundary, the answer is tokenized on its own.

Metrics (row `scores`, every value in [0, 1]):
- `greedy_match` (primary): 1 when every answer token is the model's argmax
  given the gold tokens before it, i.e. greedy decoding would begin with
  exactly the gold answer.
- `answer_prob`: the per-token geometric-mean probability of the answer,
  exp(mean log-probability per token). The mean log-probability itself is
  the row's `answer_logprob`.

A row's `prediction` is the argmax tokens at the answer's positions (what
greedy decoding would write while it follows the gold prefix), so the report's
sample browser shows where the model diverged. There is no finish reason
(nothing was generated): `finish_reason` and `max_new_tokens` are null.

Only samples with one gold answer can be scored this way: a task that asks
for a set of answers in any order (variable tracking, common and frequent
words, multi-value needles) has no single continuation, and is refused.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from metabench.backends import Loglik, LoglikRequest
from metabench.errors import MetabenchError
from metabench.results import result_row
from metabench.schema import Sample
from metabench.tokenizer import Tokenizer

METRICS = ("greedy_match", "answer_prob")


def continuation(prompt: str, target: str) -> str:
    """The gold answer as written after `prompt`: a space first unless the prompt already ends in whitespace."""
    return target if not prompt or prompt[-1].isspace() else " " + target


def answer_ids(tok: Tokenizer, prompt: str, target: str) -> list[int]:
    """The answer's tokens: prompt + answer tokenized together, past the prompt's own tokens."""
    answer = continuation(prompt, target)
    context = tok.encode(prompt)
    whole = tok.encode(prompt + answer)
    if whole[: len(context)] == context and len(whole) > len(context):
        return whole[len(context) :]
    return tok.encode(answer)


def single_answer(entry: str, answers: Sequence[str]) -> None:
    """Refuse an entry whose answers form a set in any order: it has no one continuation to score."""
    if len(answers) != 1:
        raise MetabenchError(f"--scoring loglik scores one gold answer, but {entry} asks for "
                             f"{len(answers)} answers in any order; run it with --scoring generate")


def request(tok: Tokenizer, sample: Sample, prompt_ids: list[int]) -> LoglikRequest:
    """The loglik request of one sample, whose exact prompt tokens the runner already checked."""
    single_answer(sample.entry, sample.answers)
    ids = answer_ids(tok, sample.prompt, sample.target)
    if len(ids) > sample.answer_budget:  # the length was fitted with this budget: never pass the window
        raise RuntimeError(f"{sample.id}: the gold answer has {len(ids)} tokens, above its budget {sample.answer_budget}")
    return LoglikRequest(prompt_ids, ids)


def row(sample: Sample, req: LoglikRequest, out: Loglik, latency: float, tok: Tokenizer) -> dict[str, Any]:
    """The result row of one scored answer (results.py's format; see the module docstring for the fields)."""
    mean = sum(out.logprobs) / len(out.logprobs)
    scores = {"greedy_match": float(out.argmax_ids == req.answer_ids), "answer_prob": math.exp(mean)}
    fields = {**dataclasses.asdict(sample), "metrics": list(METRICS)}
    prediction = tok.backend.decode(out.argmax_ids, skip_special_tokens=True)
    return result_row(fields, prediction, scores, len(req.answer_ids), latency, answer_logprob=mean)
