"""Chat templates rendered with jinja2 exactly as transformers renders them.

transformers compiles a tokenizer's `chat_template` in a sandboxed jinja2
environment with `trim_blocks` and `lstrip_blocks`, the `loopcontrols`
extension, a `tojson` filter that does not escape HTML, and the globals
`raise_exception` and `strftime_now`; it renders with `messages`,
`add_generation_prompt`, `tools`, `documents` and the tokenizer's named
special tokens (`bos_token`, `eos_token`, ...). Doing the same here lets
metabench wrap prompts without importing transformers (seconds of start-up);
tests compare every fixture template against `apply_chat_template`.

Templates using transformers' `{% generation %}` tag (assistant masks) are
not plain jinja2: tokenizer.py reads such folders through transformers.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any, Mapping, Sequence


@functools.lru_cache(maxsize=8)
def compile_template(source: str) -> Any:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def render(
    source: str,
    messages: Sequence[Mapping[str, str]],
    special_tokens: Mapping[str, str],
    add_generation_prompt: bool = True,
) -> str:
    """The text `source` makes of `messages`, as `tokenizer.apply_chat_template(..., tokenize=False)` would."""
    return compile_template(source).render(
        messages=list(messages), tools=None, documents=None, add_generation_prompt=add_generation_prompt,
        **special_tokens,
    )
