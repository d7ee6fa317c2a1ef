"""mrcr: the asked-for answer read off the conversation by an independent parser, OpenAI-MRCR's
grade on hand-worked cases, chat-template turns re-rendered by the template itself, exact lengths."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from difflib import SequenceMatcher

import pytest

from metabench.errors import MetabenchError
from metabench.generate import Options, iter_samples
from metabench.reference_tokenizer import BUNDLED
from metabench.scoring import score, sequence_ratio
from metabench.suite import parse_suite
from metabench.tasks.base import PLAIN_TURNS
from metabench.tokenizer import load_tokenizer

ENTRIES = [{"task": "mrcr", "variant": v} for v in ("2needle", "4needle")]
EXCHANGE = 100  # tokens: more than the longest filler exchange on the fixture tokenizers
GOLDEN_CONTENT = "848c508d59e851c3"
GOLDEN_FILE = "e4f3f9180a76d644"


@pytest.fixture(scope="module")
def bundled():
    return load_tokenizer(BUNDLED)


def _samples(tok, lengths=(2000,), n=4, entries=ENTRIES, **opts):
    suite = parse_suite({"lengths": list(lengths), "samples": n, "tasks": entries, "seed": 5})
    return list(iter_samples(suite, tok, Options(**opts)))


def messages(prompt: str, turns) -> list[dict[str, str]]:
    """The conversation a prompt writes, split on its turn texts (alternating user, assistant)."""
    assert prompt.startswith(turns.before) and prompt.endswith(turns.after)
    body = prompt[len(turns.before) : len(prompt) - len(turns.after)]
    out, role = [], "user"
    while body:
        end = turns.user_end if role == "user" else turns.assistant_end
        text, _, body = body.partition(end) if end in body else (body, "", "")
        out.append({"role": role, "content": text})
        role = "assistant" if role == "user" else "user"
    return out


def solve(prompt: str, turns) -> tuple[str, str]:
    """(prefix, answer) as a perfect reader finds them: the n-th reply to the quoted request."""
    chat = messages(prompt, turns)
    m = re.fullmatch(r"Prepend (\S+) to the (\d+)\w\w \(1 indexed\) (\w+) about (\w+)\. .*", chat[-1]["content"])
    prefix, n, form, topic = m.group(1), int(m.group(2)), m.group(3), m.group(4)
    replies = [chat[i + 1]["content"] for i in range(0, len(chat) - 1, 2)
               if chat[i]["content"] == f"Write a {form} about {topic}."]
    return prefix, replies[n - 1]


def test_answer_follows_from_the_conversation(bytelevel):
    for s in _samples(bytelevel):
        prefix, reply = solve(s.prompt, PLAIN_TURNS)
        assert s.target == prefix + reply and s.info["prefix"] == prefix, s.id
        assert s.prompt.count(s.info["request"]) == s.info["needles"] == int(s.variant[0]), s.id
        assert s.prompt.count(reply) == 1 and s.chance == 0.0
        assert score(s.__dict__, " " + s.target + "\n") == {"sequence_ratio": 1.0, "exact_match": 1.0, "exact_match_strict": 1.0}


def test_near_duplicates_are_there(bytelevel):
    for s in _samples(bytelevel):
        form, topic = re.fullmatch(r"Write a (\w+) about (\w+)\.", s.info["request"]).groups()
        requests = re.findall(r"User: Write a (\w+) about (\w+)\.", s.prompt)
        assert sum(f == form and t != topic for f, t in requests) >= 1, s.id
        assert sum(t == topic and f != form for f, t in requests) >= 1, s.id


def test_sequence_ratio_grades_as_openai_mrcr():
    assert sequence_ratio("PFXhello world", "PFXhello world", "PFX") == 1.0
    assert sequence_ratio("  PFXhello world\n", "PFXhello world", "PFX") == 1.0
    assert sequence_ratio("hello world", "PFXhello world", "PFX") == 0.0  # no prefix, no credit
    assert sequence_ratio("pfxhello world", "PFXhello world", "PFX") == 0.0
    assert sequence_ratio("PFXabcd", "PFXabce", "PFX") == pytest.approx(0.75)  # 2 * 3 matches / 8 characters
    assert sequence_ratio("PFX", "PFXabcd", "PFX") == 0.0
    doc = {"target": "PFXabcd", "info": json.dumps({"prefix": "PFX"}), "metrics": ["sequence_ratio"], "answers": []}
    assert score(doc, "PFXabcd") == {"sequence_ratio": 1.0}  # lm-eval docs carry info as JSON text
    want = SequenceMatcher(None, "the cat sat", "the cat sat down").ratio()
    assert sequence_ratio("Xthe cat sat", "Xthe cat sat down", "X") == pytest.approx(want)


def test_chat_template_turns_are_the_templates_own(metaspace):
    turns = metaspace.chat_turns()
    from metabench.tasks.base import Turns

    turns = Turns(*turns)
    for s in _samples(metaspace, lengths=(1500, 3000), chat_template=True):
        chat = messages(s.prompt, turns)
        assert len(chat) > 10 and chat[-1]["role"] == "user"
        assert metaspace.render_chat(chat) == s.prompt, s.id
        assert s.add_special_tokens is False and metaspace.count(s.prompt) == s.prompt_tokens
        assert s.prompt_tokens + s.answer_budget <= s.length
        prefix, reply = solve(s.prompt, turns)
        assert s.target == prefix + reply


def test_a_template_that_varies_by_turn_is_refused(metaspace_dir, tmp_path):
    folder = tmp_path / "tok"
    shutil.copytree(metaspace_dir, folder)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["chat_template"] = "{% for m in messages %}<{{ m['role'] }} {{ loop.index }}>{{ m['content'] }}{% endfor %}"
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    tok = load_tokenizer(folder)
    with pytest.raises(MetabenchError, match="does not write every turn"):
        _samples(tok, n=1, chat_template=True)


@pytest.mark.parametrize("name", ["bytelevel", "metaspace", "bundled"])
def test_exact_lengths_from_quarter_to_twice_the_context(request, name):
    tok = request.getfixturevalue(name)
    suite = parse_suite({"lengths": ["0.25x", "0.5x", "1x", "1.5x", "2x"], "samples": 2, "tasks": ENTRIES[:1]})
    for chat in ((False, True) if name == "metaspace" else (False,)):
        for s in iter_samples(suite, tok, Options(context=2048, chat_template=chat)):
            assert tok.count(s.prompt, specials=s.add_special_tokens) == s.prompt_tokens, s.id
            used = s.prompt_tokens + s.answer_budget
            assert s.length - EXCHANGE < used <= s.length, (s.id, used)  # short by less than one exchange


def test_sample_i_does_not_depend_on_how_many(bytelevel):
    few = {s.id: s.to_json() for s in _samples(bytelevel, n=2)}
    many = {s.id: s.to_json() for s in _samples(bytelevel, n=4)}
    assert len(few) == 4 and all(many[k] == v for k, v in few.items())


def test_golden_hashes(bytelevel, metaspace):
    def content(samples) -> str:
        rows = [[s.id, s.target, s.info, s.depth] for s in samples]
        return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]

    samples = _samples(bytelevel, n=3)
    assert content(samples) == content(_samples(metaspace, n=3)) == GOLDEN_CONTENT
    file = "".join(s.to_json() + "\n" for s in samples)
    assert hashlib.sha256(file.encode()).hexdigest()[:16] == GOLDEN_FILE


def test_a_system_message_is_refused_not_dropped(metaspace):
    """A conversation has no single message to put a system message before: --system is an error, not ignored."""
    suite = parse_suite({"seed": 3, "lengths": [2048], "samples": 1, "tasks": [ENTRIES[0]]})
    with pytest.raises(MetabenchError, match="--system does not apply to conversation tasks"):
        list(iter_samples(suite, metaspace, Options(context=2048, chat_template=True, system="Be brief.")))
