"""Fixtures: tokenizers built here, in seconds, with no network.

Two different tokenizers check every length claim: a GPT-2-like byte-level
BPE, and a SentencePiece-like (metaspace) BPE that prepends a BOS and has a
chat template.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metabench.reference_tokenizer import corpus
from metabench.tokenizer import load_tokenizer, train_bpe

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="session")
def small_corpus() -> list[str]:
    return corpus(n_sentences=3000, n_layouts=100)


@pytest.fixture(scope="session")
def bytelevel_dir(tmp_path_factory, small_corpus) -> Path:
    return train_bpe(small_corpus, tmp_path_factory.mktemp("bytelevel"), vocab_size=1200,
                     special_tokens=("<|endoftext|>", "<|meta|>"))


@pytest.fixture(scope="session")
def metaspace_dir(tmp_path_factory, small_corpus) -> Path:
    out = train_bpe(small_corpus, tmp_path_factory.mktemp("metaspace"), vocab_size=900,
                    special_tokens=("<unk>", "<|end|>", "<|user|>", "<|assistant|>"), bos_token="<s>",
                    style="metaspace")
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    cfg["chat_template"] = CHAT_TEMPLATE
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    return out


@pytest.fixture(scope="session")
def bytelevel(bytelevel_dir):
    return load_tokenizer(bytelevel_dir)


@pytest.fixture(scope="session")
def metaspace(metaspace_dir):
    return load_tokenizer(metaspace_dir)


@pytest.fixture(params=["bytelevel", "metaspace"])
def any_tok(request):
    return request.getfixturevalue(request.param)
