"""OpenAI-compatible completions backend (a `vllm serve` endpoint, or any server that takes token ids).

Prompts go to `POST {base}/completions` as token-id arrays (part of the
OpenAI completions API), so the server cannot re-tokenize them differently.
Greedy: temperature 0, `max_tokens` per request; requests of a batch are
sent concurrently. Network errors and 5xx/429 answers are retried with
exponential backoff (0.5 s, 1 s, 2 s, ...) `retries` times, then the run
stops with a clear error; rows already written stay.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from metabench.backends import BackendOptions, Completion, Request
from metabench.errors import MetabenchError


class OpenAIBackend:
    kind = "openai"

    def __init__(self, url: str, options: BackendOptions, tokenizer_path: str | None):
        self.base = url.rstrip("/")
        if self.base.endswith("/completions"):
            self.base = self.base[: -len("/completions")]
        self.model = self.base
        self.options = options
        if not tokenizer_path:
            raise MetabenchError("openai: pass --tokenizer DIR (the served model's tokenizer) to measure lengths")
        self.tokenizer_path = tokenizer_path
        models = self._call("GET", "/models", None)
        data = models.get("data") or []
        if not data:
            raise MetabenchError(f"{self.base}/models lists no model")
        names = [m.get("id") for m in data]
        self.served = options.served_model or names[0]
        if self.served not in names:
            raise MetabenchError(f"server {self.base} does not serve {self.served!r} (it serves: {', '.join(names)})")
        info = next(m for m in data if m.get("id") == self.served)
        self.context = info.get("max_model_len")
        self.native_context = self.context
        self.server_info = {k: info.get(k) for k in ("id", "root", "max_model_len", "owned_by")}

    def _call(self, method: str, path: str, body: dict | None) -> dict[str, Any]:
        url = self.base + path
        data = json.dumps(body).encode() if body is not None else None
        delay = 0.5
        last = ""
        for attempt in range(self.options.retries):
            req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.options.timeout_s) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:500]
                if exc.code < 500 and exc.code != 429:
                    raise MetabenchError(f"{url} answered {exc.code}: {detail}") from None
                last = f"HTTP {exc.code}: {detail}"
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                last = str(getattr(exc, "reason", exc))
            if attempt + 1 < self.options.retries:
                time.sleep(delay)
                delay *= 2
        raise MetabenchError(f"cannot reach {url} after {self.options.retries} attempts ({last}); is the server running?")

    def _one(self, r: Request) -> Completion:
        body = {"model": self.served, "prompt": r.token_ids, "max_tokens": r.max_new_tokens, "temperature": 0.0,
                "return_token_ids": True}
        out = self._call("POST", "/completions", body)
        choice = out["choices"][0]
        return Completion(choice.get("text", ""), list(choice.get("token_ids") or []))

    def generate(self, requests: list[Request]) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=max(1, self.options.batch_size)) as pool:
            return list(pool.map(self._one, requests))

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai", "model": self.base, "served_model": self.served, "server": self.server_info}

    def close(self) -> None:
        pass
