"""MetabenchCallback in a real transformers Trainer run of the bundled tiny model on CPU."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "reference_model" / "tiny"
KEY = "metabench/kv_recall/single@1x"


def _rows(folder: Path) -> list[dict]:
    rows = [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("latency_s")
    return sorted(rows, key=lambda r: r["id"])


def _blocks(tok, n: int, width: int = 64) -> list[dict]:
    """n training rows of procedural text, `width` tokens each."""
    from metabench.haystack import procedural_sentences

    ids = tok(" ".join(procedural_sentences(random.Random(0), 400)))["input_ids"]
    return [{"input_ids": ids[k * width : (k + 1) * width], "labels": ids[k * width : (k + 1) * width]}
            for k in range(n)]


@pytest.mark.slow
def test_trainer_run_evaluates_every_n_steps(tmp_path):
    """5 steps, every 2: folders step-2 and step-4 with their step recorded, each primary metric in the Trainer's
    log history and in what every reporting callback's on_log receives; training goes on in train mode after each
    evaluation, its own loss and gradient norm logged at every step; `metabench watch` on the checkpoints the
    Trainer saved at those steps writes the same rows."""
    from transformers import (AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments,
                              default_data_collator)

    from metabench.integrations.transformers import MetabenchCallback
    from metabench.model import register

    register()
    model, tok = AutoModelForCausalLM.from_pretrained(str(TINY)), AutoTokenizer.from_pretrained(str(TINY))
    seen: dict[str, list] = {"logs": [], "training": [], "loss": []}

    class Spy(TrainerCallback):  # after MetabenchCallback in the list, as reporting integrations would see it
        def on_log(self, args, state, control, logs=None, **kw):
            seen["logs"].append(dict(logs))

        def on_step_end(self, args, state, control, model=None, **kw):
            seen["training"].append(model.training)

    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=5, per_device_train_batch_size=2,
                             learning_rate=1e-3, logging_steps=1, save_steps=2, report_to=[], use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=_blocks(tok, 10), processing_class=tok,
                      data_collator=default_data_collator, callbacks=[
        MetabenchCallback(suite="smoke", every=2, out_dir=tmp_path / "evals", tasks=["kv_recall:single"],
                          lengths=["1x"], samples=2), Spy()])
    trainer.train()

    evals = tmp_path / "evals"
    assert sorted(p.name for p in evals.iterdir()) == ["step-2", "step-4"]
    for step in (2, 4):
        summary = json.loads((evals / f"step-{step}" / "summary.json").read_text())
        assert summary["step"] == step and summary["provenance"]["backend"]["in_memory"] is True
        cell = next(c for c in summary["cells"] if c["depth"] is None)
        logged = [h for h in trainer.state.log_history if KEY in h]
        assert {h["step"]: h[KEY] for h in logged}[step] == cell["metrics"][cell["primary"]]["mean"]
    assert [h["step"] for h in trainer.state.log_history if KEY in h] == [2, 4]
    assert sum(KEY in logs for logs in seen["logs"]) == 2
    assert seen["training"] == [True] * 5
    norms = [h["grad_norm"] for h in trainer.state.log_history if "loss" in h]  # every step's own log is kept
    assert len(norms) == 5 and all(0 < n < float("inf") for n in norms)

    # The checkpoints the Trainer saved at the same steps, evaluated from disk by `metabench watch`: the same rows.
    r = subprocess.run([sys.executable, "-m", "metabench", "watch", str(tmp_path / "trainer"), "--out",
                        str(tmp_path / "watched"), "--quiet", "--settle", "1", "--suite", "smoke", "--tasks",
                        "kv_recall:single", "--lengths", "1x", "--samples", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for step in (2, 4):
        assert _rows(tmp_path / "watched" / f"checkpoint-{step}") == _rows(evals / f"step-{step}")


@pytest.mark.slow
def test_an_evaluation_that_cannot_run_is_a_warning_and_training_goes_on(tmp_path, capfd):
    """step-1's folder already holds another run (other settings): one warning line; step 2 is evaluated."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

    import metabench
    from metabench.integrations.transformers import MetabenchCallback
    from metabench.model import register

    register()
    model, tok = AutoModelForCausalLM.from_pretrained(str(TINY)), AutoTokenizer.from_pretrained(str(TINY))
    picks = dict(suite="smoke", tasks=["kv_recall:single"], lengths=["1x"], samples=1)
    metabench.evaluate(model, tok, context=128, out=tmp_path / "evals" / "step-1", step=1, **picks)
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=2, per_device_train_batch_size=2,
                             save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=_blocks(tok, 4), processing_class=tok,
                      data_collator=default_data_collator,
                      callbacks=[MetabenchCallback(every=1, out_dir=tmp_path / "evals", **picks)])
    trainer.train()
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("metabench: warning:")]
    assert len(warnings) == 1 and "step 1 not evaluated: " in warnings[0] and "different settings" in warnings[0]
    assert [h["step"] for h in trainer.state.log_history if KEY in h] == [2]
    assert json.loads((tmp_path / "evals" / "step-2" / "summary.json").read_text())["step"] == 2


def test_bad_options_fail_before_training():
    """An unknown task, a bad `every` or an unknown option: one line when the callback is made."""
    from metabench.errors import MetabenchError
    from metabench.integrations.transformers import MetabenchCallback

    for kwargs, message in (({"tasks": ["kv_recal"]}, "kv_recall"), ({"every": 0}, "positive integer"),
                            ({"lenghts": ["1x"]}, "unknown option")):
        with pytest.raises(MetabenchError, match=message) as exc:
            MetabenchCallback(**kwargs)
        assert "\n" not in str(exc.value)


def test_only_the_main_process_evaluates(tmp_path):
    """On a process other than world rank 0 a due step does nothing (no model is touched, nothing is written)."""
    from transformers import TrainerControl, TrainerState

    from metabench.integrations.transformers import MetabenchCallback

    cb = MetabenchCallback(every=2, out_dir=tmp_path / "evals")
    state = TrainerState(global_step=2, is_world_process_zero=False)
    cb.on_step_end(None, state, TrainerControl(), model=None, processing_class=None)
    assert not (tmp_path / "evals").exists() and state.log_history == []
