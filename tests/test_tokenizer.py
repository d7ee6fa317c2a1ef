"""Tokenizers read without transformers count and render chats exactly as AutoTokenizer does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from metabench.errors import MetabenchError
from metabench.reference_tokenizer import BUNDLED
from metabench.tokenizer import load_tokenizer

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, <|meta|> a marker, and\nnew lines\n\n",
    "<s> an explicit BOS</s><|endoftext|> and ünïcödé 123 4567",
    "<|tool|> a special token the config adds",
]
CHATS = [
    [{"role": "user", "content": "hello there"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one"},
     {"role": "assistant", "content": "two"}, {"role": "user", "content": "three <|meta|>"}],
]
# A template in the style of real ones: loops, conditionals, filters, raise_exception, trimmed blocks.
RICH_TEMPLATE = """{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}{% set rest = messages[1:] %}
{% else %}{% set sys = 'You are helpful.' %}{% set rest = messages %}{% endif %}
{{ bos_token }}[SYS] {{ sys | trim }}
{% for m in rest %}
    {% if m['role'] not in ['user', 'assistant'] %}{{ raise_exception('bad role') }}{% endif %}
    {% if loop.index0 > 99 %}{% break %}{% endif %}
<|{{ m['role'] }}|>{{ m['content'] | tojson if m['role'] == 'tool' else m['content'] }}{{ eos_token }}
{% endfor %}
{% if add_generation_prompt %}<|assistant|>{% endif %}"""


def _variant(src: Path, dst: Path, config: dict | None = None, jinja: str | None = None) -> Path:
    shutil.copytree(src, dst)
    if config is not None:
        path = dst / "tokenizer_config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    if jinja is not None:
        (dst / "chat_template.jinja").write_text(jinja)
    return dst


@pytest.fixture(scope="module")
def folders(tmp_path_factory, bytelevel_dir, metaspace_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tok_variants")
    # conftest's template, read from the folder it wrote (importing conftest by name picks whichever ran first)
    chat_template = json.loads((metaspace_dir / "tokenizer_config.json").read_text())["chat_template"]
    return {
        "bytelevel": bytelevel_dir,
        "metaspace": metaspace_dir,
        "bundled": BUNDLED,
        "bos_eos_flags": _variant(bytelevel_dir, root / "flags", {"bos_token": "<|endoftext|>", "add_bos_token": True,
                                                                  "add_eos_token": True, "chat_template": RICH_TEMPLATE}),
        "no_bos_flag": _variant(metaspace_dir, root / "nobos", {"add_bos_token": False}),
        "added_special": _variant(metaspace_dir, root / "added", {"additional_special_tokens": ["<|tool|>"],
                                                                  "pad_token": "<pad>"}),
        "jinja_file": _variant(metaspace_dir, root / "jinja", jinja=RICH_TEMPLATE),
        "named_templates": _variant(bytelevel_dir, root / "named", {
            "eos_token": "<|endoftext|>",
            "chat_template": [{"name": "default", "template": chat_template.replace("bos_token", "eos_token")},
                              {"name": "tool_use", "template": "{{ raise_exception('not this one') }}"}]}),
    }


@pytest.mark.slow
def test_counts_and_chats_equal_autotokenizer(folders):
    pytest.importorskip("transformers")
    for name, folder in folders.items():
        ours, ref = load_tokenizer(folder), load_tokenizer(folder, via_transformers=True)
        assert ours.hf is None and ref.hf is not None, name
        for text in TEXTS:
            for specials in (False, True):
                assert ours.encode(text, specials) == ref.encode(text, specials), (name, text, specials)
        assert ours.has_chat_template() == ref.has_chat_template(), name
        if not ref.has_chat_template():
            continue
        assert ours.chat_wrap() == ref.chat_wrap(), name
        for chat in CHATS:
            for gen in (False, True):
                text = ours.render_chat(chat, gen)
                assert text == ref.render_chat(chat, gen), (name, chat, gen)
                assert ours.encode(text) == ref.encode(text), (name, chat)


def test_specials_come_from_the_post_processor_and_config(folders):
    # With a tokenizer.json, add_bos_token/add_eos_token are dropped (as transformers drops them).
    assert load_tokenizer(folders["bos_eos_flags"]).special_overhead() == 0
    assert load_tokenizer(folders["no_bos_flag"]).special_overhead() == 1
    assert load_tokenizer(folders["metaspace"]).special_overhead() == 1
    added = load_tokenizer(folders["added_special"])
    assert added.count("<|tool|>") == 1 and added.count("<pad>") == 1
    assert load_tokenizer(folders["metaspace"]).count("<|tool|>") > 1


def test_generate_does_not_import_transformers(bytelevel_dir, tmp_path):
    args = ["generate", "--tokenizer", str(bytelevel_dir), "--tasks", "needle", "--lengths", "1000",
            "--samples", "2", "--quiet", "--out", str(tmp_path / "x.jsonl")]
    code = f"import sys; from metabench.cli import main; main({args!r}); print('transformers' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "False" and (tmp_path / "x.jsonl").exists()


def test_no_template_is_a_clear_error(bytelevel):
    with pytest.raises(MetabenchError, match="has no chat template"):
        bytelevel.chat_wrap()


def test_a_templates_own_refusal_is_one_line(tmp_path, metaspace_dir):
    """A template's raise_exception (here: no system role) is the user's input refused, not a jinja2 traceback."""
    no_system = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
                 "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    tok = load_tokenizer(_variant(metaspace_dir, tmp_path / "nosys", jinja=no_system))
    assert tok.hf is None and tok.render_chat(CHATS[0]) == "<|user|>hello there<|assistant|>"
    with pytest.raises(MetabenchError, match="refuses these messages: System role not supported") as info:
        tok.chat_wrap("Be brief.")
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_a_generation_tag_template_is_read_through_transformers(tmp_path, metaspace_dir):
    """`{% generation %}` is transformers' own jinja extension: such folders load through AutoTokenizer."""
    with_masks = ("{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}"
                  "{% endgeneration %}{% else %}<|{{ m['role'] }}|>{{ m['content'] }}{% endif %}{% endfor %}"
                  "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    tok = load_tokenizer(_variant(metaspace_dir, tmp_path / "masks", jinja=with_masks))
    assert tok.hf is not None and tok.render_chat(CHATS[0]) == "<|user|>hello there<|assistant|>"
