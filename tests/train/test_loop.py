"""The training loop end to end: schedule, config errors, checkpoint output, resume after SIGKILL, DDP parity."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from metabench.train.loop import CONFIG_NAME, LOG_NAME, STATE_NAME, lr_lambda
from metabench.train.presets import PRESETS, TrainConfig

REPO = Path(__file__).resolve().parents[2]


def log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / LOG_NAME).read_text().splitlines()]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def test_warmup_then_cosine_to_min_lr():
    cfg = replace(PRESETS["micro"].train, induction_steps=0, pretrain_steps=0, finetune_steps=110, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    f = lr_lambda(cfg)
    assert [round(f(s), 6) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 110))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"min_lr": 0.0}, "min_lr"),
        ({"curriculum": (1.0, 0.5)}, "increasing"),
        ({"tasks": ("list_recall",)}, "family/variant"),
        ({"batch_size": 0}, "batch_size"),
        ({"induction_mix": -1}, "induction_mix"),
        ({"anneal_steps": 5}, "at most finetune_steps"),
        ({"anneal_steps": 2}, "needs anneal_tasks"),
    ],
)
def test_bad_configs_say_what_to_fix(change, message):
    from metabench.train.data import entry_for

    with pytest.raises(ValueError, match=message):
        cfg = replace(PRESETS["micro"].train, **change)
        for t in cfg.tasks:
            entry_for(t)


def test_presets_fit_their_claims():
    from metabench.model.model import MetaGPT

    tiny = PRESETS["tiny"]
    assert tiny.model.vocab_size == 4096 and tiny.model.meta_token_id == 1
    with torch.device("meta"):
        n = MetaGPT(tiny.model).num_params()
    assert n * 4 < 20e6  # fp32 weights of the bundled checkpoint stay under 20 MB
    paper = PRESETS["paper"].model
    assert (paper.n_layer, paper.n_embd, paper.block_size) == (12, 768, 1024)


@pytest.mark.slow
def test_micro_run_is_a_loadable_checkpoint(micro_run):
    """save_pretrained output, safetensors, tokenizer, auto_map, and a loss that went down."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((micro_run / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_meta.MetaForCausalLM"
    assert config["meta_token_id"] == 1 and config["eos_token_id"] == 0
    tok = AutoTokenizer.from_pretrained(micro_run, local_files_only=True)
    assert tok.convert_tokens_to_ids("<|meta|>") == 1
    model = AutoModelForCausalLM.from_pretrained(micro_run, trust_remote_code=True, local_files_only=True)
    assert type(model).__name__ == "MetaForCausalLM"
    lines = log(micro_run)
    assert [r["step"] for r in lines] == list(range(1, 9))
    assert {r["phase"] for r in lines} == {"induction", "pretrain", "finetune"}
    assert all(r["tokens_per_s"] > 0 for r in lines)
    assert lines[-1]["loss"] < lines[0]["loss"]


@pytest.mark.slow
def test_every_later_step_trains_on_the_mixed_in_induction_rows(micro_run, ref_tok):
    """The log's token counts are the phase's rows plus cfg.induction_mix induction rows (none in the induction phase)."""
    from metabench.train.data import Stream
    from metabench.train.loop import StepData

    cfg = PRESETS["micro"].train
    assert cfg.induction_mix > 0 and cfg.log_every == 1
    stream = Stream.for_config(ref_tok, cfg)
    steps = StepData(stream, cfg, 0, 1)
    for record in log(micro_run):
        phase, batches, _ = steps[record["step"] - 1]
        assert phase == record["phase"] and len(batches) == (1 if phase == "induction" else 2)
        assert record["tokens"] == sum(b.tokens for b in batches)
        if phase != "induction":
            assert batches[1].ids.shape[0] == cfg.induction_mix and 1 not in batches[1].ids.tolist()


@pytest.mark.slow
def test_metabench_run_evaluates_the_checkpoint(micro_run, tmp_path, run_cli):
    out = tmp_path / "results"
    proc = run_cli("run", "--model", f"hf:{micro_run}", "--suite", "smoke", "--lengths", "1x", "--samples", "1",
                   "--marker", "<|meta|>", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6  # the smoke suite's six tasks, one sample each
    recall = next(r for r in rows if r["task"] == "list_recall")
    assert "<|meta|>" in recall["prompt_head"] + recall["prompt_tail"] and isinstance(recall["prediction"], str)


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted(tmp_path, run_cli):
    steps = ["--preset", "micro", "--finetune-steps", "60", "--ckpt-every", "4", "--threads", "1", "--quiet"]
    whole = tmp_path / "whole"
    proc = run_cli("train", "--out", str(whole), *steps)
    assert proc.returncode == 0, proc.stderr[-3000:]

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-m", "metabench.cli", "train", "--out", str(killed), *steps],
                             env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None:
        if (killed / STATE_NAME).is_file() and (killed / LOG_NAME).is_file() and len(log(killed)) >= 9:
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert child.wait(30) == -signal.SIGKILL, "the run finished before it could be killed"
    saved = torch.load(killed / STATE_NAME, weights_only=False)["step"]
    assert 8 <= saved < 64 and not (killed / "model.safetensors").exists()

    proc = run_cli("train", "--out", str(killed), *steps)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = weights(whole), weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in log(whole)] == [r["loss"] for r in log(killed)]  # the redone steps replace the lost ones


@pytest.mark.slow
def test_resume_refuses_a_different_config(micro_run, tmp_path, run_cli):
    out = tmp_path / "ckpt"
    shutil.copytree(micro_run, out)
    proc = run_cli("train", "--preset", "micro", "--out", str(out), "--seed", "1", "--threads", "1")
    assert proc.returncode == 2 and "different configuration" in proc.stderr and "seed" in proc.stderr


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path, run_cli):
    """torchrun --nproc_per_node 2 (gloo) on the same global batch: the same losses and weights."""
    args = ["--preset", "micro", "--finetune-steps", "4", "--threads", "1", "--quiet"]
    one = tmp_path / "one"
    proc = run_cli("train", "--out", str(one), *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "metabench.cli", "train", "--out", str(two), *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    l1, l2 = log(one), log(two)
    assert len(l1) == len(l2) == 8  # 2 induction (rows of different widths per process), 2 pre-training, 4 fine-tuning
    assert [r["phase"] for r in l1] == ["induction"] * 2 + ["pretrain"] * 2 + ["finetune"] * 4
    for r1, r2 in zip(l1, l2):
        assert r1["loss"] == pytest.approx(r2["loss"], abs=1e-5) and r1["tokens"] == r2["tokens"]
    a, b = weights(one), weights(two)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.slow
def test_no_meta_attention_flag(tmp_path, run_cli):
    out = tmp_path / "nometa"
    proc = run_cli("train", "--preset", "micro", "--no-meta-attention", "--finetune-steps", "1", "--out", str(out),
                   "--threads", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["meta_attention"] is False and config["meta_token_id"] == 1
    assert not any("meta_attn" in k for k in weights(out))


@pytest.mark.slow
def test_extend_with_finetuning(micro_run, tmp_path, run_cli):
    out = tmp_path / "yarn2x"
    proc = run_cli("extend", str(micro_run), "--factor", "2", "--out", str(out), "--steps", "2",
                   "--batch-size", "2", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["max_position_embeddings"] == 256
    assert config["rope_parameters"]["rope_type"] == "yarn" and config["rope_parameters"]["factor"] == 2.0
    lines = log(out)
    assert lines[-1]["step"] == 2 and lines[-1]["seq_len"] >= 200  # fine-tuned at the new window
    assert (out / "tokenizer.json").is_file()
    before, after = weights(micro_run), weights(out)
    assert not all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_extend_fine_tunes_on_the_sources_final_mix(micro_run, tmp_path, run_cli):
    src = tmp_path / "src"
    shutil.copytree(micro_run, src, ignore=shutil.ignore_patterns(STATE_NAME))
    cfg = json.loads((src / CONFIG_NAME).read_text())
    (src / CONFIG_NAME).write_text(json.dumps({**cfg, "anneal_steps": 2, "anneal_tasks": ["parity/default"] * 2}))
    out = tmp_path / "yarn2x"
    proc = run_cli("extend", str(src), "--factor", "2", "--out", str(out), "--steps", "1", "--batch-size", "2",
                   "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / CONFIG_NAME).read_text())["tasks"] == ["parity/default"] * 2
