"""`datarl serve/export-verl`: the HTTP reward service and the verl dataset export."""

from __future__ import annotations

import argparse
import os
import sys

from .common import add_config, add_layout, announce, router_config


def cmd_serve(args: argparse.Namespace) -> int:
    from datarl.errors import InputError
    from datarl.server import ServeConfig, serve

    try:
        cfg = ServeConfig(
            host=args.host,
            port=args.port,
            workers=args.workers,
            max_batch=args.max_batch,
            max_wait_ms=args.max_wait_ms,
            max_queue=args.max_queue,
            timeout_s=args.timeout,
            strip_pattern=args.strip_pattern,
            router=router_config(args),
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    cfg.router.check_batch_use()  # rewards are asked for a batch at a time

    def ready(url: str) -> None:
        print(url, flush=True)  # stdout: the bound URL alone, for scripts (port 0 picks a free port)
        print(
            f"datarl serve: POST rewards to {url}/get_reward (any path), GET {url}/health; "
            f"router {dict(cfg.router.table)}; Ctrl-C or SIGTERM stops after in-flight requests",
            file=sys.stderr,
            flush=True,
        )

    try:
        return serve(cfg, on_ready=ready, verbose=args.verbose)
    except OSError as exc:
        raise InputError(str(exc)) from None


def _parse_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the reward router over HTTP (OpenRLHF's remote reward model)",
        description="Answer OpenRLHF's remote reward requests (--reward.remote_url URL/get_reward): "
        "POST {query, prompts, labels} -> {rewards, scores, extra_logs}, always HTTP "
        "200 with per-sample errors flagged. Labels are JSON records "
        "(datarl.integrations.openrlhf.make_label) or math answers. Samples of "
        "concurrent requests are scored together. GET /health. Prints the bound URL.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=0, help="port; 0 = any free port (default %(default)s)")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="scoring worker processes (default: number of cores = %(default)s)",
    )
    p.add_argument("--max-batch", type=int, default=256, help="samples scored together (default %(default)s)")
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long to wait for more samples before scoring a batch (default %(default)s)",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=4096,
        help="samples allowed to wait; requests beyond it are flagged 'overloaded' (default %(default)s)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wall-clock limit per sample; past it the sample scores 0 with failure 'timeout' (default %(default)s)",
    )
    p.add_argument(
        "--strip-pattern",
        metavar="REGEX",
        default=r"<\|[\w.\-]{1,40}\|>|</s>|<eos>|<end_of_turn>|<pad>",
        help="end-of-sequence markers removed from the end of each response ('' keeps them; default %(default)s)",
    )
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    add_config(p)
    p.set_defaults(fn=cmd_serve)


def cmd_export_verl(args: argparse.Namespace) -> int:
    from datarl.config import load_config
    from datarl.errors import InputError
    from datarl.integrations.verl import VerlExportError, export_verl, verl_overrides
    from datarl.records import load_records
    from datarl.rewards.router import Router
    from datarl.select.curriculum import CurriculumConfig, CurriculumError

    data = load_config(args.config)
    ppo = data.get("ppo") if isinstance(data.get("ppo"), dict) else {}
    steps, per_step = args.steps or ppo.get("steps"), args.prompts_per_step or ppo.get("prompts_per_step")
    if bool(steps) != bool(per_step):
        raise InputError(
            "give both --steps and --prompts-per-step (or ppo: {steps, prompts_per_step} in --config) "
            "to bake the curriculum into row order, or neither to keep the input order"
        )
    if not os.path.exists(args.input):
        raise InputError(f"{args.input}: no such file")
    loaded = load_records(args.input, layout=args.layout, announce=announce)
    if loaded.errors:
        raise InputError(
            f"{len(loaded.errors)} bad line(s), first: {loaded.errors[0]}; "
            f"`datarl validate {args.input}` lists them all"
        )
    seed = args.seed if args.seed is not None else int(data.get("seed") or 0)
    try:
        curriculum = CurriculumConfig.from_value(data.get("curriculum"), steps) if steps else None
        summary = export_verl(
            loaded.records,
            args.output,
            curriculum=curriculum,
            steps=steps,
            prompts_per_step=per_step,
            seed=seed,
            router=Router(router_config(args)),
        )
    except (VerlExportError, CurriculumError) as exc:
        raise InputError(str(exc)) from None
    print(summary.format())
    print(
        "verl overrides: "
        + " ".join(verl_overrides(args.output, prompts_per_step=summary.prompts_per_step, reward_config=args.config))
    )
    return 0


def _parse_export_verl(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-verl",
        help="write records as a verl RL dataset (parquet), curriculum in row order",
        description="Write one verl RLHFDataset row per prompt (data_source 'datarl/<task>', chat "
        "prompt, reward_model.ground_truth as a string, extra_info with the datarl "
        "record). With --steps and --prompts-per-step the rows are the curriculum's "
        "batches in order (phases from the config's curriculum: section, default "
        "'paper'): run verl with data.shuffle=False and data.train_batch_size = "
        "prompts per step. Score with reward.custom_reward_function.path = "
        "datarl/integrations/verl.py, name = compute_score. Prints the overrides.",
    )
    p.add_argument("input", metavar="INPUT", help="records, .jsonl or .parquet")
    p.add_argument("-o", "--output", required=True, metavar="OUT.parquet")
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        help="training steps to lay out (default: the config's ppo.steps; none = input order)",
    )
    p.add_argument(
        "--prompts-per-step",
        type=int,
        default=0,
        help="prompts per step = verl's data.train_batch_size (default: the config's ppo.prompts_per_step)",
    )
    p.add_argument("--seed", type=int, default=None, help="curriculum sampler seed (default: the config's seed, or 0)")
    p.add_argument(
        "--config",
        metavar="RUNCONFIG",
        help="run config (YAML/JSON): its curriculum:, ppo: and seed: set the order; its reward: section "
        "the reward_model.style of each task",
    )
    add_layout(p)
    p.set_defaults(fn=cmd_export_verl)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands, in `datarl --help` order."""
    _parse_serve(sub)
    _parse_export_verl(sub)
