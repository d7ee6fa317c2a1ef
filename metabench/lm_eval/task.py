"""MetabenchTask: lm-eval's ConfigurableTask with the few behaviours metabench needs.

The YAMLs name this class (`class: !function metabench.lm_eval.task.MetabenchTask`)
and keep the data wiring (custom_dataset, entries, doc fields). The class adds:

- per-doc `max_gen_toks` = the sample's answer budget (plus `--metadata
  thinking_tokens=N` for reasoning models). A sample of length L
  has prompt + answer budget <= L, so once L fits lm-eval's max_length
  (checked in custom_dataset) the prompt is never cut; a task-wide
  max_gen_toks would either cut prompts or waste tokens.
- a guard that the request's context IS the sample's prompt: lm-eval options
  that rewrite prompts (--apply_chat_template, --system_instruction,
  --num_fewshot) would break the exact lengths, so they are refused with the
  metabench way to get the same thing (`--metadata chat_template=true`
  renders the template inside the measured length). lm-eval's thinking
  options that do not rewrite the prompt work: `think_end_token` (the
  reasoning is taken out again by metabench, which also catches an output
  cut off before the end token); `enable_thinking` only acts through
  --apply_chat_template, and is refused with it.
- loglikelihood tasks (the `_ll` YAMLs): the request is (prompt, the doc's
  gold continuation); lm-eval's (log-probability, is greedy) become
  `greedy_match` and `answer_prob` (dataset.doc_loglik_scores).
- scores from metabench.scoring, overall and per length (`exact_match@1024`),
  aggregated with lm-eval's own `mean` (so standard errors are reported) and
  marked higher-is-better; names are known once the docs exist.
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.metrics import mean
from lm_eval.api.task import ConfigurableTask

from metabench.errors import MetabenchError
from metabench.lm_eval.dataset import doc_loglik_scores, doc_scores, metric_names


class MetabenchTask(ConfigurableTask):
    def __init__(self, config: dict[str, Any] | None = None) -> None:
        # lm-eval passes the whole YAML, `class` included, which TaskConfig does not accept.
        super().__init__(config={k: v for k, v in (config or {}).items() if k != "class"})
        names = metric_names(iter(self.test_docs()))
        self._aggregation_list = {n: mean for n in names}
        self._higher_is_better = {n: True for n in names}

    def construct_requests(self, doc: dict, ctx: Any, **kwargs: Any):
        if ctx != doc["prompt"]:
            raise MetabenchError(
                f"{self.config.task}: lm-eval changed the prompt of sample {doc['id']} (--apply_chat_template, "
                "--system_instruction, --num_fewshot or a description); metabench prompts are fitted to exact "
                "token lengths, so run without those options (for a chat template: --metadata chat_template=true)"
            )
        if self.config.output_type == "loglikelihood":
            return super().construct_requests(doc, ctx, **kwargs)
        gen = dict(self.config.generation_kwargs or {})
        if "max_gen_toks" in gen:
            raise MetabenchError(
                f"{self.config.task}: max_gen_toks is set per sample to its answer budget "
                "(prompt + budget = the sample's length); do not pass it in --gen_kwargs"
            )
        inst = super().construct_requests(doc, ctx, **kwargs)
        budget = doc.get("max_gen_toks", doc["answer_budget"])  # docs logged before thinking_tokens existed
        inst.arguments = (inst.arguments[0], {**inst.arguments[1], "max_gen_toks": int(budget)})
        return inst

    def process_results(self, doc: dict, results: list[Any]) -> dict[str, float]:
        if self.config.output_type == "loglikelihood":
            logprob, greedy = results[0]
            return doc_loglik_scores(doc, logprob, greedy)
        return doc_scores(doc, results[0])

    def aggregation(self) -> dict:
        return self._aggregation_list

    def higher_is_better(self) -> dict:
        return self._higher_is_better
