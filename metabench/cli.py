"""The `metabench` command: thin subcommands over the library.

Each subcommand parses its flags, builds the library's config objects and
calls the library. A `MetabenchError` (bad input) is printed as one line,
`metabench: error: ...`, with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from metabench.errors import MetabenchError, warn


def _cmd_tasks(args: argparse.Namespace) -> int:
    from metabench.tasks import FAMILIES

    for family, variants in FAMILIES.items():
        first = next(iter(variants.values()))
        print(f"{family:<14} {first.description}")
        for name, spec in variants.items():
            defaults = type(spec)()
            changed = {k: v for k, v in spec.params().items() if v != defaults.params().get(k)}
            detail = ", ".join(f"{k}={v}" for k, v in changed.items()) or "defaults"
            print(f"  {name:<16} {detail}; metrics: {', '.join(spec.metrics)}")
    return 0


def _build_suite(args: argparse.Namespace):
    from metabench.suite import customize, load_suite

    tasks = args.tasks.split(",") if args.tasks else None
    lengths = tuple(x.strip() for x in args.lengths.split(",") if x.strip()) if args.lengths else None
    return customize(load_suite(args.suite), tasks=tasks, params=args.param or (), seed=args.seed, lengths=lengths,
                     samples=args.samples)


def _tokens(text: str | None) -> int | None:
    """--context: a number of tokens written as lengths are (4096, 128k, 1M)."""
    from metabench.lengths import parse_length

    if text is None:
        return None
    if text.strip().lower().endswith("x"):
        raise MetabenchError(f"--context {text!r} is a multiple; the context is tokens: 4096, 128k or 1M")
    try:
        return parse_length(text, None).tokens
    except MetabenchError:
        raise MetabenchError(f"--context must be a positive number of tokens (4096, 128k, 1M), got {text!r}") from None


def _cmd_generate(args: argparse.Namespace) -> int:
    from metabench.generate import Options, generate_to_file
    from metabench.reference_tokenizer import BUNDLED
    from metabench.source import model_window, resolve_model, tokenizer_folder
    from metabench.tokenizer import load_tokenizer

    suite = _build_suite(args)
    context, tokenizer = _tokens(args.context), args.tokenizer
    if args.context_from:
        if context is not None:
            raise MetabenchError("pass --context or --context-from, not both")
        source = resolve_model(args.context_from)
        window = model_window(source)
        context, tokenizer = window.context, tokenizer or str(source.folder)
        print(f"1x = {context} tokens ({window.source})", file=sys.stderr)
    tok = load_tokenizer(tokenizer_folder(tokenizer) if tokenizer else str(BUNDLED))
    opts = Options(
        context=context,
        marker=args.marker,
        chat_template=args.chat_template,
        haystack_files=tuple(args.haystack or ()),
        verify=args.verify_lengths,
    )
    n = generate_to_file(suite, tok, opts, args.out, progress=not args.quiet)
    print(f"wrote {n} samples to {args.out}")
    return 0


def _output_file(path: str | None, flag: str, example: str) -> None:
    """Refuse an output file path that names a folder, before any work is done."""
    if path is not None and Path(path).is_dir():
        raise MetabenchError(f"{flag} {path} is a folder; give a file path, e.g. {Path(path) / example}")


def _cmd_report(args: argparse.Namespace) -> int:
    from metabench.report import ReportOptions, build_report

    _output_file(args.out, "--out", "index.html")
    title = args.title or (Path(args.out).parent.name if Path(args.out).parent.name not in ("", ".") else "metabench")
    opts = ReportOptions(title=title, threshold=args.threshold, relative=args.relative,
                         samples=not args.no_samples, per_cell=args.samples_per_cell)
    path = build_report(args.results, args.out, opts, analyses=args.analysis)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


def _cmd_baseline(args: argparse.Namespace) -> int:
    from metabench.regress import make_baseline
    from metabench.results import write_json

    _output_file(args.out, "--out", "baseline.json")
    baseline = make_baseline(args.results)
    write_json(args.out, baseline)
    for why in baseline.get("left_out", []):  # not in the baseline, so never checked: say so
        print(f"left out {why}")
    print(f"wrote baseline {args.out}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from metabench.regress import CheckOptions, check, format_report
    from metabench.series import check_series

    _output_file(args.output, "--output", "check.txt")
    options = CheckOptions(args.tolerance, args.alpha, args.correction)
    if args.series:
        if args.results or args.baseline:
            raise MetabenchError("--series compares checkpoints with each other: pass no RESULTS and no --baseline")
        report = check_series(args.series, options)
    elif not (args.results and args.baseline):
        raise MetabenchError("pass RESULTS --baseline FILE, or --series DIR [DIR ...] for a training run's checkpoints")
    else:
        report = check(args.results, args.baseline, options)
    text = format_report(report, args.format)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"metabench check: {report.verdict()} ({args.format} written to {args.output})")
    else:
        sys.stdout.write(text)
    return report.exit_code


def _parse_rope(text: str | None) -> dict | None:
    """'{"rope_type": "yarn", "factor": 2}' or the shorthand 'yarn:factor=2,beta_fast=32'."""
    if not text:
        return None
    import json

    if text.lstrip().startswith("{"):
        try:
            rope = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MetabenchError(f"--rope: not valid JSON ({exc})") from None
    else:
        kind, _, rest = text.partition(":")
        rope = {"rope_type": kind}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq:
                raise MetabenchError(f"--rope {text!r}: write TYPE:KEY=VALUE,... e.g. yarn:factor=2")
            try:
                rope[key.strip()] = float(value) if "." in value or "e" in value else int(value)
            except ValueError:
                raise MetabenchError(f"--rope: {key} must be a number, got {value!r}") from None
    if not isinstance(rope, dict) or "rope_type" not in rope:
        raise MetabenchError("--rope needs a rope_type, e.g. yarn:factor=2")
    return rope


def _run_config(args: argparse.Namespace, model: str, out: Path, step: int | None):
    """The RunConfig of `run`'s flags (shared with `watch`) for one model, results folder and step."""
    from metabench.backends import BackendOptions
    from metabench.generate import Options
    from metabench.runner import RunConfig

    suite = _build_suite(args)
    for flag in ("batch_size", "max_model_len", "tensor_parallel_size", "data_parallel_size", "retries",
                 "request_timeout", "max_tokens"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise MetabenchError(f"--{flag.replace('_', '-')} must be a positive number, got {value}")
    backend = BackendOptions(
        dtype=args.dtype, device=args.device, batch_size=args.batch_size, max_model_len=args.max_model_len,
        tensor_parallel_size=args.tensor_parallel_size, data_parallel_size=args.data_parallel_size,
        gpu_memory_utilization=args.gpu_memory_utilization, rope_parameters=_parse_rope(args.rope),
        served_model=args.served_model, retries=args.retries, timeout_s=args.request_timeout,
        api_key_env=args.api_key_env, thinking=args.thinking, max_tokens=args.max_tokens,
    )
    opts = Options(marker=args.marker, chat_template=args.chat_template, haystack_files=tuple(args.haystack or ()),
                   answer_prefix=not args.no_answer_prefix, system=args.system)
    return RunConfig(
        model=model, suite=suite, out=out, tokenizer=args.tokenizer, context=_tokens(args.context),
        name=args.name, options=opts, backend=backend, allow_beyond_context=args.allow_beyond_context,
        progress=not args.quiet, command=" ".join(["metabench", *sys.argv[1:]]), scoring=args.scoring, step=step,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from metabench.results import truncation_warnings
    from metabench.runner import format_table, run

    summary = run(_run_config(args, args.model, Path(args.out), args.step))
    print(format_table(summary))
    for line in truncation_warnings(summary["cells"]):
        warn(line)
    print(f"results in {args.out}")
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    from metabench.watch import WatchConfig, watch

    if args.interval <= 0 or args.settle < 0:
        raise MetabenchError("--interval must be positive and --settle at least 0 (seconds)")
    template = _run_config(args, "hf:", Path(args.out), None)  # each checkpoint sets its model, folder and step
    failed = watch(WatchConfig(Path(args.dir), Path(args.out), template, args.follow, args.interval, args.settle))
    return 1 if failed else 0


def _cmd_train(args: argparse.Namespace) -> int:
    from metabench.train.loop import train
    from metabench.train.presets import PRESETS

    if args.preset not in PRESETS:
        raise MetabenchError(f"--preset {args.preset!r}: choose one of {', '.join(PRESETS)}")
    try:
        cfg = PRESETS[args.preset].train.with_overrides(
            seed=args.seed, meta_attention=False if args.no_meta_attention else None,
            induction_steps=args.induction_steps, induction_mix=args.induction_mix,
            pretrain_steps=args.pretrain_steps, finetune_steps=args.finetune_steps, batch_size=args.batch_size,
            micro_batch=args.micro_batch, lr=args.lr, ckpt_every=args.ckpt_every, log_every=args.log_every,
        )
    except ValueError as exc:
        raise MetabenchError(str(exc)) from None
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        train(cfg, args.out, device=args.device, quiet=args.quiet, workers=args.workers)
    except ValueError as exc:  # a config or state that cannot train: one line, what to fix
        raise MetabenchError(str(exc)) from None
    print(f"checkpoint in {args.out}")
    return 0


def _cmd_extend(args: argparse.Namespace) -> int:
    from metabench.train.extend import extend_and_finetune

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        extend_and_finetune(args.src, args.out, args.factor, steps=args.steps, lr=args.lr,
                            batch_size=args.batch_size, micro_batch=args.micro_batch, device=args.device,
                            workers=args.workers)
    except ValueError as exc:
        raise MetabenchError(str(exc)) from None
    print(f"checkpoint in {args.out}")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from metabench.analysis import AnalysisConfig, analyze, format_analysis

    if args.samples <= 0 or args.window <= 0:
        raise MetabenchError("--samples and --window must be positive")
    cfg = AnalysisConfig(checkpoint=args.checkpoint, out=Path(args.out), suite=args.suite,
                         lengths=tuple(x.strip() for x in args.lengths.split(",") if x.strip()), samples=args.samples,
                         window=args.window, marker=args.marker, ablation=not args.no_ablation)
    print(format_analysis(analyze(cfg)))
    print(f"analysis in {args.out}/analysis.json")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from metabench.reproduce import reproduce

    numbers = reproduce(args.preset, args.out, device=args.device, publish=args.publish, jobs=args.jobs)
    for name, model in numbers["models"].items():
        print(f"{name}:")
        for entry, cells in model["cells"].items():
            ordered = sorted(cells.items(), key=lambda kv: float(kv[0].rstrip("x")))
            print(f"  {entry:<24}" + "".join(f" {lab}={100 * c['score']:.0f}" for lab, c in ordered))
    print(f"leaderboard in {args.out}/leaderboard/index.html")
    return 0


def _suite_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="default", help="bundled suite name or YAML path (default: default)")
    p.add_argument("--lengths", help="comma-separated lengths overriding the suite's: 0.5x,1x,2x or 1024,4k")
    p.add_argument("--samples", type=int, help="samples per task and length, overriding the suite's")
    p.add_argument("--seed", type=int, help="suite seed override")
    p.add_argument("--tasks", help="comma-separated task[:variant] list replacing the suite's tasks")
    p.add_argument("--param", action="append", metavar="[TASK.]KEY=VALUE", help="override a task parameter (repeatable)")
    p.add_argument("--marker", help="insert this meta-token string at each task's meta-token positions")
    p.add_argument("--chat-template", action="store_true", help="wrap prompts in the tokenizer's chat template")
    p.add_argument("--haystack", nargs="+", metavar="FILE", help="use these text files as filler instead of procedural text")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_flags(p: argparse.ArgumentParser) -> None:
    """The flags of `run` that say how to evaluate a model (all but --model, --out and --step), shared with `watch`."""
    _suite_flags(p)
    p.add_argument("--tokenizer", help="tokenizer folder (default: the model folder; required for openai)")
    p.add_argument("--context", help="1x in tokens (4096, 128k, 1M); default: the model's configured window "
                   "(max_position_embeddings after its config's rope scaling) or the server's")
    p.add_argument("--system", metavar="TEXT", help="a system message before each prompt (openai-chat, or with --chat-template); "
                   "counted in the length")
    p.add_argument("--name", help="model name on leaderboards (default: the folder or served model name)")
    from metabench.results import SCORINGS

    p.add_argument("--scoring", default="generate", choices=SCORINGS,
                   help="generate: the model writes each answer (default) | loglik: one forward pass over prompt + "
                   "gold answer, scored by greedy_match and the answer's per-token probability (hf, vllm)")
    p.add_argument("--no-answer-prefix", action="store_true", help="end prompts at the question, without the task's answer prefix")
    p.add_argument("--allow-beyond-context", action="store_true", help="evaluate lengths above the model's window")
    p.add_argument("--rope", help="rope override composed with the config's own scaling, e.g. yarn:factor=2 (or "
                   "llama3:factor=16 on a llama3 config), or a JSON dict in transformers' rope_parameters format")
    p.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    p.add_argument("--device", default="auto", help="hf: auto | cpu | cuda | cuda:N")
    p.add_argument("--batch-size", type=int, default=8, help="requests per batch (hf) / concurrent requests (openai)")
    p.add_argument("--thinking", default="auto", metavar="auto|none|START,END",
                   help="how a reasoning model's thinking is told from its answer: a server's reasoning field or "
                        "<think>...</think> (auto, the default), other tags (START,END), or none; scoring sees the answer")
    p.add_argument("--max-tokens", type=int, metavar="N",
                   help="tokens a thinking model may spend, on top of each sample's answer budget (default 0)")


def _engine_flags(p: argparse.ArgumentParser) -> None:
    """`run`'s flags for vLLM and OpenAI-compatible servers (watch evaluates with transformers only)."""
    p.add_argument("--max-model-len", type=int, help="vllm: engine window (default: the longest sample)")
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--data-parallel-size", type=int, default=1)
    p.add_argument("--gpu-memory-utilization", type=float, help="vllm: share of accelerator (or CPU) memory to use")
    p.add_argument("--served-model", help="openai: model name (default: the server's first)")
    p.add_argument("--retries", type=int, default=5, help="openai: attempts per request, with exponential backoff")
    p.add_argument("--request-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="openai: seconds to wait for one answer before retrying it (default 120)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                   help="openai: environment variable holding the API key (default OPENAI_API_KEY; the key is never stored)")


def _cmd_lm_eval(args: argparse.Namespace) -> int:
    from metabench.lm_eval.wrapper import main as lm_eval_main

    return lm_eval_main(args.args)


def _cmd_import_lm_eval(args: argparse.Namespace) -> int:
    from metabench.lm_eval.convert import import_run

    done = import_run(args.source, args.out, args.name)
    print(f"wrote {done.rows} samples of {', '.join(done.tasks)} to {done.out}")
    if done.skipped:
        print(f"left out tasks that are not metabench's: {', '.join(done.skipped)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from metabench import __version__
    from metabench.reference_tokenizer import META_TOKEN

    p = argparse.ArgumentParser(prog="metabench", description="Long-context evaluation harness.")
    p.add_argument("--version", action="version", version=f"metabench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tasks", help="list task families and their variants")
    t.set_defaults(func=_cmd_tasks)

    g = sub.add_parser("generate", help="generate a suite's samples at exact token lengths (JSONL)")
    _suite_flags(g)
    g.add_argument("--tokenizer", help="tokenizer or model folder, or a hub id (default: --context-from's model, "
                   "else the bundled reference tokenizer)")
    g.add_argument("--context", help="the model's context in tokens (4096, 128k); lengths like 2x resolve against it")
    g.add_argument("--context-from", metavar="MODEL", help="take 1x from this model's config (a folder or hub id), "
                   "as `metabench run` does; its tokenizer too unless --tokenizer is given")
    g.add_argument("--verify-lengths", action="store_true", help="tokenize every prompt in full (slower; the default count is already exact for tokenizers that pass the additivity check)")
    g.add_argument("--out", required=True, help="output JSONL file")
    g.set_defaults(func=_cmd_generate)

    r = sub.add_parser("run", help="evaluate a model on a suite (transformers, vLLM or an OpenAI-compatible server)")
    r.add_argument("--model", required=True, help="hf:PATH | vllm:PATH (a folder or a hub id ORG/NAME[@REVISION]) | "
                   "openai:URL | openai-chat:URL (a /v1 base URL)")
    r.add_argument("--out", required=True, help="results folder; rerun the same command to resume")
    _run_flags(r)
    _engine_flags(r)
    r.add_argument("--step", type=int, help="training step of this checkpoint, for series in reports and check "
                   "--series (default: read from the model folder's name: checkpoint-N, step-N, global_stepN)")
    r.set_defaults(func=_cmd_run)

    w = sub.add_parser("watch", help="evaluate a training run's checkpoint folders (checkpoint-N, step-N, global_stepN) "
                       "in step order, each once; --follow waits for new ones")
    w.add_argument("dir", metavar="DIR", help="the folder holding the checkpoint folders (e.g. a Trainer's output_dir)")
    w.add_argument("--out", required=True, help="folder of results folders: OUT/<checkpoint folder name>/ per checkpoint")
    w.add_argument("--follow", action="store_true", help="keep polling DIR for new checkpoints (stop with Ctrl-C)")
    w.add_argument("--interval", type=float, default=60.0, metavar="SECONDS", help="seconds between polls (default 60)")
    w.add_argument("--settle", type=float, default=10.0, metavar="SECONDS",
                   help="a checkpoint with a file changed in the last SECONDS is still being written (default 10)")
    _run_flags(w)
    engine = argparse.ArgumentParser(add_help=False)
    _engine_flags(engine)
    w.set_defaults(func=_cmd_watch, **vars(engine.parse_args([])))  # hf only: the engine flags keep their defaults

    rp = sub.add_parser("reproduce", help="tokenizer -> training -> YaRN -> evaluation -> analyses -> leaderboard")
    rp.add_argument("--preset", default="tiny", help="micro | tiny | small | paper (default: tiny)")
    rp.add_argument("--out", required=True, help="folder for every stage's output; rerun to resume")
    rp.add_argument("--device", default="auto", help="auto | cpu | cuda")
    rp.add_argument("--publish", help="also copy the leaderboard, summaries and analyses to this folder")
    rp.add_argument("--jobs", type=int, help="independent stages run at once, each with cores/jobs threads "
                    "(default: 2 on CPU, 1 on GPU); the numbers depend on it through float rounding")
    rp.set_defaults(func=_cmd_reproduce)

    a = sub.add_parser("analyze", help="the paper's analyses on a meta-token checkpoint (entropy, cosine, zeroed positions)")
    a.add_argument("checkpoint", help="checkpoint folder (MetaForCausalLM with its tokenizer)")
    a.add_argument("--out", required=True, help="folder for analysis.json (and the ablation's results)")
    a.add_argument("--suite", default="paper", help="suite whose prompts are analysed (default: paper)")
    a.add_argument("--lengths", default="1x", help="lengths, relative to the checkpoint's window (default: 1x)")
    a.add_argument("--samples", type=int, default=10, help="samples per task and length")
    a.add_argument("--window", type=int, default=8, help="preceding tokens for the residual cosine similarity")
    a.add_argument("--marker", default=META_TOKEN, help="the checkpoint's meta-token string")
    a.add_argument("--no-ablation", action="store_true", help="skip the zeroed-positional-encoding evaluation")
    a.set_defaults(func=_cmd_analyze)

    tr = sub.add_parser("train", help="train the reference meta-token model (run under torchrun for DDP)")
    tr.add_argument("--preset", required=True, help="micro | tiny | small | paper (metabench/train/presets.py)")
    tr.add_argument("--out", required=True, help="checkpoint folder; rerun the same command to resume")
    tr.add_argument("--seed", type=int, help="model init and data seed (default 0)")
    tr.add_argument("--no-meta-attention", action="store_true", help="ablation: no meta-attention (meta-tokens stay in the data)")
    tr.add_argument("--induction-steps", type=int, help="override the preset's induction steps (short repeated spans, first)")
    tr.add_argument("--induction-mix", type=int, help="override the preset's induction rows added to every later step")
    tr.add_argument("--pretrain-steps", type=int, help="override the preset's pre-training steps")
    tr.add_argument("--finetune-steps", type=int, help="override the preset's fine-tuning steps")
    tr.add_argument("--batch-size", type=int, help="global rows per step (all processes)")
    tr.add_argument("--micro-batch", type=int, help="rows per forward in one process")
    tr.add_argument("--lr", type=float, help="peak learning rate")
    tr.add_argument("--ckpt-every", type=int, help="steps between resumable states")
    tr.add_argument("--log-every", type=int, help="steps between log lines")
    tr.add_argument("--device", default="auto", help="auto | cpu | cuda")
    tr.add_argument("--threads", type=int, help="torch CPU threads per process")
    tr.add_argument("--workers", type=int, default=0, help="data-loading processes per training process (GPU runs)")
    tr.add_argument("--quiet", action="store_true", help="no per-step lines on the terminal")
    tr.set_defaults(func=_cmd_train)

    ex = sub.add_parser("extend", help="YaRN-extend a checkpoint's window, optionally fine-tuning at the new one")
    ex.add_argument("src", help="checkpoint folder")
    ex.add_argument("--factor", type=float, required=True, help="new window / old window, e.g. 2")
    ex.add_argument("--out", required=True, help="new checkpoint folder")
    ex.add_argument("--steps", type=int, default=0, help="fine-tuning steps at the new window (default 0)")
    ex.add_argument("--lr", type=float, default=3e-4, help="peak learning rate of those steps")
    ex.add_argument("--batch-size", type=int, help="rows per step (default: the source's)")
    ex.add_argument("--micro-batch", type=int, help="rows per forward")
    ex.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ex.add_argument("--threads", type=int, help="torch CPU threads")
    ex.add_argument("--workers", type=int, default=0, help="data-loading processes")
    ex.set_defaults(func=_cmd_extend)

    r = sub.add_parser("report", help="leaderboard HTML (one self-contained file) from results folders")
    r.add_argument("results", nargs="+", metavar="RESULTS", help="results folders (a folder of them stands for each)")
    r.add_argument("--out", required=True, help="output HTML file, e.g. leaderboards/NAME/index.html")
    r.add_argument("--title", help="page title (default: the output's folder name)")
    r.add_argument("--threshold", type=float, default=85.6, help="effective-length threshold in percent (default: RULER's 85.6)")
    r.add_argument("--relative", type=float, default=85.0, help="relative effective length: percent of the shortest length's score (default 85)")
    r.add_argument("--no-samples", action="store_true", help="leave out the sample browsers")
    r.add_argument("--samples-per-cell", type=int, default=4, help="samples shown per task and length, failures first (default 4)")
    r.add_argument("--analysis", action="append", default=[], metavar="[NAME=]PATH",
                   help="add `metabench analyze` results (analysis.json or its folder) as an Analyses section; "
                        "NAME defaults to the checkpoint's folder name; repeatable")
    r.set_defaults(func=_cmd_report)

    b = sub.add_parser("baseline", help="store a run's per-cell statistics as a regression baseline (JSON)")
    b.add_argument("results", metavar="RESULTS", help="results folder")
    b.add_argument("--out", required=True, help="baseline file, e.g. leaderboards/baselines/NAME.json")
    b.set_defaults(func=_cmd_baseline)

    c = sub.add_parser("check", help="compare results with a baseline, or a training run's last checkpoint with its "
                       "best earlier one: exit 0 holds, 1 regression, 2 unusable input")
    c.add_argument("results", nargs="?", metavar="RESULTS", help="results folder")
    c.add_argument("--baseline", help="baseline file from `metabench baseline`")
    c.add_argument("--series", nargs="+", metavar="DIR", help="checkpoints of one training run: results folders with "
                   "a step, or folders of them (OUT/checkpoint-500/, ...); the last is held against the best earlier "
                   "one per cell")
    c.add_argument("--tolerance", type=float, default=2.0, help="drops up to this many points never fail (default 2)")
    c.add_argument("--alpha", type=float, default=0.05, help="one-sided significance level (default 0.05)")
    c.add_argument("--correction", choices=("none", "holm"), default="none", help="multiple-testing correction over cells (default none)")
    c.add_argument("--format", choices=("text", "markdown", "github", "junit"), default="text", help="output format (default text)")
    c.add_argument("--output", help="write the report to this file instead of stdout")
    c.set_defaults(func=_cmd_check)

    # Everything after `lm-eval` is lm-eval's: no option prefix here, so `--tasks` etc. pass through untouched.
    le = sub.add_parser("lm-eval", add_help=False, prefix_chars="\0",
                        help="lm-evaluation-harness with metabench's tasks included (arguments go to lm-eval)")
    le.add_argument("args", nargs="*", help="lm-eval's arguments, e.g. --tasks metabench_recall --model hf ...")
    le.set_defaults(func=_cmd_lm_eval)

    il = sub.add_parser("import-lm-eval", help="an lm-eval run (--log_samples) -> a metabench results folder")
    il.add_argument("source", metavar="OUTPUT_DIR", help="lm-eval's --output_path, or a results_*.json in it")
    il.add_argument("--out", required=True, help="new results folder, e.g. results/NAME")
    il.add_argument("--name", help="model name on leaderboards (default: the model folder's name)")
    il.set_defaults(func=_cmd_import_lm_eval)
    return p


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: atomic writers remove their .tmp, locks are released


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return args.func(args)
    except MetabenchError as exc:
        print(f"metabench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("metabench: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
