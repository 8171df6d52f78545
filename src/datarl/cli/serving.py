"""`datarl serve/export-verl`: the HTTP reward service and the verl dataset export."""

from __future__ import annotations

import argparse
import os
import sys

from .common import add_config, add_layout, announce, router_config

_GENERATE = "\0generate"  # --token given without a value


def cmd_serve(args: argparse.Namespace) -> int:
    from datarl.errors import InputError
    from datarl.server import ServeConfig
    from datarl.server_auth import TOKEN_ENV, new_token
    from datarl.server_http import serve

    generated = False
    token = args.token if args.token not in (None, _GENERATE) else os.environ.get(TOKEN_ENV) or None
    if token is None and args.token == _GENERATE:
        token, generated = new_token(), True
    try:
        cfg = ServeConfig(
            host=args.host,
            port=args.port,
            token=token,
            insecure=args.insecure,
            workers=args.workers,
            max_batch=args.max_batch,
            max_wait_ms=args.max_wait_ms,
            max_queue=args.max_queue,
            timeout_s=args.timeout,
            max_body_mb=args.max_body_mb,
            max_header_kb=args.max_header_kb,
            read_timeout_s=args.read_timeout,
            max_connections=args.max_connections,
            drain_timeout_s=args.drain_timeout,
            strip_pattern=args.strip_pattern,
            router=router_config(args),
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    cfg.router.check_batch_use()  # rewards are asked for a batch at a time

    def ready(url: str) -> None:
        print(url, flush=True)  # stdout: the bound URL alone, for scripts (port 0 picks a free port)
        if cfg.token is None:
            access = "no token (any local user can post rewards)"
            reward_url = f"{url}/get_reward"
        else:
            shown = cfg.token if generated else "TOKEN"
            access = f"token required (Authorization: Bearer {shown}, or the path /{shown}/...)"
            reward_url = f"{url}/{shown}/get_reward"
        print(
            f"datarl serve: POST rewards to {reward_url} (OpenRLHF: --reward.remote_url {reward_url}), "
            f"GET {url}/health; {access}; router {dict(cfg.router.table)}; "
            "Ctrl-C or SIGTERM stops after in-flight requests",
            file=sys.stderr,
            flush=True,
        )
        if generated:
            print(
                f"datarl serve: generated a token; set {TOKEN_ENV}={cfg.token} to reuse it", file=sys.stderr, flush=True
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
        "POST {query, prompts, labels} -> {rewards, scores, extra_logs}, HTTP 200 "
        "with per-sample errors flagged (401 without the server's token). Labels are JSON records "
        "(datarl.integrations.openrlhf.make_label) or math answers. Samples of "
        "concurrent requests are scored together. GET /health. Prints the bound URL. "
        "Listens on loopback unless told otherwise; elsewhere it needs a token (--token or "
        "DATARL_SERVE_TOKEN) or --insecure.",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default %(default)s); any other than loopback needs a token or --insecure",
    )
    p.add_argument("--port", type=int, default=0, help="port; 0 = any free port (default %(default)s)")
    p.add_argument(
        "--token",
        nargs="?",
        const=_GENERATE,
        default=None,
        metavar="TOKEN",
        help="require this token on every request: 'Authorization: Bearer TOKEN' or the path /TOKEN/... "
        "(OpenRLHF: --reward.remote_url http://HOST:PORT/TOKEN/get_reward). Default: $DATARL_SERVE_TOKEN, "
        "which other users cannot read in `ps` as they can a command line; --token alone uses that or "
        "generates one and prints it. At least 16 URL-safe characters",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without a token (only on a network where every host is trusted)",
    )
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
        "--max-connections",
        type=int,
        default=1024,
        help="open connections served at once; requests beyond get HTTP 503, which OpenRLHF retries "
        "(default %(default)s)",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="time a client has to send its headers, and then its body; a connection past it is closed "
        "(default %(default)s)",
    )
    p.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body, in MB (default %(default)s)")
    p.add_argument(
        "--max-header-kb",
        type=float,
        default=16.0,
        help="largest request line plus headers, in KB (default %(default)s)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="on SIGTERM, how long requests already received may still be scored; samples not scored by "
        "then come back flagged 'shutting_down' (default %(default)s)",
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
