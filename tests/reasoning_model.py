"""A tiny reasoning-format model: it answers `<think>` short text `</think>` then an answer line.

Built for tests in about a minute on 2 cores, with no network: the byte-level
fixture tokenizer gains chat role tokens (special) and `<think>`/`</think>`
(added, not special, as in Qwen3 and DeepSeek-R1, so decoding with
skip_special_tokens keeps them and vLLM's reasoning parser finds them), and
a chat template. A tiny Llama (head_dim 32, which vLLM's CPU attention takes)
is trained on chat prompts of procedural text with the loss on the reply
only, so it keeps the format whatever the prompt; it is not accurate.

`with_open_think` makes the second shape: the same weights under a template
whose generation prompt ends with `<think>\\n` (DeepSeek-R1, Qwen3
thinking), so the model's output holds only the end tag.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

from metabench.tokenizer import load_tokenizer
from tiny_models import fit, llama_config

THINK, END_THINK = "<think>", "</think>"
ROLES = ("<|user|>", "<|assistant|>", "<|end|>")
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
OPEN_THINK_TEMPLATE = TEMPLATE.replace("<|assistant|>\n{% endif %}", "<|assistant|>\n<think>\n{% endif %}")
# Longer than any answer budget of the tests' tasks, so a cap without a thinking allowance cuts it off.
REASONING = "The question asks for one value. I read the text from the start, find the key, and check it once more."
ANSWER = "The answer is 4417."
REPLY = f"{THINK}\n{REASONING}\n{END_THINK}\n{ANSWER}\n"
CONTEXT = 512


def reasoning_tokenizer(out_dir: Path, tokenizer_dir: Path) -> Path:
    """The fixture tokenizer plus the chat role tokens, `<think>` and `</think>`, and TEMPLATE."""
    from tokenizers import AddedToken, Tokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ROLES])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in (THINK, END_THINK)])
    tok.save(str(out_dir / "tokenizer.json"))
    shutil.copy(tokenizer_dir / "tokenizer_config.json", out_dir / "tokenizer_config.json")
    return set_template(out_dir, TEMPLATE)


def _text(rng: random.Random, sentences: list[str]) -> str:
    """A stretch of prompt text of 1 to about 120 tokens: prose, bits, numbers, key-value JSON or one word repeated,
    so the reply's format holds over the tasks' haystacks."""
    n = rng.randint(1, 40)
    kind = rng.randrange(5)
    if kind == 0:
        return " ".join(rng.sample(sentences, max(1, n // 4)))
    if kind == 1:
        return " ".join(rng.choice("01") for _ in range(2 * n))
    if kind == 2:
        return " ".join(str(rng.randrange(10 ** rng.randint(1, 7))) for _ in range(n))
    if kind == 3:
        return json.dumps({f"{rng.getrandbits(32):08x}": f"{rng.getrandbits(32):08x}" for _ in range(max(1, n // 4))})
    return " ".join([rng.choice(rng.choice(sentences).split())] * n)


def build_reasoning_llama(out_dir: Path, tokenizer_dir: Path, steps: int = 300, seed: int = 0) -> Path:
    """The reasoning-format tiny Llama (window CONTEXT tokens) in `out_dir`, with its tokenizer and TEMPLATE."""
    import torch
    from transformers import LlamaForCausalLM

    from metabench.haystack import procedural_sentences

    tok = load_tokenizer(reasoning_tokenizer(out_dir, tokenizer_dir))
    sentences = procedural_sentences(random.Random(seed), 2000)
    reply = tok.encode(REPLY) + [0]  # then EOS (<|endoftext|>, id 0)
    rng = random.Random(seed)

    def example() -> tuple[list[int], int]:
        user = "\n".join(_text(rng, sentences) for _ in range(rng.randint(1, 3)))
        prompt = tok.encode(tok.render_chat([{"role": "user", "content": user}]))
        return prompt + reply, len(prompt)

    def batch() -> dict[str, Any]:
        rows = [example() for _ in range(8)]
        width = max(len(ids) for ids, _ in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        labels = torch.full((len(rows), width), -100)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, (seq, n_prompt) in enumerate(rows):  # right-padded; the loss on the reply only
            ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, n_prompt : len(seq)] = torch.tensor(seq[n_prompt:])
            mask[i, : len(seq)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(tok.backend.get_vocab_size(), CONTEXT, head_dim=32))
    model.config.final_loss = fit(model, batch, steps)
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def with_open_think(model_dir: Path, out_dir: Path) -> Path:
    """A copy of the model whose template opens `<think>` in the generation prompt: outputs hold the end tag only."""
    shutil.copytree(model_dir, out_dir)
    return set_template(out_dir, OPEN_THINK_TEMPLATE)


def set_template(folder: Path, template: str) -> Path:
    """`template` as the chat template in the folder's tokenizer_config.json."""
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    return folder
