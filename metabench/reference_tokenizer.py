"""The reference tokenizer: a byte-level BPE with the meta-token as a special token.

Trained deterministically on procedural filler and task text, so it knows
every word the suites use; byte-level, so it encodes any text at all. The
bundled copy in metabench/assets/tokenizer is the default `--tokenizer` and
the reference model's tokenizer, and it is the source of truth: `build()`
trains on text that the task generators write, so it reproduces the bundled
file only while that text is unchanged (it no longer is: kv_recall's ids were
shortened after the bundle was made). Rebuilding the bundle orphans every
reference checkpoint, so do it only together with retraining them:

    python -m metabench.reference_tokenizer metabench/assets/tokenizer
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

BUNDLED = Path(__file__).parent / "assets" / "tokenizer"  # the default --tokenizer and every preset's
META_TOKEN = "<|meta|>"  # the paper's _PAUSE_ token; the default --marker wherever one is needed
META_TOKEN_ID = 1  # its id in the bundled tokenizer (EOS_TOKEN is 0)
EOS_TOKEN = "<|endoftext|>"
VOCAB_SIZE = 4096
# The task variants whose text the bundled tokenizer was trained on. Variants and families
# added since are left out, so that a new one changes neither this corpus nor any tokenizer
# trained on it (the tests' fixture tokenizers, and the golden hashes that depend on them).
CORPUS_VARIANTS = {
    "list_recall": ("easy", "default", "hard"),
    "kv_recall": ("single", "multi"),
    "copy": ("short", "default", "long"),
    "needle": ("single", "single_number", "single_uuid", "multikey", "multikey_uuid", "multivalue", "multiquery",
               "single_meta"),
    "segment_count": ("default", "long"),
    "parity": ("default", "long"),
}


def corpus(n_sentences: int = 20000, n_layouts: int = 400) -> list[str]:
    from metabench.haystack import procedural_sentences
    from metabench.tasks import FAMILIES

    rng = random.Random(0)
    texts = procedural_sentences(rng, n_sentences)
    for family, variants in CORPUS_VARIANTS.items():
        for spec in (FAMILIES[family][v] for v in variants):
            for i in range(n_layouts // 10):
                lay = spec.layout(rng, i, None)
                texts.append(
                    lay.instruction + "".join(b.text for b in lay.blocks) + lay.question + lay.answer_prefix + " " + lay.target
                )
    return texts


def build(out_dir: str | Path) -> Path:
    from metabench.tokenizer import train_bpe

    return train_bpe(corpus(), out_dir, vocab_size=VOCAB_SIZE, special_tokens=(EOS_TOKEN, META_TOKEN))


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else BUNDLED))
