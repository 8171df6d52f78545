"""`datarl validate/score/sandbox-check/synth/sft/generate/eval`: records, scoring and sampling."""

from __future__ import annotations

import argparse
import os
import sys

from .common import (
    add_config,
    add_engine,
    add_layout,
    add_sampling,
    announce,
    policy_from,
    ray_options,
    router_config,
    sampling_from,
    sft_dir,
    stderr_is_tty,
)


def cmd_validate(args: argparse.Namespace) -> int:
    from datarl.records import format_errors
    from datarl.scoring import load_for_scoring

    loaded = load_for_scoring(args.input, router_config(args), layout=args.layout, announce=print)
    tasks: dict[str, int] = {}
    for rec in loaded.records:
        tasks[rec.task] = tasks.get(rec.task, 0) + 1
    mix = ", ".join(f"{t}={n}" for t, n in sorted(tasks.items())) or "none"
    print(f"{args.input}: {loaded.total_lines} lines, {len(loaded.records)} valid ({mix}), {len(loaded.errors)} bad")
    if loaded.errors:
        print(format_errors(loaded.errors, limit=args.max_errors), file=sys.stderr)
        return 1
    return 0


def _parse_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a records file without scoring it",
        description="Check every line of a JSONL/Parquet records file (or a datasets directory) against the "
        "record schema and the router. A file in another project's layout (verl, GSM8K, MATH, HumanEval, "
        "MBPP, APPS, IFEval, chat messages) is detected from its columns and its mapping printed first. "
        "Prints 'file:line: field: problem' for each bad line; exit 1 if any.",
    )
    p.add_argument("input", metavar="FILE")
    p.add_argument("--max-errors", type=int, default=50, help="errors to print (default 50)")
    add_layout(p)
    add_config(p)
    p.set_defaults(fn=cmd_validate)


def cmd_score(args: argparse.Namespace) -> int:
    from datarl.scoring import ScoreOptions, score_file

    options = ScoreOptions(
        workers=args.workers,
        timeout_s=args.timeout,
        strict=args.strict,
        progress=False if args.no_progress else None,
        router=router_config(args),
        engine=args.engine,
        ray=ray_options(args),
        layout=args.layout,
    )
    summary = score_file(args.input, args.output, options, announce=announce)
    print(summary.format())
    return 0


def _parse_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score responses with the reward router",
        description="Score every record that has a 'response' and write the records back with "
        "'reward', 'reward_source' and 'reward_info', in input order. Bad lines go "
        "to OUTPUT.errors.jsonl (or, with --strict, nothing is scored). The output "
        "appears only when the run completes.",
    )
    p.add_argument("input", metavar="INPUT", help="records, .jsonl or .parquet")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTPUT",
        help="where to write scored records (.jsonl, or .parquet with reward_info as JSON text)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: number of cores = %(default)s)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wall-clock limit per item; an item past it scores 0 with failure 'timeout' (default %(default)s)",
    )
    p.add_argument("--strict", action="store_true", help="refuse the whole file if any line is bad")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    add_layout(p)
    p.add_argument(
        "--partial-credit",
        action="store_true",
        help="code: reward = fraction of tests passed (default: 1 only if all pass)",
    )
    p.add_argument(
        "--unsafe-no-isolation",
        action="store_true",
        help="code: if no namespace isolation is available, run model code with rlimits only. "
        "DANGEROUS: the code can read your files and use the network",
    )
    add_engine(p)
    add_config(p)
    p.set_defaults(fn=cmd_score)


def cmd_sandbox_check(args: argparse.Namespace) -> int:
    from datarl.sandbox import format_check, sandbox_check

    rows = sandbox_check()
    print(format_check(rows))
    return 0 if all(ok for _, ok, _ in rows) else 1


def _parse_sandbox_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sandbox-check",
        help="show the code sandbox's isolation and run containment probes",
        description="Print which isolation rtv.code uses (user/pid/net/mount/ipc namespaces via "
        "unshare(2), uid drop, rlimits) and run probes: network, host files, "
        "process limits, memory, wall clock. Exit 1 if any probe fails.",
    )
    p.set_defaults(fn=cmd_sandbox_check)


def cmd_synth(args: argparse.Namespace) -> int:
    from datarl.errors import ConfigError
    from datarl.synth import SynthConfig, write_suite

    given: dict[str, int] = {}
    for item in args.eval_by_task or []:
        task, _, count = item.partition("=")
        if not count.strip().isdigit():
            raise ConfigError(f"--eval-by-task {item!r}: expected TASK=N, e.g. math=2100")
        given[task.strip()] = int(count)
    try:
        cfg = SynthConfig(
            seed=args.seed,
            train_per_task=args.train_per_task,
            pool_per_task=args.pool_per_task,
            eval_per_task=args.eval_per_task,
            eval_by_task=None if args.eval_by_task is None else given,
        )
    except ValueError as exc:  # a bad count: say which, without a traceback
        raise ConfigError(str(exc)) from None
    os.makedirs(args.out_dir, exist_ok=True)
    paths = write_suite(cfg, args.out_dir)
    for split, path in paths.items():
        print(f"{split:<9} {path}")
    return 0


def _parse_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="write the embedded synthetic task suite (train/pool/eval JSONL)",
        description="Generate seeded math, code, ifeval and general records with reference "
        "solutions and gold checks, as train.jsonl, pool.jsonl (prompts for Pre-PPO "
        "selection), eval.jsonl and manifest.json.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-per-task", type=int, default=600)
    p.add_argument("--pool-per-task", type=int, default=200)
    p.add_argument("--eval-per-task", type=int, default=300, help="eval records per task (default 300)")
    p.add_argument(
        "--eval-by-task",
        action="append",
        metavar="TASK=N",
        help="eval records for one task in place of --eval-per-task; repeatable (default: math gets "
        "7x --eval-per-task, 2100 at the default, so that a math gain of 1-3 points is beyond its "
        "95%% interval); --eval-by-task math=300 gives math the same count as the others",
    )
    p.set_defaults(fn=cmd_synth)


def cmd_sft(args: argparse.Namespace) -> int:
    from datarl.models.sft import SFTConfig, build_sft_policy

    path = build_sft_policy(SFTConfig(), cache_dir=args.cache_dir, force=args.force, progress=stderr_is_tty())
    print(path)
    return 0


def _parse_sft(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sft",
        help="build (or reuse) the embedded tiny SFT policy",
        description="Train the tokenizer and the tiny Llama-style policy on the synthetic suite "
        "with imperfect demonstrations. The result is a HF model directory cached by "
        "config hash under $DATARL_CACHE or ~/.cache/datarl; prints its path.",
    )
    p.add_argument("--cache-dir", metavar="DIR", help="where cached models live")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.set_defaults(fn=cmd_sft)


def cmd_generate(args: argparse.Namespace) -> int:
    from datarl.jobs import generate_file

    sampling = sampling_from(args)
    if args.backend == "vllm":
        summary = _generate_vllm_file(args, sampling)
    else:
        summary = generate_file(
            args.input,
            args.output,
            policy_from(args.policy),
            sampling,
            progress=stderr_is_tty(),
            layout=args.layout,
            announce=announce,
        )
    print(summary.format())
    return 0


def _generate_vllm_file(args: argparse.Namespace, sampling):  # -> GenerateSummary
    """`datarl generate --backend vllm`: the HF model is never loaded on the CPU, only its tokenizer."""
    import time

    from datarl.io import write_records
    from datarl.jobs import GenerateSummary, response_rows
    from datarl.models.generate import GenerationError
    from datarl.models.loading import resolve_alias
    from datarl.models.vllm_backend import generate_vllm, require_cuda, require_vllm
    from datarl.records import read_all_records

    require_cuda()  # both checks before building the tiny policy or reading a tokenizer
    require_vllm()
    path = sft_dir() if args.policy in (None, "tiny") else resolve_alias(args.policy)
    if path.endswith(".gguf"):
        raise GenerationError(f"--backend vllm needs a HF model directory or hub id, not a GGUF file ({path})")
    from transformers import AutoTokenizer

    records = read_all_records(args.input, layout=args.layout, announce=announce)
    tokenizer = AutoTokenizer.from_pretrained(path)
    start = time.perf_counter()
    gens = generate_vllm(path, [r.prompt for r in records], sampling, tokenizer=tokenizer)
    write_records(args.output, response_rows(records, gens, sampling.samples_per_prompt))
    return GenerateSummary(len(records), len(gens), sum(not g.finished for g in gens), time.perf_counter() - start)


def _parse_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="sample a policy on prompt records; writes records with 'response'",
        description="Sample a policy on every record of PROMPTS and write them back with "
        "'response' filled (with --n K: K records per prompt, ids ID#k), ready "
        "for `datarl score`.",
    )
    p.add_argument("input", metavar="PROMPTS")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    add_sampling(p, temperature=1.0)
    p.add_argument(
        "--backend",
        choices=("hf", "vllm"),
        default="hf",
        help="hf: transformers on CPU or GPU (default); vllm: vLLM on a CUDA GPU (pip install 'datarl[vllm]')",
    )
    add_layout(p)
    p.set_defaults(fn=cmd_generate)


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from datarl.io import write_records
    from datarl.jobs import eval_records, format_eval_table
    from datarl.records import read_all_records
    from datarl.synth import gold_check

    records = read_all_records(args.input, layout=args.layout, announce=announce)
    if args.limit:
        records = records[: args.limit]
    summary, rows = eval_records(
        records,
        policy_from(args.policy),
        sampling_from(args),
        gold_check,
        workers=args.workers,
        progress=stderr_is_tty(),
    )
    print(format_eval_table(summary["by_task"]))
    if args.output:
        write_records(args.output, rows)
    if args.summary:
        with open(args.summary, "w") as fh:
            json.dump({"input": args.input, "policy": args.policy or "tiny", **summary}, fh, indent=2)
    return 0


def _parse_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="generate on an eval split and score with the gold checks",
        description="Greedy-decode (by default) every eval record, score with the gold checks "
        "(verifiers; the hidden rubric for general) and print per-task accuracy with "
        "a 95%% confidence interval.",
    )
    p.add_argument("input", metavar="EVAL")
    p.add_argument("-o", "--output", metavar="OUT", help="write the scored responses here")
    p.add_argument("--summary", metavar="JSON", help="write the summary as JSON here")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N records")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="gold-check processes")
    add_sampling(p, temperature=0.0)
    add_layout(p)
    p.set_defaults(fn=cmd_eval)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands, in `datarl --help` order."""
    _parse_validate(sub)
    _parse_score(sub)
    _parse_sandbox_check(sub)
    _parse_synth(sub)
    _parse_sft(sub)
    _parse_generate(sub)
    _parse_eval(sub)
