"""transformers integration: Auto classes, save/load, trust_remote_code without metabench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

import metabench.model
from metabench.model.configuration_meta import MetaConfig
from metabench.model.modeling_meta import CACHE_FIELD, MetaForCausalLM


def test_import_is_light():
    code = "import sys, metabench.model; assert 'torch' not in sys.modules, 'metabench.model imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_register_then_auto_roundtrip(hf_model, ids_with_meta, tmp_path):
    metabench.model.register()
    metabench.model.register()  # idempotent
    model = hf_model()
    model.save_pretrained(tmp_path)

    files = {p.name for p in tmp_path.iterdir()}
    assert {"model.safetensors", "config.json", "modeling_meta.py", "configuration_meta.py", "model.py"} <= files
    assert {"rope.py", "checkpoint.py"} <= files  # relative imports travel too
    assert not any(name.endswith(".bin") for name in files)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "metabench_meta"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_meta.MetaConfig",
        "AutoModelForCausalLM": "modeling_meta.MetaForCausalLM",
    }
    assert config["rope_parameters"] == {"rope_type": "default", "rope_theta": 10000.0}

    assert isinstance(AutoConfig.from_pretrained(tmp_path), MetaConfig)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is MetaForCausalLM
    assert loaded.model.lm_head.weight is loaded.model.wte.weight  # still tied
    ids = ids_with_meta([[3, 4, 10], [7]], 24)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)


REMOTE_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoMetabench(importlib.abc.MetaPathFinder):
        # metabench may be installed (editable); this run must not see it
        def find_spec(self, name, path=None, target=None):
            if name == "metabench" or name.startswith("metabench."):
                raise ImportError("metabench is hidden in this test")
            return None

    sys.meta_path.insert(0, NoMetabench())
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    ids = torch.load(sys.argv[2])
    with torch.no_grad():
        torch.save(model(ids).logits, sys.argv[3])
        out = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    torch.save(out, sys.argv[4])
    assert not any(m == "metabench" or m.startswith("metabench.") for m in sys.modules), "metabench was imported"
    print(type(model).__module__)
    """
)


@pytest.mark.slow
def test_trust_remote_code_in_fresh_process_without_metabench(hf_model, ids_with_meta, tmp_path):
    model = hf_model()
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    ids = ids_with_meta([[3, 4, 10], [7]], 24)
    torch.save(ids, tmp_path / "ids.pt")
    (tmp_path / "remote.py").write_text(REMOTE_SCRIPT)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    args = [str(ckpt), "ids.pt", "logits.pt", "generated.pt"]
    run = subprocess.run([sys.executable, "remote.py", *args], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().startswith("transformers_modules.")  # the copied code, not ours

    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "logits.pt"), model(ids).logits)
        want = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert torch.equal(torch.load(tmp_path / "generated.pt"), want)


def test_weights_are_safetensors_and_tied_once(hf_model, tmp_path):
    from safetensors import safe_open

    hf_model().save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "model.wte.weight" in keys and "model.lm_head.weight" not in keys
    assert any(".meta_attn.c_attn." in k for k in keys)


def test_labels_at_meta_positions_take_no_loss(hf_model, ids_with_meta, meta_id):
    model = hf_model()
    ids = ids_with_meta([[4, 5, 12], [9]], 20)
    with torch.no_grad():
        base = model(ids, labels=ids).loss
        changed = ids.clone()
        changed[ids == meta_id] = 17  # another target where the input is the meta-token
        assert torch.equal(model(ids, labels=changed).loss, base)
        changed_real = ids.clone()
        changed_real[0, 7] = (ids[0, 7] + 1) % meta_id  # a real target: the loss must notice
        assert not torch.equal(model(ids, labels=changed_real).loss, base)

        # and it is the mean cross-entropy over the non-meta targets, computed by hand
        logits = model(ids).logits[:, :-1]
        targets = ids[:, 1:]
        keep = targets != meta_id
        want = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(base, want)


@pytest.mark.slow
def test_training_step_reduces_loss(hf_model, ids_with_meta):
    model = hf_model(seed=3).train()
    ids = ids_with_meta([[2, 9], [5]], 32, seed=3)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        out = model(ids, labels=ids)
        assert getattr(out, CACHE_FIELD) is None  # no cache by default in training
        loss = out.loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is not None for n, p in model.named_parameters() if ".meta_attn." in n)
