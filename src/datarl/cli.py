"""The ``datarl`` command line: parses arguments, calls one function, prints.

User mistakes (bad files, bad config) print a one-line ``datarl: error: ...`` and
exit 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Sequence

from datarl import __version__

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _router_config(args: argparse.Namespace):  # -> RouterConfig
    from datarl.config import load_config
    from datarl.rewards.router import RouterConfig

    data = load_config(args.config)
    reward = data.get("reward", data)  # accept a whole run config with a reward: section
    cfg = {k: reward[k] for k in ("router", "sources") if k in reward}
    code = dict((cfg.get("sources") or {}).get("rtv.code") or {})
    if getattr(args, "partial_credit", False):
        code["partial_credit"] = True
    if getattr(args, "unsafe_no_isolation", False):
        code["config"] = {**dict(code.get("config") or {}), "allow_unsafe": True}
    if code:
        cfg["sources"] = {**(cfg.get("sources") or {}), "rtv.code": code}
    return RouterConfig.from_mapping(cfg)


def cmd_validate(args: argparse.Namespace) -> int:
    from datarl.records import format_errors
    from datarl.scoring import load_for_scoring

    loaded = load_for_scoring(args.input, _router_config(args))
    tasks: dict[str, int] = {}
    for rec in loaded.records:
        tasks[rec.task] = tasks.get(rec.task, 0) + 1
    mix = ", ".join(f"{t}={n}" for t, n in sorted(tasks.items())) or "none"
    print(f"{args.input}: {loaded.total_lines} lines, {len(loaded.records)} valid ({mix}), "
          f"{len(loaded.errors)} bad")
    if loaded.errors:
        print(format_errors(loaded.errors, limit=args.max_errors), file=sys.stderr)
        return 1
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from datarl.scoring import ScoreOptions, score_file

    options = ScoreOptions(workers=args.workers, timeout_s=args.timeout, strict=args.strict,
                           progress=False if args.no_progress else None, router=_router_config(args),
                           engine=args.engine, ray=_ray_options(args))
    summary = score_file(args.input, args.output, options)
    print(summary.format())
    return 0


def cmd_sandbox_check(args: argparse.Namespace) -> int:
    from datarl.sandbox import format_check, sandbox_check

    rows = sandbox_check()
    print(format_check(rows))
    return 0 if all(ok for _, ok, _ in rows) else 1


def cmd_synth(args: argparse.Namespace) -> int:
    from datarl.synth import SynthConfig, write_suite

    cfg = SynthConfig(seed=args.seed, train_per_task=args.train_per_task, pool_per_task=args.pool_per_task,
                      eval_per_task=args.eval_per_task)
    os.makedirs(args.out_dir, exist_ok=True)
    paths = write_suite(cfg, args.out_dir)
    for split, path in paths.items():
        print(f"{split:<9} {path}")
    return 0


def _sampling(args: argparse.Namespace):  # -> SamplingConfig
    from datarl.models.generate import SamplingConfig

    return SamplingConfig(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                          samples_per_prompt=args.n, seed=args.seed, batch_size=args.batch_size)


def _policy(spec: str | None):  # -> Policy
    from datarl.models.loading import load_policy

    return load_policy(_sft_dir() if spec in (None, "tiny") else spec)


def _sft_dir() -> str:
    """The embedded tiny SFT policy, built on first use (progress on stderr)."""
    from datarl.models.sft import build_sft_policy

    return build_sft_policy(log=lambda m: print(m, file=sys.stderr))


def cmd_sft(args: argparse.Namespace) -> int:
    from datarl.models.sft import SFTConfig, build_sft_policy

    path = build_sft_policy(SFTConfig(), cache_dir=args.cache_dir, force=args.force, progress=_tty())
    print(path)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from datarl.jobs import generate_file

    sampling = _sampling(args)
    if args.backend == "vllm":
        summary = _generate_vllm_file(args, sampling)
    else:
        summary = generate_file(args.input, args.output, _policy(args.policy), sampling, progress=_tty())
    print(summary.format())
    return 0


def _generate_vllm_file(args: argparse.Namespace, sampling):  # -> GenerateSummary
    """`datarl generate --backend vllm`: the HF model is never loaded on the CPU, only its tokenizer."""
    import time

    from datarl.jobs import GenerateSummary, load_prompts, response_rows, write_jsonl_atomic
    from datarl.models.generate import GenerationError
    from datarl.models.loading import resolve_alias
    from datarl.models.vllm_backend import generate_vllm, require_cuda, require_vllm

    require_cuda()  # both checks before building the tiny policy or reading a tokenizer
    require_vllm()
    path = _sft_dir() if args.policy in (None, "tiny") else resolve_alias(args.policy)
    if path.endswith(".gguf"):
        raise GenerationError(f"--backend vllm needs a HF model directory or hub id, not a GGUF file ({path})")
    from transformers import AutoTokenizer

    records = load_prompts(args.input)
    tokenizer = AutoTokenizer.from_pretrained(path)
    start = time.perf_counter()
    gens = generate_vllm(path, [r.prompt for r in records], sampling, tokenizer=tokenizer)
    write_jsonl_atomic(args.output, response_rows(records, gens, sampling.samples_per_prompt))
    return GenerateSummary(len(records), len(gens), sum(not g.finished for g in gens), time.perf_counter() - start)


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from datarl.jobs import eval_records, format_eval_table, load_prompts, write_jsonl_atomic
    from datarl.synth import gold_check

    records = load_prompts(args.input)
    if args.limit:
        records = records[:args.limit]
    summary, rows = eval_records(records, _policy(args.policy), _sampling(args), gold_check,
                                 workers=args.workers, progress=_tty())
    print(format_eval_table(summary["by_task"]))
    if args.output:
        write_jsonl_atomic(args.output, rows)
    if args.summary:
        with open(args.summary, "w") as fh:
            json.dump({"input": args.input, "policy": args.policy or "tiny", **summary}, fh, indent=2)
    return 0


def cmd_make_pairs(args: argparse.Namespace) -> int:
    from datarl.jobs import load_prompts, write_jsonl_atomic
    from datarl.preferences import make_pairs

    records = load_prompts(args.input)
    if args.limit:
        records = records[:args.limit]
    sampling = _sampling(args)
    pairs = make_pairs([r.to_dict() for r in records], _policy(args.policy), samples_per_prompt=args.n,
                       label_noise=args.label_noise, seed=args.seed, sampling=sampling, progress=_tty())
    write_jsonl_atomic(args.output, pairs)
    by_task: dict[str, int] = {}
    for pair in pairs:
        by_task[pair["task"]] = by_task.get(pair["task"], 0) + 1
    print(f"{len(pairs)} pairs from {len(records)} prompts -> {args.output} "
          f"({', '.join(f'{t}={n}' for t, n in sorted(by_task.items()))}; "
          f"{sum(bool(p.get('flipped')) for p in pairs)} labels flipped)")
    return 0


def cmd_train_bt(args: argparse.Namespace) -> int:
    import json

    from datarl.models.bt_train import BTTrainConfig, train_bt
    from datarl.preferences import load_pairs

    metrics = train_bt(load_pairs(args.pairs), _base(args), args.output, BTTrainConfig(steps=args.steps, seed=args.seed),
                       progress=_tty())
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def cmd_train_genrm(args: argparse.Namespace) -> int:
    import json

    from datarl.jobs import load_prompts
    from datarl.models.genrm_train import GenRMTrainConfig, train_genrm
    from datarl.preferences import load_pairs

    gt_records = [r.to_dict() for r in load_prompts(args.gt)] if args.gt else None
    metrics = train_genrm(load_pairs(args.pairs), _base(args), args.output, GenRMTrainConfig(steps=args.steps, seed=args.seed),
                          gt_records=gt_records, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def cmd_build_references(args: argparse.Namespace) -> int:
    from datarl.jobs import load_prompts, write_jsonl_atomic
    from datarl.references import build_references

    records = load_prompts(args.input)
    sampling = _sampling(args)
    rows = build_references([r.to_dict() for r in records], _policy(args.policy), args.bt, n=args.n,
                            seed=args.seed, sampling=sampling, progress=_tty())
    write_jsonl_atomic(args.output, rows)
    print(f"{sum('reference_info' in r for r in rows)} general references (best of {args.n}) -> {args.output}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from datarl.report import ReportError, write_report

    try:
        html_path, png_path = write_report(args.run_dir, args.output)
    except ReportError as exc:
        print(f"datarl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"report: {html_path} (main figure: {png_path})")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from datarl.rl.setup import load_train_config
    from datarl.rl.trainer import train

    overrides = {}
    if args.resume:
        overrides["run_dir"] = os.path.abspath(args.resume)
    elif args.run_dir:
        overrides["run_dir"] = os.path.abspath(args.run_dir)
    cfg = load_train_config(args.config, overrides)
    if args.steps:
        import dataclasses

        cfg = dataclasses.replace(cfg, ppo=dataclasses.replace(cfg.ppo, steps=args.steps))
    result = train(cfg, resume=bool(args.resume), log=lambda m: print(m, file=sys.stderr))
    print(f"trained {result.steps} steps in {result.seconds:.0f} s -> {result.run_dir}"
          + (f" (best gold {result.best_gold:.3f} at step {result.best_step}: {result.run_dir}/best)"
             if result.best_gold is not None else ""))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from datarl.scoring import InputError
    from datarl.server import ServeConfig, serve

    try:
        cfg = ServeConfig(host=args.host, port=args.port, workers=args.workers, max_batch=args.max_batch,
                          max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, timeout_s=args.timeout,
                          strip_pattern=args.strip_pattern, router=_router_config(args))
    except ValueError as exc:
        raise InputError(str(exc)) from None

    def ready(url: str) -> None:
        print(url, flush=True)  # stdout: the bound URL alone, for scripts (port 0 picks a free port)
        print(f"datarl serve: POST rewards to {url}/get_reward (any path), GET {url}/health; "
              f"router {dict(cfg.router.table)}; Ctrl-C or SIGTERM stops after in-flight requests",
              file=sys.stderr, flush=True)

    try:
        return serve(cfg, on_ready=ready, verbose=args.verbose)
    except OSError as exc:
        raise InputError(str(exc)) from None


def cmd_select(args: argparse.Namespace) -> int:
    from datarl.config import load_config
    from datarl.select.prepo import SelectConfig
    from datarl.select.prepo_engine import run_select

    defaults = SelectConfig()
    flags = {"strategy": args.strategy, "fraction": args.fraction, "count": args.count, "scope": args.scope,
             "normalise": args.normalise, "domains": args.domains.split(",") if args.domains else None,
             "drop_unsolvable": True if args.drop_unsolvable else None, "dedup": False if args.no_dedup else None}
    overrides = {k: v for k, v in flags.items() if v is not None}
    # Sampling flags always have a value; one left at its default must not override the config's select: section.
    sampled = {"samples_per_prompt": args.n, "temperature": args.temperature, "top_p": args.top_p,
               "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "seed": args.seed,
               "timeout_s": args.timeout}
    overrides.update({k: v for k, v in sampled.items() if v != getattr(defaults, k)})
    cfg = SelectConfig.from_mapping(load_config(args.config).get("select"), overrides)
    scores = args.scores or args.output + ".scores.jsonl"
    try:
        summary = run_select(args.input, args.output, policy=lambda: _policy(args.policy),
                             router_config=_router_config(args), cfg=cfg, train_path=args.train, merge=args.merge,
                             workers=args.workers, progress=False if args.no_progress else None,
                             scores_path=scores, restart=args.restart, engine=args.engine, ray=_ray_options(args))
    except KeyboardInterrupt:
        if os.path.exists(scores):
            print(f"datarl: the scores so far are saved in {scores}; run the same command again to resume",
                  file=sys.stderr)
        raise
    print(summary.format())
    return 0


def cmd_export_verl(args: argparse.Namespace) -> int:
    from datarl.config import load_config
    from datarl.integrations.verl import VerlExportError, export_verl, verl_overrides
    from datarl.records import load_records
    from datarl.rewards.router import Router
    from datarl.scoring import InputError
    from datarl.select.curriculum import CurriculumConfig, CurriculumError

    data = load_config(args.config)
    ppo = data.get("ppo") if isinstance(data.get("ppo"), dict) else {}
    steps, per_step = args.steps or ppo.get("steps"), args.prompts_per_step or ppo.get("prompts_per_step")
    if bool(steps) != bool(per_step):
        raise InputError("give both --steps and --prompts-per-step (or ppo: {steps, prompts_per_step} in --config) "
                         "to bake the curriculum into row order, or neither to keep the input order")
    if not os.path.exists(args.input):
        raise InputError(f"{args.input}: no such file")
    loaded = load_records(args.input)
    if loaded.errors:
        raise InputError(f"{len(loaded.errors)} bad line(s), first: {loaded.errors[0]}; "
                         f"`datarl validate {args.input}` lists them all")
    seed = args.seed if args.seed is not None else int(data.get("seed") or 0)
    try:
        curriculum = CurriculumConfig.from_value(data.get("curriculum"), steps) if steps else None
        summary = export_verl(loaded.records, args.output, curriculum=curriculum, steps=steps,
                              prompts_per_step=per_step, seed=seed, router=Router(_router_config(args)))
    except (VerlExportError, CurriculumError) as exc:
        raise InputError(str(exc)) from None
    print(summary.format())
    print("verl overrides: " + " ".join(verl_overrides(args.output, prompts_per_step=summary.prompts_per_step,
                                                       reward_config=args.config)))
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    from datarl.pipeline import load_pipeline_config, run_pipeline

    cfg = load_pipeline_config(args.config, args.run_dir)
    run_pipeline(cfg, log=lambda m: print(m, file=sys.stderr))
    report = os.path.join(cfg.run_dir, "train", "report.html")
    print(f"report: {report}")
    return 0


def _tty() -> bool:
    return sys.stderr.isatty()


def _add_engine(p: argparse.ArgumentParser, *, generation: bool = False) -> None:
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: forked worker processes (default); ray: Ray Data actor pools, same results "
                        "(pip install 'datarl[ray]')")
    p.add_argument("--ray-address", metavar="ADDR", default="local",
                   help="with --engine ray: 'local' starts a private Ray here (default), 'auto' joins this "
                        "machine's cluster, or HOST:PORT / ray://HOST:10001")
    p.add_argument("--ray-actors", type=int, metavar="N",
                   help="with --engine ray: verifier actors, one CPU each (default: one per cluster CPU)")
    p.add_argument("--ray-judge-gpus", type=float, default=0.0, metavar="G",
                   help="with --engine ray: GPUs per actor of the model sources bt/genrm (default 0: CPU)")
    if generation:
        p.add_argument("--ray-generate-gpus", type=float, default=0.0, metavar="G",
                       help="with --engine ray: sample in a Ray actor with G GPUs (default 0: in this process)")


def _ray_options(args: argparse.Namespace):  # -> RayOptions | None
    if args.engine != "ray":
        return None
    from datarl.executors.ray_engine import RayOptions
    from datarl.scoring import InputError

    try:
        return RayOptions(address=args.ray_address, actors=args.ray_actors, judge_gpus=args.ray_judge_gpus,
                          generate_gpus=getattr(args, "ray_generate_gpus", 0.0))
    except ValueError as exc:
        raise InputError(f"bad --ray-* option: {exc}") from None


def _add_sampling(p: argparse.ArgumentParser, *, temperature: float, n: int = 1) -> None:
    p.add_argument("--policy", metavar="PATH",
                   help="HF model directory, .gguf file, hub id in the local cache, 'smollm2-135m', or 'tiny' "
                        "(default: the embedded tiny SFT policy, built and cached on first use)")
    p.add_argument("--n", type=int, default=n, help="samples per prompt (default %(default)s)")
    p.add_argument("--temperature", type=float, default=temperature, help="0 = greedy (default %(default)s)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=128, help="per response (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="sequences decoded together (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default %(default)s)")


def _add_training(p: argparse.ArgumentParser, *, steps: int, saves: str) -> None:
    p.add_argument("pairs", metavar="PAIRS", help="JSONL of {prompt, chosen, rejected, task, ...}")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help=f"where to save {saves}")
    p.add_argument("--base", metavar="PATH", help="model directory to start from (default: the tiny SFT policy)")
    p.add_argument("--steps", type=int, default=steps, help="optimiser steps (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)


def _base(args: argparse.Namespace) -> str:
    return args.base or _sft_dir()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="datarl",
        description="Data-centric RLHF: hybrid rewards (verifiers + generative RM), Pre-PPO prompt "
                    "selection, curriculum PPO. Records are JSONL or Parquet (see README, 'Records').",
    )
    parser.add_argument("--version", action="version", version=f"datarl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", metavar="FILE",
                       help="YAML/JSON config; its 'router:' maps task -> source, 'sources:' sets source "
                            "options (e.g. sources: {rtv.math: {rel_tol: 1e-6}})")

    p = sub.add_parser("validate", help="check a records file without scoring it",
                       description="Check every line of a JSONL/Parquet records file against the record "
                                   "schema and the router. Prints 'file:line: field: problem' for each bad "
                                   "line; exit 1 if any.")
    p.add_argument("input", metavar="FILE")
    p.add_argument("--max-errors", type=int, default=50, help="errors to print (default 50)")
    add_config(p)
    p.set_defaults(fn=cmd_validate)

    p = sub.add_parser("score", help="score responses with the reward router",
                       description="Score every record that has a 'response' and write the records back with "
                                   "'reward', 'reward_source' and 'reward_info', in input order. Bad lines go "
                                   "to OUTPUT.errors.jsonl (or, with --strict, nothing is scored). The output "
                                   "appears only when the run completes.")
    p.add_argument("input", metavar="INPUT", help="records, .jsonl or .parquet")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="where to write scored records (.jsonl, or .parquet with reward_info as JSON text)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: number of cores = %(default)s)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="wall-clock limit per item; an item past it scores 0 with failure 'timeout' "
                        "(default %(default)s)")
    p.add_argument("--strict", action="store_true", help="refuse the whole file if any line is bad")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.add_argument("--partial-credit", action="store_true",
                   help="code: reward = fraction of tests passed (default: 1 only if all pass)")
    p.add_argument("--unsafe-no-isolation", action="store_true",
                   help="code: if no namespace isolation is available, run model code with rlimits only. "
                        "DANGEROUS: the code can read your files and use the network")
    _add_engine(p)
    add_config(p)
    p.set_defaults(fn=cmd_score)

    p = sub.add_parser("sandbox-check", help="show the code sandbox's isolation and run containment probes",
                       description="Print which isolation rtv.code uses (user/pid/net/mount/ipc namespaces via "
                                   "unshare(2), uid drop, rlimits) and run probes: network, host files, "
                                   "process limits, memory, wall clock. Exit 1 if any probe fails.")
    p.set_defaults(fn=cmd_sandbox_check)

    p = sub.add_parser("synth", help="write the embedded synthetic task suite (train/pool/eval JSONL)",
                       description="Generate seeded math, code, ifeval and general records with reference "
                                   "solutions and gold checks, as train.jsonl, pool.jsonl (prompts for Pre-PPO "
                                   "selection), eval.jsonl and manifest.json.")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-per-task", type=int, default=600)
    p.add_argument("--pool-per-task", type=int, default=200)
    p.add_argument("--eval-per-task", type=int, default=100)
    p.set_defaults(fn=cmd_synth)

    p = sub.add_parser("sft", help="build (or reuse) the embedded tiny SFT policy",
                       description="Train the tokenizer and the tiny Llama-style policy on the synthetic suite "
                                   "with imperfect demonstrations. The result is a HF model directory cached by "
                                   "config hash under $DATARL_CACHE or ~/.cache/datarl; prints its path.")
    p.add_argument("--cache-dir", metavar="DIR", help="where cached models live")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.set_defaults(fn=cmd_sft)

    p = sub.add_parser("generate", help="sample a policy on prompt records; writes records with 'response'",
                       description="Sample a policy on every record of PROMPTS and write them back with "
                                   "'response' filled (with --n K: K records per prompt, ids ID#k), ready "
                                   "for `datarl score`.")
    p.add_argument("input", metavar="PROMPTS")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    _add_sampling(p, temperature=1.0)
    p.add_argument("--backend", choices=("hf", "vllm"), default="hf",
                   help="hf: transformers on CPU or GPU (default); vllm: vLLM on a CUDA GPU "
                        "(pip install 'datarl[vllm]')")
    p.set_defaults(fn=cmd_generate)

    p = sub.add_parser("eval", help="generate on an eval split and score with the gold checks",
                       description="Greedy-decode (by default) every eval record, score with the gold checks "
                                   "(verifiers; the hidden rubric for general) and print per-task accuracy with "
                                   "a 95%% confidence interval.")
    p.add_argument("input", metavar="EVAL")
    p.add_argument("-o", "--output", metavar="OUT", help="write the scored responses here")
    p.add_argument("--summary", metavar="JSON", help="write the summary as JSON here")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N records")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="gold-check processes")
    _add_sampling(p, temperature=0.0)
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("make-pairs", help="preference pairs from policy samples, labelled by the gold checks",
                       description="Sample the policy N times per prompt, score each sample with the gold checks "
                                   "(verifiers; the hidden rubric for general), pair samples whose gold scores "
                                   "differ (chosen = higher), and flip a --label-noise fraction of labels, as "
                                   "human labels are noisy. Flipped pairs are marked for analysis only.")
    p.add_argument("input", metavar="PROMPTS")
    p.add_argument("-o", "--output", required=True, metavar="PAIRS")
    p.add_argument("--label-noise", type=float, default=0.1, help="fraction of flipped labels (default 0.1)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N prompts")
    _add_sampling(p, temperature=1.0, n=4)
    p.set_defaults(fn=cmd_make_pairs)

    p = sub.add_parser("train-bt", help="train a Bradley-Terry reward model on preference pairs",
                       description="Train a sequence-classification head on a causal LM backbone (the tiny SFT "
                                   "policy by default) with the Bradley-Terry loss; report held-out pair "
                                   "accuracy (split by prompt) overall and per task.")
    _add_training(p, steps=200, saves="the reward model")
    p.set_defaults(fn=cmd_train_bt)

    p = sub.add_parser("train-genrm", help="train the pairwise generative judge (GenRM)",
                       description="Train a judge from a causal LM (the tiny SFT policy by default) as a "
                                   "next-token classifier over the verdict tokens 'A'/'B', on judge examples "
                                   "made from the pairs in both orders and, with --gt, on (response, ground "
                                   "truth) examples. Use it with sources: {genrm.gt: {judge: DIR}}.")
    _add_training(p, steps=600, saves="the judge")
    p.add_argument("--gt", metavar="RECORDS", help="records with ground_truth and response (e.g. scored SFT "
                                                   "samples) for judge-vs-ground-truth examples")
    p.set_defaults(fn=cmd_train_genrm)

    p = sub.add_parser("build-references", help="best-of-N SFT references for general prompts, picked by BT",
                       description="For every general record, sample N responses from the policy, score them "
                                   "with the BT model and write the best as 'reference' (with reference_info: "
                                   "N, the scores, the chosen index). Other records pass through unchanged.")
    p.add_argument("input", metavar="POOL")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.add_argument("--bt", required=True, metavar="DIR", help="BT reward model directory (datarl train-bt)")
    _add_sampling(p, temperature=1.0, n=8)
    p.set_defaults(fn=cmd_build_references)

    p = sub.add_parser("select", help="Pre-PPO: keep the pool prompts the policy scores lowest (resumable)",
                       description="Sample the policy --n times per POOL prompt, score the samples with the reward "
                                   "router, normalise each prompt's mean reward within its domain and keep the "
                                   "lowest-scoring fraction (PAPER section 4). Writes SELECTED (pool records with "
                                   "a 'prepo' field; with --merge the training set first), SELECTED.report.json "
                                   "(per-domain histograms, thresholds, kept and dropped counts) and, as it goes, "
                                   "the scores file: after an interruption, the same command resumes. Flags "
                                   "override the config's select: section.")
    p.add_argument("input", metavar="POOL")
    p.add_argument("-o", "--output", required=True, metavar="SELECTED")
    p.add_argument("--train", metavar="TRAIN", help="the original training set: pool prompts repeating one are "
                                                     "dropped (case and whitespace folded)")
    p.add_argument("--merge", action="store_true", help="write TRAIN's records, then the selected ones")
    p.add_argument("--strategy", choices=("lowest", "random", "all"),
                   help="lowest (Pre-PPO, default), or the baselines random (same count, seeded) and all")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--fraction", type=float, help="share of the eligible prompts to keep (default 0.1)")
    size.add_argument("--count", type=int, help="keep exactly N prompts (to compare strategies at one count)")
    p.add_argument("--scope", choices=("domain", "global"),
                   help="keep the fraction of every domain (default), or the lowest normalised scores overall")
    p.add_argument("--normalise", choices=("zscore", "rank", "none"),
                   help="normalisation within each domain (default zscore; rank = percentile)")
    p.add_argument("--domains", metavar="D1,D2", help="only these domains (a name matches a domain, its prefix "
                                                      "before a dot, e.g. math for math.addsub, or a task)")
    p.add_argument("--drop-unsolvable", action="store_true", help="drop prompts where no sample scored above 0")
    p.add_argument("--no-dedup", action="store_true",
                   help="keep pool prompts that repeat a training prompt or an earlier pool prompt")
    p.add_argument("--scores", metavar="FILE", help="the resumable scores file (default SELECTED.scores.jsonl); "
                                                    "one scoring pass serves every strategy")
    p.add_argument("--restart", action="store_true", help="discard the scores file and sample from scratch")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="scoring processes (default: number of cores = %(default)s)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="wall-clock limit per scored sample (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    _add_engine(p, generation=True)
    add_config(p)
    _add_sampling(p, temperature=1.0, n=4)
    p.set_defaults(fn=cmd_select)

    p = sub.add_parser("train", help="PPO on a policy with the hybrid reward, a curriculum and monitors",
                       description="Run PPO as CONFIG says (YAML/JSON: policy, data, reward, curriculum, ppo, "
                                   "eval, hacking, logging, run_dir; see docs/ppo.md). Writes metrics.jsonl, "
                                   "eval.jsonl, checkpoints/, best/ and summary.json under the run directory. "
                                   "Every config problem is reported before any model is loaded.")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last checkpoint (after a crash or kill -9)")
    p.add_argument("--run-dir", metavar="DIR", help="override run_dir from the config")
    p.add_argument("--steps", type=int, default=0, help="override ppo.steps")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("pipeline", help="the whole system: synth, SFT, rewards, Pre-PPO, PPO, eval, report",
                       description="Run the stages synth -> sft -> pairs -> bt -> genrm -> references -> select -> "
                                   "train -> eval -> report in order under run_dir. A stage whose outputs exist "
                                   "and whose config and inputs are unchanged is skipped, so an interrupted run "
                                   "continues where it stopped. examples/demo.yaml is the embedded default "
                                   "(`make demo`); examples/pipeline_user.yaml runs on your data with an HF policy.")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("--run-dir", metavar="DIR", help="override run_dir from the config")
    p.set_defaults(fn=cmd_pipeline)

    p = sub.add_parser("report", help="write a self-contained HTML report of a training run",
                       description="Read RUN_DIR (config.json, metrics.jsonl, eval.jsonl, summary.json, "
                                   "selection/report.json) and write one HTML page with inline plots (training "
                                   "curves, gold scores, hacking gap and alarms, diversity, curriculum, Pre-PPO "
                                   "selection, before/after table) plus the main figure as PNG; prints the path.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("-o", "--output", metavar="OUT.html",
                   help="where to write the page (default RUN_DIR/report.html); the PNG goes next to it")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("serve", help="serve the reward router over HTTP (OpenRLHF's remote reward model)",
                       description="Answer OpenRLHF's remote reward requests (--reward.remote_url URL/get_reward): "
                                   "POST {query, prompts, labels} -> {rewards, scores, extra_logs}, always HTTP "
                                   "200 with per-sample errors flagged. Labels are JSON records "
                                   "(datarl.integrations.openrlhf.make_label) or math answers. Samples of "
                                   "concurrent requests are scored together. GET /health. Prints the bound URL.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=0, help="port; 0 = any free port (default %(default)s)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="scoring worker processes (default: number of cores = %(default)s)")
    p.add_argument("--max-batch", type=int, default=256, help="samples scored together (default %(default)s)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long to wait for more samples before scoring a batch (default %(default)s)")
    p.add_argument("--max-queue", type=int, default=4096,
                   help="samples allowed to wait; requests beyond it are flagged 'overloaded' (default %(default)s)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="wall-clock limit per sample; past it the sample scores 0 with failure 'timeout' "
                        "(default %(default)s)")
    p.add_argument("--strip-pattern", metavar="REGEX", default=r"<\|[\w.\-]{1,40}\|>|</s>|<eos>|<end_of_turn>|<pad>",
                   help="end-of-sequence markers removed from the end of each response ('' keeps them; "
                        "default %(default)s)")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    add_config(p)
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("export-verl", help="write records as a verl RL dataset (parquet), curriculum in row order",
                       description="Write one verl RLHFDataset row per prompt (data_source 'datarl/<task>', chat "
                                   "prompt, reward_model.ground_truth as a string, extra_info with the datarl "
                                   "record). With --steps and --prompts-per-step the rows are the curriculum's "
                                   "batches in order (phases from the config's curriculum: section, default "
                                   "'paper'): run verl with data.shuffle=False and data.train_batch_size = "
                                   "prompts per step. Score with reward.custom_reward_function.path = "
                                   "datarl/integrations/verl.py, name = compute_score. Prints the overrides.")
    p.add_argument("input", metavar="INPUT", help="records, .jsonl or .parquet")
    p.add_argument("-o", "--output", required=True, metavar="OUT.parquet")
    p.add_argument("--steps", type=int, default=0, help="training steps to lay out (default: the config's ppo.steps; "
                                                         "none = input order)")
    p.add_argument("--prompts-per-step", type=int, default=0,
                   help="prompts per step = verl's data.train_batch_size (default: the config's ppo.prompts_per_step)")
    p.add_argument("--seed", type=int, default=None, help="curriculum sampler seed (default: the config's seed, or 0)")
    p.add_argument("--config", metavar="RUNCONFIG",
                   help="run config (YAML/JSON): its curriculum:, ppo: and seed: set the order; its reward: section "
                        "the reward_model.style of each task")
    p.set_defaults(fn=cmd_export_verl)
    return parser


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return EXIT_USAGE
    if getattr(args, "workers", 1) < 1:
        parser.error("--workers must be at least 1")
    if getattr(args, "timeout", 1.0) <= 0:
        parser.error("--timeout must be positive")
    from datarl.config import ConfigError
    from datarl.rewards.router import RouterConfigError
    from datarl.scoring import InputError

    user_errors: tuple[type[BaseException], ...] = (InputError, ConfigError, RouterConfigError)
    if args.command in ("generate", "eval", "sft", "make-pairs", "train-bt", "train-genrm", "build-references",
                        "train", "pipeline"):
        from datarl.models.bt_train import BTDataError
        from datarl.models.generate import GenerationError
        from datarl.models.loading import PolicyLoadError
        from datarl.preferences import PairsError
        from datarl.rewards.bt import BTModelError
        from datarl.rewards.genrm import JudgeError

        user_errors += (GenerationError, PolicyLoadError, PairsError, BTDataError, BTModelError, JudgeError)

    if args.command in ("select", "pipeline"):
        from datarl.models.generate import GenerationError
        from datarl.models.loading import PolicyLoadError
        from datarl.select.prepo import SelectError

        user_errors += (GenerationError, PolicyLoadError, SelectError)
    # Model loading's per-file progress bars and load reports are noise on a command line.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    signal.signal(signal.SIGTERM, _raise_interrupt)  # clean up like Ctrl-C
    try:
        return int(args.fn(args))
    except user_errors as exc:
        print(f"datarl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("datarl: interrupted; no output was written", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
