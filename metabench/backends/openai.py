"""OpenAI-compatible backends on the `openai` client: completions (`openai:URL`) and chat (`openai-chat:URL`).

Completions: prompts go to `POST {base}/completions` as token-id arrays
(part of the OpenAI completions API), so the server cannot re-tokenize them
differently.

Chat: `POST {base}/chat/completions` with the sample as messages (an
optional system message, then the user message). The server renders its own
chat template; the runner has measured the prompt through the --tokenizer's
template, with the same system message, so template + prompt + generation
cap fit the length, and each row records the server's usage.prompt_tokens
beside that count. Chat APIs take no text after the template's assistant
header, so chat prompts end at the question (no answer prefix). A reasoning
field (`reasoning_content`, or `reasoning` in newer vLLM) comes back apart
from the answer.

Both: greedy (temperature 0), one choice, `max_tokens` per request; the
requests of a batch are sent concurrently (`batch_size` at a time). The API
key is read from the environment variable `api_key_env` names and is given
to the client only: configs, summaries and rows record the variable's name.

Every answer is read as raw text and checked before it is used, because a
proxy or a failing server can answer 200 with anything:

- retried with exponential backoff (0.5 s, 1 s, 2 s, ...), `retries` attempts
  in all: network errors and timeouts (`timeout_s` per request), HTTP 408,
  409, 429 and 5xx, and a 200 whose body is not the JSON of a completion
  (malformed or truncated JSON, an HTML page, no or empty `choices`, a null
  `text`); after the last attempt the run stops with what the server sent;
- refused at once: 401/403 (naming the API key's variable), 404 (naming the
  served models), any other 4xx, and an answer with more than one choice.

Rows already written stay, so the same command resumes after the fix.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from metabench.backends import BackendOptions, Completion, Request, finish_reason
from metabench.errors import MetabenchError

EXCERPT = 300  # characters of a bad answer quoted in errors


class Malformed(Exception):
    """A 200 answer that is not what the API promises (retried like a network error)."""

    def __init__(self, reason: str, body: str):
        super().__init__(reason)
        self.reason, self.body = reason, body


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= EXCERPT else text[:EXCERPT] + "...")


def parse_body(body: str) -> dict[str, Any]:
    """The JSON object of an answer, or Malformed."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        kind = "an HTML page" if body.lstrip()[:1] == "<" else ("an empty body" if not body.strip() else f"not JSON ({exc})")
        raise Malformed(kind, body) from None
    if not isinstance(data, dict):
        raise Malformed(f"a JSON {type(data).__name__}, not an object", body)
    return data


def one_choice(data: dict[str, Any], body: str) -> dict[str, Any]:
    """The single choice of a completion answer; none is Malformed (retried), several an error."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise Malformed("no choices" if choices is None else "empty choices" if choices == [] else "choices is not a list", body)
    if len(choices) > 1:
        raise MetabenchError(f"the server sent {len(choices)} choices for one prompt (metabench asks for n=1): {_excerpt(body)}")
    if not isinstance(choices[0], dict):
        raise Malformed("a choice is not an object", body)
    return choices[0]


def usage(data: dict[str, Any]) -> dict[str, int | None]:
    """usage.prompt_tokens and usage.completion_tokens, where the server reports them."""
    u = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return {k: u.get(k) if isinstance(u.get(k), int) else None for k in ("prompt_tokens", "completion_tokens")}


class Server:
    """An OpenAI-compatible server: the client, its served models, and bounded retries."""

    def __init__(self, url: str, options: BackendOptions):
        if options.rope_parameters:  # a server's window and scaling are fixed when it starts
            raise MetabenchError("--rope applies to hf and vllm models; a served model's rope scaling is set where "
                                 "the server starts (vLLM: --hf-overrides and --max-model-len): drop --rope here")
        try:
            import openai
        except ImportError as exc:
            raise MetabenchError("the openai package is not installed: pip install openai") from exc
        self.openai = openai
        self.base = url.rstrip("/")
        for tail in ("/chat/completions", "/completions"):
            if self.base.endswith(tail):
                self.base = self.base[: -len(tail)]
        self.options = options
        self.key_env = options.api_key_env
        # The key lives in the client only: options, configs and summaries hold the variable's name.
        key = os.environ.get(self.key_env) or "EMPTY"
        self.client = openai.OpenAI(base_url=self.base, api_key=key, timeout=options.timeout_s, max_retries=0)
        data = self.call("/models", lambda: self.client.models.with_raw_response.list())
        models = [m for m in data.get("data") or [] if isinstance(m, dict) and m.get("id")]
        if not models:
            raise MetabenchError(f"{self.base}/models lists no model")
        self.names = [m["id"] for m in models]
        self.served = options.served_model or self.names[0]
        if self.served not in self.names:
            raise MetabenchError(f"server {self.base} does not serve {self.served!r} (it serves: {', '.join(self.names)})")
        info = next(m for m in models if m["id"] == self.served)
        self.context = info.get("max_model_len")
        self.info = {k: info.get(k) for k in ("id", "root", "max_model_len", "owned_by")}

    def call(self, path: str, send: Callable[[], Any], check: Callable[[dict, str], Any] = lambda d, b: d) -> Any:
        """send() a request, parse and check() its answer; retry what a retry can fix."""
        oa = self.openai
        url = self.base + path
        delay, last, kind = 0.5, "", ""
        for attempt in range(self.options.retries):
            try:
                body = send().text
                return check(parse_body(body), body)
            except oa.APIStatusError as exc:
                status, detail = exc.status_code, _excerpt(exc.response.text)
                if status in (401, 403):
                    raise MetabenchError(
                        f"{url} refused the request with HTTP {status} ({detail}): set the environment variable "
                        f"{self.key_env} to a key it accepts (--api-key-env names another variable)") from None
                if status == 404:
                    served = f"; it serves: {', '.join(self.names)}" if getattr(self, "names", None) else ""
                    raise MetabenchError(f"{url} answered HTTP 404 ({detail}){served}; check the URL and --served-model") from None
                if status < 500 and status not in (408, 409, 429):
                    raise MetabenchError(f"{url} answered HTTP {status}: {detail}") from None
                last, kind = f"HTTP {status}: {detail}", "status"
            except oa.APITimeoutError:
                last, kind = f"no answer within {self.options.timeout_s:g} s", "timeout"
            except oa.APIConnectionError as exc:
                cause = exc.__cause__ or exc
                # ConnectError: nobody listening; anything else (a body cut short, a reset): a broken answer
                kind = "connection" if type(cause).__name__ in ("ConnectError", "ConnectTimeout") else "malformed"
                last = f"{type(cause).__name__}: {cause}"
            except Malformed as exc:
                last, kind = f"{exc.reason}: {_excerpt(exc.body)}", "malformed"
            if attempt + 1 < self.options.retries:
                time.sleep(delay)
                delay *= 2
        n = self.options.retries
        if kind == "connection":
            raise MetabenchError(f"cannot reach {url} after {n} attempts ({last}); is a server listening there?")
        if kind == "timeout":
            raise MetabenchError(f"{url}: {last}, {n} times; raise --request-timeout or lower --batch-size")
        if kind == "malformed":
            raise MetabenchError(f"{url} sent no valid answer in {n} attempts; the last was {last}")
        raise MetabenchError(f"{url} failed {n} times, the last with {last}; the server's log has the cause")

    def describe(self) -> dict[str, Any]:
        return {"model": self.base, "served_model": self.served, "server": self.info}


def concurrently(one: Callable[[Request], Completion], requests: list[Request], workers: int) -> list[Completion]:
    """one() over the requests, `workers` at a time; after a failure, requests not yet sent are not sent."""
    failed = threading.Event()

    def guarded(r: Request) -> Completion | None:
        if failed.is_set():
            return None
        try:
            return one(r)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(guarded, requests))  # type: ignore[arg-type]  (None only after a raise)


class OpenAIBackend:
    kind = "openai"

    def __init__(self, url: str, options: BackendOptions, tokenizer_path: str | None):
        if not tokenizer_path:
            raise MetabenchError("openai: pass --tokenizer DIR (the served model's tokenizer) to measure lengths")
        self.tokenizer_path = tokenizer_path
        self.options = options
        self.server = Server(url, options)
        self.model = self.server.base
        self.served = self.server.served
        self.context = self.server.context

    def _one(self, r: Request) -> Completion:
        def check(data: dict, body: str) -> Completion:
            choice = one_choice(data, body)
            if not isinstance(choice.get("text"), str):
                raise Malformed(f"text is {choice.get('text')!r}, not a string", body)
            ids = choice.get("token_ids")
            return Completion(choice["text"], list(ids) if isinstance(ids, list) else [],
                              finish_reason(choice.get("finish_reason")), **usage(data))

        send = lambda: self.server.client.completions.with_raw_response.create(  # noqa: E731
            model=self.served, prompt=r.token_ids, max_tokens=r.max_new_tokens, temperature=0.0, n=1,
            extra_body={"return_token_ids": True})
        return self.server.call("/completions", send, check)

    def generate(self, requests: list[Request]) -> list[Completion]:
        return concurrently(self._one, requests, self.options.batch_size)

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai", **self.server.describe()}

    def close(self) -> None:
        self.server.client.close()


class OpenAIChatBackend(OpenAIBackend):
    kind = "openai-chat"

    def _one(self, r: Request) -> Completion:
        if not r.messages:
            raise ValueError("openai-chat: a request without messages")  # the runner always sets them

        def check(data: dict, body: str) -> Completion:
            choice = one_choice(data, body)
            message = choice.get("message")
            if not isinstance(message, dict):
                raise Malformed("a choice without a message", body)
            content = message.get("content")
            reasoning = message.get("reasoning_content") or message.get("reasoning")
            if content is None and isinstance(reasoning, str):
                content = ""  # it thought until the cap and never answered
            if not isinstance(content, str):
                raise Malformed(f"message content is {content!r}, not a string", body)
            return Completion(content, [], finish_reason(choice.get("finish_reason")), **usage(data),
                              reasoning=reasoning if isinstance(reasoning, str) else None)

        send = lambda: self.server.client.chat.completions.with_raw_response.create(  # noqa: E731
            model=self.served, messages=r.messages, max_completion_tokens=r.max_new_tokens, temperature=0.0, n=1)
        return self.server.call("/chat/completions", send, check)

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai-chat", **self.server.describe()}
