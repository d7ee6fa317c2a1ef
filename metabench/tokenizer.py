"""The evaluated model's tokenizer, seen through the few operations metabench needs.

Lengths are measured with the model's own tokenizer, loaded from a local folder
(never from a hub). `load_tokenizer` uses transformers' `AutoTokenizer` when
transformers is installed, because that is exactly how the evaluated model
will tokenize (including settings such as `add_bos_token` that live outside
tokenizer.json); without transformers it reads `tokenizer.json` with the
`tokenizers` library. Either way encoding runs on the Rust backend.

Counting convention: `count(text, specials=True)` includes the special tokens
the tokenizer adds around a prompt (a BOS, say), since they occupy the
model's context too.

The fingerprint is a hash of the tokenizer files' contents, so data generated
with two copies of the same tokenizer is recognised as the same.
"""

from __future__ import annotations

import hashlib
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


@dataclass
class Tokenizer:
    """A loaded tokenizer: Rust backend for speed, the transformers object for templates."""

    path: str
    backend: Any  # tokenizers.Tokenizer
    hf: Any = None  # transformers.PreTrainedTokenizerBase, when transformers is installed
    fingerprint: str = ""
    _cache: dict = field(default_factory=dict, repr=False)

    def encode(self, text: str, specials: bool = False) -> list[int]:
        return self.backend.encode(text, add_special_tokens=specials).ids

    def count(self, text: str, specials: bool = False) -> int:
        return len(self.backend.encode(text, add_special_tokens=specials).ids)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Token counts of many texts without special tokens (parallel in Rust)."""
        if not texts:
            return []
        return [len(e.ids) for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def special_overhead(self) -> int:
        """How many special tokens encoding adds around any text (BOS/EOS)."""
        if "special_overhead" not in self._cache:
            probe = "hello world"
            self._cache["special_overhead"] = self.count(probe, True) - self.count(probe, False)
        return self._cache["special_overhead"]

    def has_chat_template(self) -> bool:
        return self.hf is not None and bool(getattr(self.hf, "chat_template", None))

    def chat_wrap(self) -> tuple[str, str]:
        """The text a chat template puts before and after one user message.

        Rendered once with a sentinel message and split around it; templates that
        do not insert the message verbatim are refused, since lengths could then
        not be predicted.
        """
        if not self.has_chat_template():
            raise MetabenchError(
                f"tokenizer {self.path} has no chat template; drop --chat-template or use a "
                "tokenizer folder whose tokenizer_config.json defines one (needs transformers)"
            )
        sentinel = "\x00METABENCH_SENTINEL\x00"
        rendered = self.hf.apply_chat_template(
            [{"role": "user", "content": sentinel}], tokenize=False, add_generation_prompt=True
        )
        if rendered.count(sentinel) != 1:
            raise MetabenchError(
                f"the chat template of {self.path} does not insert the user message verbatim; "
                "generate without --chat-template"
            )
        before, after = rendered.split(sentinel)
        return before, after


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
    if model_type == "metabench_meta":
        from metabench.backends import register_reference_model

        register_reference_model()


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer from a local folder; a clear MetabenchError if it cannot be read."""
    folder = Path(path)
    if not folder.is_dir():
        raise MetabenchError(
            f"tokenizer folder {folder} does not exist; pass --tokenizer with a local folder "
            "that holds tokenizer.json (or the model folder itself)"
        )
    fingerprint = _fingerprint(folder)
    try:
        import transformers  # noqa: F401
    except ImportError:
        transformers = None
    if transformers is not None:
        try:
            from transformers import AutoTokenizer

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
        tok = Tokenizer(str(folder), backend, hf, fingerprint)
    else:
        tj = folder / "tokenizer.json"
        if not tj.is_file():
            raise MetabenchError(
                f"{folder} has no tokenizer.json; install metabench[hf] to read other tokenizer formats"
            )
        from tokenizers import Tokenizer as RustTokenizer

        try:
            backend = RustTokenizer.from_file(str(tj))
        except Exception as exc:
            raise MetabenchError(f"cannot read {tj}: {exc}".splitlines()[0]) from exc
        tok = Tokenizer(str(folder), backend, None, fingerprint)
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
