"""The bundled reference tokenizer holds the facts reference_tokenizer.py states about it."""

from __future__ import annotations

from metabench.reference_tokenizer import BUNDLED, EOS_TOKEN, META_TOKEN, META_TOKEN_ID, VOCAB_SIZE
from metabench.tokenizer import load_tokenizer


def test_bundled_tokenizer_ids():
    tok = load_tokenizer(BUNDLED)
    assert tok.backend.get_vocab_size() == VOCAB_SIZE
    assert tok.backend.token_to_id(META_TOKEN) == META_TOKEN_ID and tok.backend.token_to_id(EOS_TOKEN) == 0
    ids = tok.encode(f"one {META_TOKEN} two")
    assert ids.count(META_TOKEN_ID) == 1  # a special token: never split, never merged into a word
