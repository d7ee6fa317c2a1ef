"""The evaluated model's tokenizer, seen through the few operations metabench needs.

Lengths are measured with the model's own tokenizer, loaded from a local folder
(never from a hub). When the folder has a `tokenizer.json` and its
tokenizer_config.json names the generic fast class (`PreTrainedTokenizerFast`
or `TokenizersBackend`, or none), it is read with the `tokenizers` library
directly, settled the way transformers' `TokenizersBackend` settles it:

- the named special tokens (bos, eos, unk, pad, ...) and the additional ones
  come from tokenizer_config.json (then special_tokens_map.json); any not in
  the vocabulary yet is added as a special token;
- BOS/EOS come from tokenizer.json's post-processor alone: with a
  tokenizer.json, transformers drops the config's `add_bos_token` and
  `add_eos_token` (5.x, checked by the tests);
- the chat template (chat_template.jinja, else the config's `chat_template`)
  is rendered with jinja2 as transformers does (metabench.chat_template).

This skips importing transformers, most of a short `metabench generate`'s
time. Anything else (a model-specific tokenizer class, no tokenizer.json,
named template folders) goes through transformers' `AutoTokenizer`, which is
exactly how the evaluated model will tokenize. Tests check equal counts and
equal chat renderings against AutoTokenizer on every fixture tokenizer.

Counting convention: `count(text, specials=True)` includes the special tokens
the tokenizer adds around a prompt (a BOS, say), since they occupy the
model's context too. Encoding never truncates or pads.

The fingerprint is a hash of the tokenizer files' contents, so data generated
with two copies of the same tokenizer is recognised as the same.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from metabench.errors import MetabenchError

# Files whose contents define how text becomes tokens (and the chat template).
_FINGERPRINT_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)


SMALL_BATCH = 16  # texts counted one by one; more go to the parallel batch encoder


@dataclass
class Tokenizer:
    """A loaded tokenizer: Rust backend for speed, the transformers object for templates."""

    path: str
    backend: Any  # tokenizers.Tokenizer
    hf: Any = None  # transformers.PreTrainedTokenizerBase, when loaded through transformers
    fingerprint: str = ""
    chat_template: str | None = None  # jinja source, when loaded without transformers
    special_tokens: dict[str, str] = field(default_factory=dict)  # bos_token etc., for the chat template
    _cache: dict = field(default_factory=dict, repr=False)

    def encode(self, text: str, specials: bool = False) -> list[int]:
        return self.backend.encode(text, add_special_tokens=specials).ids

    def count(self, text: str, specials: bool = False) -> int:
        return len(self.backend.encode(text, add_special_tokens=specials).ids)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Token counts of many texts without special tokens (parallel in Rust)."""
        if len(texts) <= SMALL_BATCH:  # a thread pool's start costs more than a few short texts
            return [len(self.backend.encode(t, add_special_tokens=False).ids) for t in texts]
        return [len(e.ids) for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def special_overhead(self) -> int:
        """How many special tokens encoding adds around any text (BOS/EOS)."""
        if "special_overhead" not in self._cache:
            probe = "hello world"
            self._cache["special_overhead"] = self.count(probe, True) - self.count(probe, False)
        return self._cache["special_overhead"]

    def has_chat_template(self) -> bool:
        if self.hf is not None:
            return bool(getattr(self.hf, "chat_template", None))
        return bool(self.chat_template)

    def render_chat(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The chat template's text for `messages` (the template's own BOS text included)."""
        if not self.has_chat_template():
            raise MetabenchError(
                f"tokenizer {self.path} has no chat template, and chat prompts are measured with it: use a "
                "--tokenizer folder with chat_template.jinja or a chat_template in tokenizer_config.json (the served "
                "model's), or drop --chat-template"
            )
        import jinja2

        try:
            if self.hf is not None:
                return self.hf.apply_chat_template(list(messages), tokenize=False,
                                                   add_generation_prompt=add_generation_prompt)
            from metabench.chat_template import render

            return render(self.chat_template, messages, self.special_tokens, add_generation_prompt)
        except jinja2.TemplateError as exc:  # the template's own raise_exception, e.g. no system role
            raise MetabenchError(f"the chat template of {self.path} refuses these messages: {exc}"
                                 " (a template without a system role takes no --system)") from None

    def chat_wrap(self, system: str | None = None) -> tuple[str, str]:
        """The text a chat template puts before and after one user message (after a system message, if any).

        Rendered once with a sentinel message and split around it; templates that
        do not insert the message verbatim are refused, since lengths could then
        not be predicted.
        """
        messages = [{"role": "system", "content": system}] if system else []
        rendered = self.render_chat(messages + [{"role": "user", "content": SENTINEL}])
        if rendered.count(SENTINEL) != 1:
            raise MetabenchError(
                f"the chat template of {self.path} does not insert the user message verbatim; "
                "generate without --chat-template"
            )
        before, after = rendered.split(SENTINEL)
        return before, after

    def chat_turns(self) -> tuple[str, str, str, str]:
        """The template's text around the turns of a conversation: (before, user_end, assistant_end, after).

        Rendered once with sentinel messages (user, assistant, user, assistant,
        user) and split around them. A template that writes the second
        exchange unlike the first (or changes the messages) is refused: a
        conversation's length could then not be predicted turn by turn.
        """
        marks = [f"\x00METABENCH_TURN_{i}\x00" for i in range(5)]
        roles = ["user", "assistant", "user", "assistant", "user"]
        rendered = self.render_chat([{"role": r, "content": m} for r, m in zip(roles, marks)])
        pieces, rest = [], rendered
        for m in marks:
            if rest.count(m) != 1:
                break
            head, rest = rest.split(m)
            pieces.append(head)
        if len(pieces) != 5 or pieces[1] != pieces[3] or pieces[2] != pieces[4]:
            raise MetabenchError(
                f"the chat template of {self.path} does not write every turn of a conversation the same way; "
                "generate conversation tasks without --chat-template"
            )
        return pieces[0], pieces[1], pieces[2], rest


SENTINEL = "\x00METABENCH_SENTINEL\x00"


def _fingerprint(folder: Path) -> str:
    h = hashlib.sha256()
    for name in _FINGERPRINT_FILES:
        f = folder / name
        if f.is_file():
            h.update(name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _register_if_reference_model(folder: Path) -> None:
    """A reference-model checkpoint folder: let transformers know its model_type first."""
    import json

    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return
    from metabench.model import MODEL_TYPE, register  # cheap: torch loads inside register()

    if model_type == MODEL_TYPE:
        register()


# tokenizer_config.json classes that transformers builds as the plain tokenizer.json backend.
GENERIC_CLASSES = (None, "PreTrainedTokenizerFast", "TokenizersBackend")
# transformers' named special tokens (PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES).
NAMED_SPECIALS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _read_json(path: Path) -> dict:
    import json

    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MetabenchError(f"cannot read {path}: {exc}".splitlines()[0]) from exc
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str | None:
    """A special token as configs write it: a string, or an AddedToken dict with `content`."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _chat_template(folder: Path, config: dict) -> str | None:
    """The default chat template: chat_template.jinja, else the config's (a string or named list)."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


GENERATION_TAG = re.compile(r"\{%-?\s*generation\b")


def _natively_readable(folder: Path) -> bool:
    """Whether transformers would build this folder as the plain tokenizer.json backend."""
    config = _read_json(folder / "tokenizer_config.json")
    jinja = folder / "chat_template.jinja"
    template = jinja.read_text(encoding="utf-8") if jinja.is_file() else json.dumps(config.get("chat_template") or "")
    return (
        (folder / "tokenizer.json").is_file()
        and config.get("tokenizer_class") in GENERIC_CLASSES
        and not (folder / "chat_templates").is_dir()
        and not GENERATION_TAG.search(template)  # transformers' own jinja extension: rendered by transformers
    )


def _load_native(folder: Path, fingerprint: str) -> Tokenizer:
    """tokenizer.json through `tokenizers`, settled as transformers' TokenizersBackend settles it."""
    from tokenizers import AddedToken
    from tokenizers import Tokenizer as RustTokenizer

    tj = folder / "tokenizer.json"
    try:
        backend = RustTokenizer.from_file(str(tj))
    except Exception as exc:  # tokenizers raises a bare Exception for malformed files
        raise MetabenchError(f"cannot read {tj}: {exc}".splitlines()[0]) from exc
    config = {**_read_json(folder / "special_tokens_map.json"), **_read_json(folder / "tokenizer_config.json")}
    named = {k: t for k in NAMED_SPECIALS if (t := _token_text(config.get(k)))}
    extra = [t for v in config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
             if (t := _token_text(v))]
    missing = [t for t in [*named.values(), *extra] if backend.token_to_id(t) is None]
    if missing:
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in dict.fromkeys(missing)])
    return Tokenizer(str(folder), backend, None, fingerprint, _chat_template(folder, config), named)


def _load_transformers(folder: Path, fingerprint: str) -> Tokenizer:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise MetabenchError(
            f"{folder} needs transformers to be read (no tokenizer.json, or a model-specific tokenizer class); "
            "install metabench[hf]"
        ) from None
    try:
        _register_if_reference_model(folder)
        # trust_remote_code=False: a checkpoint's auto_map must not make transformers
        # stop and ask on the terminal; tokenizers never need remote code here
        hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises many types; all mean "unreadable"
        raise MetabenchError(f"cannot read a tokenizer from {folder}: {exc}".splitlines()[0]) from exc
    backend = getattr(hf, "backend_tokenizer", None) or getattr(hf, "_tokenizer", None)
    if backend is None:
        raise MetabenchError(
            f"tokenizer in {folder} is a slow (Python) tokenizer; metabench needs a fast "
            "tokenizer: save it with tokenizer.json (AutoTokenizer(..., use_fast=True).save_pretrained)"
        )
    return Tokenizer(str(folder), backend, hf, fingerprint)


def load_tokenizer(path: str | Path, via_transformers: bool = False) -> Tokenizer:
    """Load a tokenizer from a local folder; a clear MetabenchError if it cannot be read.

    `via_transformers` forces AutoTokenizer (tests compare the two ways)."""
    folder = Path(path)
    if not folder.is_dir():
        raise MetabenchError(
            f"tokenizer folder {folder} does not exist; pass --tokenizer with a local folder "
            "that holds tokenizer.json (or the model folder itself)"
        )
    fingerprint = _fingerprint(folder)
    if _natively_readable(folder) and not via_transformers:
        tok = _load_native(folder, fingerprint)
    else:
        tok = _load_transformers(folder, fingerprint)
    tok.backend.no_truncation()
    tok.backend.no_padding()
    if tok.count("The quick brown fox jumps over the lazy dog.") == 0:
        raise MetabenchError(f"tokenizer in {folder} encodes text to zero tokens; it cannot measure lengths")
    return tok


def train_bpe(
    texts: Sequence[str],
    out_dir: str | Path,
    vocab_size: int = 2048,
    special_tokens: Sequence[str] = ("<|endoftext|>",),
    bos_token: str | None = None,
    style: str = "bytelevel",
) -> Path:
    """Train a small BPE deterministically and save it as a transformers tokenizer folder.

    `style="bytelevel"` is GPT-2-like (the reference model's); `style="metaspace"`
    is SentencePiece-like with a BOS prepended to every prompt (Llama-like). The
    tests use both so that lengths are checked on two different tokenizers.
    """
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    specials = list(special_tokens) + ([bos_token] if bos_token and bos_token not in special_tokens else [])
    if style == "bytelevel":
        tok = RustTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    elif style == "metaspace":
        tok = RustTokenizer(models.BPE(unk_token=specials[0]))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        alphabet = []
    else:
        raise ValueError(f"style must be 'bytelevel' or 'metaspace', got {style!r}")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(list(texts), trainer)
    if bos_token:
        bos_id = tok.token_to_id(bos_token)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A", pair=f"{bos_token} $A {bos_token} $B", special_tokens=[(bos_token, bos_id)]
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 1_000_000,
        "eos_token": specials[0],
    }
    if bos_token:
        config["bos_token"] = bos_token
    if len(specials) > 1:
        config["additional_special_tokens"] = [s for s in specials[1:] if s != bos_token]
    import json

    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out
