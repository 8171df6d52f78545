"""Option helpers shared by the subcommand modules: config, sampling, training and engine flags."""

from __future__ import annotations

import argparse
import sys

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def router_config(args: argparse.Namespace):  # -> RouterConfig
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


def sampling_from(args: argparse.Namespace):  # -> SamplingConfig
    from datarl.models.generate import SamplingConfig

    return SamplingConfig(
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        samples_per_prompt=args.n,
        seed=args.seed,
        batch_size=args.batch_size,
    )


def policy_from(spec: str | None):  # -> Policy
    from datarl.models.loading import load_policy

    return load_policy(sft_dir() if spec in (None, "tiny") else spec)


def sft_dir() -> str:
    """The embedded tiny SFT policy, built on first use (progress on stderr)."""
    from datarl.models.sft import build_sft_policy

    return build_sft_policy(log=lambda m: print(m, file=sys.stderr))


def base_dir(args: argparse.Namespace) -> str:
    return args.base or sft_dir()


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def ray_options(args: argparse.Namespace):  # -> RayOptions | None
    if args.engine != "ray":
        return None
    from datarl.errors import InputError
    from datarl.executors.ray_engine import RayOptions

    try:
        return RayOptions(
            address=args.ray_address,
            actors=args.ray_actors,
            judge_gpus=args.ray_judge_gpus,
            generate_gpus=getattr(args, "ray_generate_gpus", 0.0),
        )
    except ValueError as exc:
        raise InputError(f"bad --ray-* option: {exc}") from None


# datarl.layouts.LAYOUT_NAMES, spelled out so that `datarl --help` does not import the layouts (a test keeps
# the two equal)
LAYOUT_CHOICES = ("datarl", "verl", "gsm8k", "math", "humaneval", "mbpp", "apps", "ifeval", "messages")


def add_layout(p: argparse.ArgumentParser, what: str = "the input") -> None:
    p.add_argument(
        "--layout",
        choices=LAYOUT_CHOICES,
        metavar="NAME",
        help=f"read {what} in this layout instead of detecting it from its columns: "
        f"{', '.join(LAYOUT_CHOICES)} (README 'Layouts')",
    )


def announce(line: str) -> None:
    """Print a file's layout mapping (once per file read) where it does not mix with a command's output."""
    print(line, file=sys.stderr)


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help="YAML/JSON config; its 'router:' maps task -> source, 'sources:' sets source "
        "options (e.g. sources: {rtv.math: {rel_tol: 1e-6}})",
    )


def add_sampling(p: argparse.ArgumentParser, *, temperature: float, n: int = 1) -> None:
    p.add_argument(
        "--policy",
        metavar="PATH",
        help="HF model directory, .gguf file, hub id in the local cache, 'smollm2-135m', or 'tiny' "
        "(default: the embedded tiny SFT policy, built and cached on first use)",
    )
    p.add_argument("--n", type=int, default=n, help="samples per prompt (default %(default)s)")
    p.add_argument("--temperature", type=float, default=temperature, help="0 = greedy (default %(default)s)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=128, help="per response (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="sequences decoded together (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default %(default)s)")


def add_training(p: argparse.ArgumentParser, *, steps: int | None, saves: str) -> None:
    """PAIRS, -o, --base, --steps and --seed. ``steps=None``: the command fills --steps and --seed it was not
    given from its --config (their help says so)."""
    p.add_argument("pairs", metavar="PAIRS", help="JSONL of {prompt, chosen, rejected, task, ...}")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help=f"where to save {saves}")
    if steps is None:
        p.add_argument(
            "--base",
            metavar="PATH",
            help="model to start from: a directory, a .gguf file or an alias such as smollm2-135m "
            "(default: --config's genrm.base, else the tiny SFT policy)",
        )
        p.add_argument("--steps", type=int, help="optimiser steps (default: --config's, else 600)")
        p.add_argument("--seed", type=int, help="split and batch-order seed (default: --config's, else 0)")
        return
    p.add_argument("--base", metavar="PATH", help="model directory to start from (default: the tiny SFT policy)")
    p.add_argument("--steps", type=int, default=steps, help="optimiser steps (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)


def add_engine(p: argparse.ArgumentParser, *, generation: bool = False) -> None:
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: forked worker processes (default); ray: Ray Data actor pools, same results "
        "(pip install 'datarl[ray]')",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        default="local",
        help="with --engine ray: 'local' starts a private Ray here (default), 'auto' joins this "
        "machine's cluster, or HOST:PORT / ray://HOST:10001",
    )
    p.add_argument(
        "--ray-actors",
        type=int,
        metavar="N",
        help="with --engine ray: verifier actors, one CPU each (default: one per cluster CPU)",
    )
    p.add_argument(
        "--ray-judge-gpus",
        type=float,
        default=0.0,
        metavar="G",
        help="with --engine ray: GPUs per actor of the model sources bt/genrm (default 0: CPU)",
    )
    if generation:
        p.add_argument(
            "--ray-generate-gpus",
            type=float,
            default=0.0,
            metavar="G",
            help="with --engine ray: sample in a Ray actor with G GPUs (default 0: in this process)",
        )
