"""metabench as lm-evaluation-harness tasks, through the real lm_eval CLI on a real tiny Llama.

The expensive runs are module fixtures shared by several tests:

- `hf_run`: `lm_eval --include_path tasks --tasks metabench_all --model hf`
  from the checkout, at 0.5x and 2x of the 1024-token context (2x with
  max_length=2048: the path where a long sample is evaluated whole);
- `runner_run`: `metabench run` on the same entries, lengths and samples,
  batch size 1 (lm-eval's HF default), the parity reference;
- `vllm_server` (conftest): lm-eval's local-completions against vLLM.

Aggregation is checked with a scripted lm-eval model that answers right at
one length only, so a length's metric must be exactly 1 or 0: a sample of
another length counted as a zero (or a placeholder) would show.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from metabench.errors import LengthError, MetabenchError
from metabench.lm_eval import TASKS_DIR
from metabench.lm_eval.convert import import_run
from metabench.lm_eval.dataset import doc_scores, samples
from metabench.lm_eval.settings import read_settings
from metabench.lm_eval.wrapper import lm_eval_argv
from metabench.results import read_rows, read_summary, summarize_rows

pytest.importorskip("lm_eval")

REPO = Path(__file__).resolve().parent.parent
TASKS = ("metabench_recall", "metabench_copy", "metabench_needle", "metabench_count", "metabench_parity",
         "metabench_abstain", "metabench_twohop", "metabench_mrcr",
         "metabench_variable_tracking", "metabench_common_words", "metabench_frequent_words")
# Log-likelihood variants: the tasks with one gold answer per sample (set-answer tasks have none).
LL_TASKS = tuple(f"{t}_ll" for t in TASKS[:7])
RULER_TASKS = ("metabench_ruler_niah", "metabench_ruler_vt", "metabench_ruler_cwe", "metabench_frequent_words")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
TRUNCATION_WARNINGS = ("Left truncation applied", "left truncated")  # lm-eval's HF and API models


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def task_yaml(name: str) -> dict:
    return yaml.load((TASKS_DIR / f"{name}.yaml").read_text(), Loader=_Loader)


def entries() -> list[str]:
    return [e for t in TASKS for e in task_yaml(t)["dataset_kwargs"]["entries"]]


def task_metrics(task: str) -> list[str]:
    """Every metric the task's entries score, primary first."""
    from metabench.tasks import parse_task, resolve

    specs = [resolve(*parse_task(e)) for e in task_yaml(task)["dataset_kwargs"]["entries"]]
    return list(dict.fromkeys(m for spec in specs for m in spec.metrics))


def run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: int = 400) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:6])}... exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


def results_json(out: Path) -> dict:
    (path,) = out.rglob("results_*.json")
    return json.loads(path.read_text())


def logged(out: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(out.rglob("samples_*.jsonl")) for line in p.read_text().splitlines()]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def hf_run(tiny_llama_dir, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("lm_eval_hf")
    proc = run([sys.executable, "-m", "lm_eval", "--include_path", "tasks", "--tasks", "metabench_all",
                "--model", "hf", "--model_args", f"pretrained={tiny_llama_dir},max_length=2048",
                "--metadata", "samples=2", "max_seq_lengths=[0.5x,2x]", "--output_path", str(out), "--log_samples"],
               cwd=REPO)
    return proc, out


@pytest.fixture(scope="module")
def runner_run(tiny_llama_dir, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("runner")
    suite = {"name": "lm-eval-parity", "seed": 0, "lengths": ["0.5x", "2x"], "samples": 2,
             "tasks": [dict(zip(("task", "variant"), e.split("/"))) for e in entries()]}
    (tmp / "suite.yaml").write_text(yaml.safe_dump(suite))
    run([sys.executable, "-m", "metabench", "run", "--model", f"hf:{tiny_llama_dir}", "--suite", "suite.yaml",
         "--out", "results", "--batch-size", "1", "--allow-beyond-context", "--quiet"], cwd=tmp)
    return tmp / "results"


# ----------------------------------------------------------------------------- the task folder


def test_tasks_folder_is_the_package_data():
    assert (REPO / "tasks").is_symlink() and (REPO / "tasks").resolve() == TASKS_DIR.resolve()
    assert os.readlink(REPO / "tasks") == "metabench/lm_eval/tasks"  # relative: survives a moved checkout
    names = sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))
    assert names == sorted({*TASKS, *RULER_TASKS, *LL_TASKS, "metabench_all", "metabench_ruler", "metabench_all_ll"})
    assert task_yaml("metabench_all")["task"] == list(TASKS)
    assert task_yaml("metabench_all_ll")["task"] == list(LL_TASKS)
    for t in LL_TASKS:  # the generate task's own wiring, loglikelihood requests over a subset of its entries
        y, base = task_yaml(t), task_yaml(t.removesuffix("_ll"))
        assert y["include"] == f"{base['task']}.yaml" and y["output_type"] == "loglikelihood"
        assert y["dataset_kwargs"]["scoring"] == "loglik"
        assert set(y["dataset_kwargs"]["entries"]) <= set(base["dataset_kwargs"]["entries"])
    assert task_yaml("metabench_ruler")["task"] == list(RULER_TASKS)
    from metabench.suite import load_suite

    ruler = [f"{e.task}/{e.variant}" for e in load_suite("ruler").entries]
    assert [e for t in RULER_TASKS for e in task_yaml(t)["dataset_kwargs"]["entries"]] == ruler  # the suite's, in order
    for t in {*TASKS, *RULER_TASKS}:
        y = task_yaml(t)
        assert y["task"] == t and y["class"] == "metabench.lm_eval.task.MetabenchTask"
        assert y["custom_dataset"] == "metabench.lm_eval.dataset.samples"
    assert "lm_eval/tasks/*.yaml" in (REPO / "pyproject.toml").read_text()


# ----------------------------------------------------------------------------- real lm_eval, HF model


@pytest.mark.slow
def test_loglik_tasks_score_as_metabench_run_loglik(tiny_llama_dir, tmp_path):
    """lm_eval --tasks metabench_all_ll gives, doc by doc, the greedy_match and answer_prob that
    `metabench run --scoring loglik` writes for the same samples."""
    out = tmp_path / "lm_eval"
    run([sys.executable, "-m", "lm_eval", "--include_path", "tasks", "--tasks", "metabench_all_ll", "--model", "hf",
         "--model_args", f"pretrained={tiny_llama_dir},max_length=1024", "--metadata", "samples=2",
         "max_seq_lengths=[0.5x]", "--output_path", str(out), "--log_samples"], cwd=REPO)
    ll_entries = [e for t in LL_TASKS for e in task_yaml(t)["dataset_kwargs"]["entries"]]
    suite = {"name": "ll", "seed": 0, "lengths": ["0.5x"], "samples": 2,
             "tasks": [dict(zip(("task", "variant"), e.split("/"))) for e in ll_entries]}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    run([sys.executable, "-m", "metabench", "run", "--model", f"hf:{tiny_llama_dir}", "--suite", "suite.yaml",
         "--scoring", "loglik", "--out", "results", "--quiet"], cwd=tmp_path)
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "results" / "results.jsonl").read_text().splitlines())}
    docs = logged(out)
    assert sorted(d["doc"]["id"] for d in docs) == sorted(rows)
    for d in docs:
        r = rows[d["doc"]["id"]]
        assert d["greedy_match"] == r["scores"]["greedy_match"], d["doc"]["id"]
        assert d["answer_prob"] == pytest.approx(r["scores"]["answer_prob"], rel=1e-3, abs=1e-6), d["doc"]["id"]
    assert "metabench_all_ll" in results_json(out)["groups"]



@pytest.mark.slow
def test_lm_eval_hf_reports_every_task_per_length(hf_run):
    proc, out = hf_run
    table = proc.stdout
    for t in TASKS:
        assert t in table
    for key in ("exact_match@512", "exact_match@2048", "string_match_all@512", "token_accuracy@2048"):
        assert key in table
    assert "metabench_all" in table.split("Groups")[-1]
    res = results_json(out)
    for t in TASKS:
        r = res["results"][t]
        n_entries = len(task_yaml(t)["dataset_kwargs"]["entries"])
        assert res["n-samples"][t]["effective"] == n_entries * 2 * 2
        primary = task_metrics(t)[0]
        for length in (512, 2048):
            assert 0.0 <= r[f"{primary}@{length},none"] <= 1.0
            assert res["higher_is_better"][t][f"{primary}@{length}"] is True
        assert not [k for k in r if k.endswith(",none") and "@" in k and "@512" not in k and "@2048" not in k]
    assert 0.0 <= res["results"]["metabench_all"]["exact_match,none"] <= 1.0


@pytest.mark.slow
def test_lm_eval_evaluates_2x_prompts_whole(hf_run):
    proc, out = hf_run
    assert not [w for w in TRUNCATION_WARNINGS if w in proc.stdout + proc.stderr]
    long = [r for r in logged(out) if r["doc"]["length"] == 2048]
    assert len(long) == len(entries()) * 2
    for r in long:
        doc = r["doc"]
        assert 1024 < doc["prompt_tokens"] and doc["prompt_tokens"] + doc["answer_budget"] <= 2048
        assert r["arguments"]["gen_args_0"]["arg_0"] == doc["prompt"]  # sent as generated, nothing added
        assert r["arguments"]["gen_args_0"]["arg_1"]["max_gen_toks"] == doc["answer_budget"]


@pytest.mark.slow
def test_lm_eval_matches_metabench_run(hf_run, runner_run, tmp_path):
    """Same model, samples and greedy decoding: lm-eval's predictions and per-length scores are metabench's."""
    _, out = hf_run
    imported = import_run(out, tmp_path / "imported").out
    ours = {r["id"]: r for r in read_rows(imported / "results.jsonl")}
    ref = {r["id"]: r for r in read_rows(runner_run / "results.jsonl")}
    assert set(ours) == set(ref) and len(ref) == len(entries()) * 2 * 2
    for key, r in ref.items():
        for field in ("prompt_sha256", "prompt_tokens", "target", "prediction", "scores", "depth", "length_label"):
            assert ours[key][field] == r[field], (key, field)
    # lm-eval's logs record no finish reason, so the import's truncated/errors counts are unknown (null), never 0.
    unknown = ("truncated", "errors")
    assert all(c[k] is None for c in read_summary(imported)["cells"] for k in unknown)
    def cells(folder):
        return [{k: v for k, v in c.items() if k not in unknown} for c in read_summary(folder)["cells"]]
    assert cells(imported) == cells(runner_run)
    # lm-eval's own per-length numbers equal the mean of metabench's scores over that task's samples.
    res = results_json(out)["results"]
    for t in TASKS:
        mine = set(task_yaml(t)["dataset_kwargs"]["entries"])
        for length in (512, 2048):
            rows = [r for r in ref.values() if r["entry"] in mine and r["length"] == length]
            for metric in rows[0]["scores"]:
                want = sum(r["scores"][metric] for r in rows) / len(rows)
                assert res[t][f"{metric}@{length},none"] == pytest.approx(want), (t, metric, length)


@pytest.mark.slow
def test_import_lm_eval_writes_a_results_folder(hf_run, tmp_path, capsys):
    from metabench.cli import main
    from metabench.report.runs import load_run

    _, out = hf_run
    assert main(["import-lm-eval", str(out), "--out", str(tmp_path / "r")]) == 0
    assert f"wrote {len(entries()) * 2 * 2} samples of metabench_recall, metabench_copy" in capsys.readouterr().out
    summary = read_summary(tmp_path / "r")
    rows = list(read_rows(tmp_path / "r" / "results.jsonl"))
    assert summary["cells"] == summarize_rows(rows)
    assert summary["model"]["spec"].startswith("lm-eval:hf:") and summary["model"]["context"] == 1024
    assert summary["model"]["window"] == 2048
    assert summary["suite"]["lengths"] == {"0.5x": 512, "2x": 2048}
    assert "--tasks metabench_all" in summary["provenance"]["command"]
    assert load_run(tmp_path / "r", per_cell=2).samples  # the leaderboard reads it
    assert main(["import-lm-eval", str(out), "--out", str(tmp_path / "r")]) == 2  # never overwrites
    assert "not an empty folder" in capsys.readouterr().err
    # Two runs in one --output_path: ambiguous, so the user picks one.
    (results,) = out.rglob("results_*.json")
    shutil.copy(results, results.with_name("results_2099-01-01T00-00-00.json"))
    try:
        with pytest.raises(MetabenchError, match="holds 2 lm-eval runs"):
            import_run(out, tmp_path / "r2")
    finally:
        results.with_name("results_2099-01-01T00-00-00.json").unlink()


def _copy_run(hf_run, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the lm-eval output to damage, and its first samples file."""
    src = tmp_path / "lm_eval_out"
    shutil.copytree(hf_run[1], src)
    return src, sorted(src.rglob("samples_*.jsonl"))[0]


@pytest.mark.slow
def test_import_counts_a_repeated_record_once(hf_run, tmp_path, capsys):
    from metabench.cli import main

    src, samples_file = _copy_run(hf_run, tmp_path)
    first = samples_file.read_text().splitlines()[0]
    with open(samples_file, "a") as f:
        f.write(first + "\n")
    assert main(["import-lm-eval", str(src), "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    doc_id = json.loads(first)["doc"]["id"]
    assert f"1 repeated row(s) counted once ({doc_id})" in err
    rows = list(read_rows(tmp_path / "r" / "results.jsonl"))
    n = len(entries()) * 2 * 2  # every entry at two lengths, two samples each
    assert len(rows) == n and len({r["id"] for r in rows}) == n
    entry, label = doc_id.rsplit("/", 2)[:2]
    cell = next(c for c in read_summary(tmp_path / "r")["cells"]
                if (c["entry"], c["length_label"], c["depth"]) == (entry, label, None))
    assert cell["n"] == 2  # --metadata samples=2


@pytest.mark.slow
@pytest.mark.parametrize("damage, message", [
    ("torn", ":3: not a JSON line"),
    ("other prediction", "has two different rows"),
    ("list", "holds a list, not lm-eval's results object"),
])
def test_import_refuses_damaged_logs_in_one_line(hf_run, tmp_path, capsys, damage, message):
    from metabench.cli import main

    src, samples_file = _copy_run(hf_run, tmp_path)
    lines = samples_file.read_text().splitlines()
    if damage == "torn":
        samples_file.write_text("\n".join(lines[:2] + [lines[2][: len(lines[2]) // 2]]) + "\n")
    elif damage == "other prediction":
        record = json.loads(lines[0])
        record["filtered_resps"] = ["something else entirely"]
        record.update(doc_scores(record["doc"], "something else entirely"))
        samples_file.write_text("\n".join(lines + [json.dumps(record)]) + "\n")
    else:
        (results,) = src.rglob("results_*.json")
        results.write_text("[1, 2]")
    assert main(["import-lm-eval", str(src), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- the wrapper, from a wheel


@pytest.mark.slow
def test_check_reads_a_real_lm_eval_run(hf_run, tmp_path):
    """`metabench baseline` and `check` on lm-eval's own results_*.json: every task's metrics, no groups."""
    from metabench.regress import check, load_baseline, write_baseline

    _, out = hf_run
    write_baseline(out, tmp_path / "b.json")
    names = {c.name for c in load_baseline(tmp_path / "b.json")["cells"]}
    assert {f"{t} exact_match@2048,none" for t in TASKS if "exact_match" in task_metrics(t)} <= names and not any("metabench_all" in n for n in names)
    assert check(out, tmp_path / "b.json").exit_code == 0
    data = results_json(out)
    data["results"]["metabench_copy"]["exact_match@512,none"] = "N/A"
    (tmp_path / "cand").mkdir()
    (tmp_path / "cand" / "results_x.json").write_text(json.dumps(data))
    report = check(tmp_path / "cand", tmp_path / "b.json")
    assert [(c.base.name, c.status) for c in report.failures] == [("metabench_copy exact_match@512,none", "missing")]


@pytest.mark.slow
def test_metabench_lm_eval_works_from_an_installed_wheel(tiny_llama_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "metabench", src / "metabench", ignore=shutil.ignore_patterns("__pycache__"))
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "whl"),
         str(src)], cwd=tmp_path)
    (wheel,) = (tmp_path / "whl").glob("metabench-*.whl")
    site = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(site), str(wheel)],
        cwd=tmp_path)
    env = {**ENV, "PYTHONPATH": str(site)}  # ahead of the checkout's editable install
    proc = run([sys.executable, "-m", "metabench", "lm-eval", "--tasks", "metabench_parity", "--model", "hf",
                "--model_args", f"pretrained={tiny_llama_dir}",
                "--metadata", "samples=1", "max_seq_lengths=[512]", "--output_path", "out"], cwd=tmp_path, env=env)
    assert "exact_match@512" in proc.stdout
    source = results_json(tmp_path / "out")["configs"]["metabench_parity"]["metadata"]["config_source"]
    assert Path(source).is_relative_to(site)


@pytest.mark.slow
def test_metabench_lm_eval_refuses_lengths_that_would_be_cut(tiny_llama_dir, tmp_path, capsys):
    from metabench.cli import main

    code = main(["lm-eval", "--tasks", "metabench_count", "--model", "hf", "--model_args", f"pretrained={tiny_llama_dir}",
                 "--metadata", "max_seq_lengths=[1x,2x]", "--output_path", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "metabench: error: metabench_count: lengths 2x (2048 tokens) exceed the 1024 tokens" in err
    assert "max_position_embeddings" in err and "--model_args ...,max_length=2048" in err
    assert not list(tmp_path.rglob("results_*.json"))


def test_help_lists_metabench_metadata_keys_before_lm_evals_help():
    from metabench.lm_eval.settings import METADATA_KEYS

    r = subprocess.run([sys.executable, "-m", "metabench", "lm-eval", "--help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    usage = r.stdout.index("usage: lm-eval")
    for key in METADATA_KEYS:
        assert -1 < r.stdout.find(f"  {key} ") < usage, key


def test_wrapper_argv():
    assert lm_eval_argv(["--tasks", "t"]) == ["lm-eval", "run", "--tasks", "t", "--include_path", str(TASKS_DIR)]
    assert lm_eval_argv(["ls", "tasks"]) == ["lm-eval", "ls", "tasks", "--include_path", str(TASKS_DIR)]
    assert lm_eval_argv(["--help"]) == ["lm-eval", "run", "--help"]
    with pytest.raises(MetabenchError, match="adds its own --include_path"):
        lm_eval_argv(["--tasks", "t", "--include_path", "mine"])


# ----------------------------------------------------------------------------- local-completions against vLLM


@pytest.mark.slow
def test_lm_eval_local_completions_against_vllm(vllm_server, tiny_llama_dir, tmp_path):
    proc = run([sys.executable, "-m", "lm_eval", "--include_path", "tasks", "--tasks", "metabench_recall",
                "--model", "local-completions", "--model_args",
                f"model=tiny,base_url={vllm_server}/completions,tokenizer_backend=huggingface,tokenizer={tiny_llama_dir}",
                "--metadata", "samples=1", "max_seq_lengths=[0.5x,1x]", "--output_path", str(tmp_path / "out"),
                "--log_samples"], cwd=REPO)
    assert "exact_match@1024" in proc.stdout and "string_match_all@512" in proc.stdout
    assert not [w for w in TRUNCATION_WARNINGS if w in proc.stdout + proc.stderr]
    res = results_json(tmp_path / "out")
    assert res["n-samples"]["metabench_recall"]["effective"] == 4
    summary = read_summary(import_run(tmp_path / "out", tmp_path / "r").out)
    assert summary["model"]["spec"] == "lm-eval:local-completions:tiny"
    assert {c["length"] for c in summary["cells"]} == {512, 1024}


# ----------------------------------------------------------------------------- aggregation, in process


def oracle(right: int):
    """An lm-eval model that answers right exactly at length `right`: per-length means must be exactly 1 or 0."""
    from lm_eval.api.model import LM

    class Oracle(LM):
        def generate_until(self, requests, disable_tqdm: bool = False):
            return [r.doc["target"] if r.doc["length"] == right else "no idea" for r in requests]

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError

    return Oracle()


def _task_manager(metadata: dict):
    """lm-eval's TaskManager over its own tasks and ours; `metadata` reaches custom_dataset as kwargs."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), metadata=metadata)


def _evaluate(tasks: list[str], tm, **kwargs) -> dict:
    return _evaluate_at(512, tasks, tm, **kwargs)


def _evaluate_at(right: int, tasks: list[str], tm, **kwargs) -> dict:
    from lm_eval import simple_evaluate

    return simple_evaluate(model=oracle(right), tasks=tasks, task_manager=tm, **kwargs)


@pytest.mark.slow
def test_per_length_metrics_count_only_their_own_samples(config_only_model):
    meta = {"pretrained": str(config_only_model), "samples": 2, "max_seq_lengths": ["0.5x", "1x"]}
    res = _evaluate(["metabench_all"], _task_manager(meta))
    for t in TASKS:
        r = res["results"][t]
        for metric in task_metrics(t):
            assert r[f"{metric}@512,none"] == 1.0 and r[f"{metric}@1024,none"] == 0.0, (t, metric)
            assert r[f"{metric},none"] == 0.5
        assert r[f"{task_metrics(t)[0]}@512_stderr,none"] == 0.0
    assert res["results"]["metabench_all"]["exact_match,none"] == 0.5


@pytest.mark.slow
def test_ruler_group_averages_its_eleven_entries(config_only_model):
    """metabench_ruler: RULER's tasks at RULER's settings, string_match_all over all of them."""
    meta = {"pretrained": str(config_only_model), "max_length": 12288, "samples": 1, "max_seq_lengths": [8192, 12288]}
    res = _evaluate_at(8192, ["metabench_ruler"], _task_manager(meta))
    for t in RULER_TASKS:
        r = res["results"][t]
        assert r["string_match_all@8192,none"] == 1.0 and r["string_match_all@12288,none"] == 0.0, t
    assert res["n-samples"]["metabench_ruler_niah"]["effective"] == 8 * 2
    assert res["results"]["metabench_ruler"]["string_match_all,none"] == 0.5


@pytest.mark.slow
def test_options_that_rewrite_prompts_are_refused(config_only_model):
    tm = _task_manager({"pretrained": str(config_only_model), "samples": 1, "max_seq_lengths": [512]})
    with pytest.raises(MetabenchError, match="changed the prompt of sample .*chat_template=true"):
        _evaluate(["metabench_parity"], tm, system_instruction="Answer briefly.")
    with pytest.raises(MetabenchError, match="max_gen_toks is set per sample"):
        _evaluate(["metabench_parity"], tm, gen_kwargs={"max_gen_toks": 4})


# ----------------------------------------------------------------------------- settings and bad input


def _kwargs(config_only_model: Path, **extra) -> dict:
    """What lm-eval passes custom_dataset: YAML metadata, model args, --metadata, dataset_kwargs."""
    return {"version": 1.0, "config_source": "/x/metabench_copy.yaml", "entries": ["copy/default"],
            "pretrained": str(config_only_model), **extra}


def test_defaults_and_context_from_config(config_only_model):
    s = read_settings(_kwargs(config_only_model))
    assert [(l.label, l.tokens) for l in s.lengths] == [("0.25x", 256), ("0.5x", 512), ("1x", 1024)]
    assert (s.samples, s.seed, s.context, s.limit.tokens) == (20, 0, 1024, 1024)
    s = read_settings(_kwargs(config_only_model, context=4096, max_seq_lengths="[0.5x, 8k]", max_length=8192))
    assert [l.tokens for l in s.lengths] == [2048, 8192] and s.limit.tokens == 8192
    for value, tokens in (([1024, "2k"], [1024, 2048]), ("0.5x,1x", [512, 1024]), (512, [512])):
        assert [l.tokens for l in read_settings(_kwargs(config_only_model, max_seq_lengths=value)).lengths] == tokens


def test_docs_are_metabench_samples_in_index_major_order(config_only_model):
    from metabench.generate import Options, make_sample
    from metabench.lengths import Length
    from metabench.suite import parse_suite
    from metabench.tokenizer import load_tokenizer

    ds = samples(**_kwargs(config_only_model, samples=2, max_seq_lengths=[512, 1024],
                           entries=["parity/default", "segment_count/default"]))["test"]
    assert [d["id"] for d in ds] == ["parity/default/512/0", "parity/default/1024/0", "segment_count/default/512/0",
                                     "segment_count/default/1024/0", "parity/default/512/1", "parity/default/1024/1",
                                     "segment_count/default/512/1", "segment_count/default/1024/1"]
    entry = parse_suite({"lengths": [512], "tasks": [{"task": "parity"}]}).entries[0]
    want = make_sample(entry, Length("1024", 1024), 1, 0, load_tokenizer(config_only_model), Options(context=1024))
    assert ds[5]["prompt"] == want.prompt and ds[5]["answer_budget"] == want.answer_budget
    right = doc_scores(ds[5], ds[5]["target"])
    assert right == {"exact_match": 1.0, "exact_match@1024": 1.0, "exact_match_strict": 1.0, "exact_match_strict@1024": 1.0}


@pytest.mark.parametrize("key,meant", [("sample", "samples"), ("lengths", "max_seq_lengths"),
                                       ("samlpes", "samples"), ("max_seq_length", "max_seq_lengths")])
def test_misspelled_metadata_key_is_named(config_only_model, key, meant):
    with pytest.raises(MetabenchError, match=f"unknown --metadata key '{key}' .*did you mean '{meant}'"):
        samples(**_kwargs(config_only_model, **{key: 2}))


def test_model_args_are_not_mistaken_for_metadata(config_only_model):
    # lm-eval merges --model_args into the same dict; these belong to HF, vLLM and API models.
    extra = {"attn_implementation": "sdpa", "chat_template_args": {}, "seed": 1234, "trust_remote_code": False,
             "dtype": "float32", "max_model_len": 1024, "tokenizer_backend": "huggingface"}
    assert read_settings(_kwargs(config_only_model, **extra)).seed == 0


@pytest.mark.parametrize("value,needle", [("[0.5x, lots]", "'lots'"), ("[512, 512]", "both 512 tokens"),
                                          ({"a": 1}, "must be a list"), ("[-3]", "'-3'")])
def test_malformed_lengths_name_the_key(config_only_model, value, needle):
    with pytest.raises(MetabenchError, match="max_seq_lengths") as exc:
        read_settings(_kwargs(config_only_model, max_seq_lengths=value))
    assert needle in str(exc.value)


def test_multiples_without_a_known_context(bytelevel_dir, config_only_model):
    with pytest.raises(MetabenchError, match="context=N"):
        read_settings({"entries": ["copy/default"], "tokenizer": str(bytelevel_dir), "max_length": 4096})
    s = read_settings({"entries": ["copy/default"], "tokenizer": str(bytelevel_dir), "max_length": 4096,
                       "max_seq_lengths": [1024]})
    assert s.context is None and s.lengths[0].tokens == 1024


def test_missing_tokenizer_says_what_to_pass(config_only_model):
    with pytest.raises(MetabenchError, match="pass `pretrained` or `tokenizer` in --model_args"):
        samples(entries=["copy/default"], max_seq_lengths=[512])
    with pytest.raises(MetabenchError, match="model='tiny' is neither a local folder.*served name.*tokenizer="):
        samples(entries=["copy/default"], model="tiny", base_url="http://127.0.0.1:1/v1/completions")


def test_truncation_check_follows_lm_eval_rules(config_only_model):
    two_x = {"max_seq_lengths": ["1x", "2x"]}
    with pytest.raises(LengthError, match=r"max_position_embeddings in .*config.json.*max_length=2048"):
        samples(**_kwargs(config_only_model, **two_x))
    assert read_settings(_kwargs(config_only_model, max_length=2048, **two_x)).limit.tokens == 2048  # HF: all of it
    assert read_settings(_kwargs(config_only_model, max_model_len=2048, **two_x)).limit.tokens == 2048  # vLLM
    api = {"model": "tiny", "tokenizer": str(config_only_model), "base_url": "http://127.0.0.1:1/v1/completions"}
    with pytest.raises(LengthError, match=r"exceed the 2047 tokens .*max_length=2049"):  # TemplateAPI keeps one back
        samples(entries=["copy/default"], max_length=2048, **api, **two_x)
    with pytest.raises(LengthError, match="default max_length 2048 for API models"):
        samples(entries=["copy/default"], **api, max_seq_lengths=["1x", "2x"])
    assert read_settings({"entries": ["copy/default"], **api, "max_length": 2049, **two_x}).limit.tokens == 2048


def test_api_models_must_keep_the_bos_metabench_counts(metaspace_dir):
    api = {"entries": ["parity/default"], "max_seq_lengths": [512], "samples": 1, "model": "tiny",
           "tokenizer": str(metaspace_dir), "base_url": "http://127.0.0.1:1/v1/completions"}
    with pytest.raises(MetabenchError, match="adds special tokens .*add_bos_token=True"):
        samples(**api)
    assert len(samples(**api, add_bos_token=True)["test"]) == 1


def test_thinking_tokens_and_reasoning_in_lm_eval_docs(config_only_model):
    """thinking_tokens widens every doc's max_gen_toks and counts against the limit; reasoning is not scored."""
    from metabench.lm_eval.dataset import doc_scores, samples

    kw = _kwargs(config_only_model, samples=1, max_seq_lengths=[512], entries=["parity/default"])
    plain = samples(**kw)["test"][0]
    thinking = samples(**{**kw, "thinking_tokens": 64})["test"][0]
    assert plain["max_gen_toks"] == plain["answer_budget"] and thinking["max_gen_toks"] == plain["answer_budget"] + 64
    target = thinking["target"]
    wrong = "1" if target == "0" else "0"
    assert doc_scores(thinking, f"<think>maybe {wrong}</think> {target}")["exact_match"] == 1.0
    assert doc_scores(thinking, f"<think>it is {target}")["exact_match"] == 0.0  # cut off while thinking
    with pytest.raises(MetabenchError, match=r"1024 tokens \+ 64 thinking"):
        samples(**{**_kwargs(config_only_model, samples=1, max_seq_lengths=[1024], entries=["parity/default"]),
                   "max_length": 1024, "thinking_tokens": 64})
    with pytest.raises(MetabenchError, match="enable_thinking acts only through lm-eval's --apply_chat_template"):
        samples(**{**kw, "enable_thinking": True})
