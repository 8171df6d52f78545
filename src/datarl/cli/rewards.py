"""`datarl make-pairs/train-bt/train-genrm/build-references/select`: reward models and Pre-PPO selection."""

from __future__ import annotations

import argparse
import os
import sys

from datarl.models.precision import PRECISIONS

from .common import (
    add_config,
    add_engine,
    add_layout,
    add_sampling,
    add_training,
    announce,
    base_dir,
    policy_from,
    ray_options,
    router_config,
    sampling_from,
    sft_dir,
    stderr_is_tty,
)


def cmd_make_pairs(args: argparse.Namespace) -> int:
    from datarl.io import write_records
    from datarl.preferences import make_pairs
    from datarl.records import read_all_records

    records = read_all_records(args.input, layout=args.layout, announce=announce)
    if args.limit:
        records = records[: args.limit]
    sampling = sampling_from(args)
    pairs = make_pairs(
        [r.to_dict() for r in records],
        policy_from(args.policy),
        samples_per_prompt=args.n,
        label_noise=args.label_noise,
        seed=args.seed,
        sampling=sampling,
        min_gold_gap=args.min_gold_gap,
        progress=stderr_is_tty(),
    )
    write_records(args.output, pairs)
    by_task: dict[str, int] = {}
    for pair in pairs:
        by_task[pair["task"]] = by_task.get(pair["task"], 0) + 1
    print(
        f"{len(pairs)} pairs from {len(records)} prompts -> {args.output} "
        f"({', '.join(f'{t}={n}' for t, n in sorted(by_task.items()))}; "
        f"{sum(bool(p.get('flipped')) for p in pairs)} labels flipped)"
    )
    return 0


def _gap(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (gold scores are in [0, 1]), got {text}")
    return value


def _parse_make_pairs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-pairs",
        help="preference pairs from policy samples, labelled by the gold checks",
        description="Sample the policy N times per prompt, score each sample with the gold checks "
        "(verifiers; the hidden rubric for general), pair samples whose gold scores "
        "differ (chosen = higher), and flip a --label-noise fraction of labels, as "
        "human labels are noisy. Flipped pairs are marked for analysis only.",
    )
    p.add_argument("input", metavar="PROMPTS")
    p.add_argument("-o", "--output", required=True, metavar="PAIRS")
    p.add_argument("--label-noise", type=float, default=0.1, help="fraction of flipped labels (default 0.1)")
    p.add_argument(
        "--min-gold-gap",
        type=_gap,
        default=0.0,
        metavar="GAP",
        help="pair two samples only when their gold scores differ by more than GAP, in [0, 1) "
        "(default 0: any difference; the pipeline's pairs stage uses 0.2)",
    )
    p.add_argument("--limit", type=int, default=0, help="use only the first N prompts")
    add_sampling(p, temperature=1.0, n=4)
    add_layout(p)
    p.set_defaults(fn=cmd_make_pairs)


def cmd_train_bt(args: argparse.Namespace) -> int:
    import json

    from datarl.models.bt_train import BTTrainConfig, train_bt
    from datarl.preferences import load_pairs

    metrics = train_bt(
        load_pairs(args.pairs),
        base_dir(args),
        args.output,
        BTTrainConfig(steps=args.steps, seed=args.seed),
        progress=stderr_is_tty(),
    )
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def _parse_train_bt(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-bt",
        help="train a Bradley-Terry reward model on preference pairs",
        description="Train a sequence-classification head on a causal LM backbone (the tiny SFT "
        "policy by default) with the Bradley-Terry loss; report held-out pair "
        "accuracy (split by prompt) overall and per task.",
    )
    add_training(p, steps=200, saves="the reward model")
    p.set_defaults(fn=cmd_train_bt)


# genrm: keys only the pipeline's judge stage reads (it samples the policy for ground-truth items and measures a
# held-out table); train-genrm trains on the PAIRS and --gt records it is given.
PIPELINE_ONLY_GENRM = ("gt_samples", "heldout")


def genrm_options(args: argparse.Namespace):  # -> tuple[GenRMTrainConfig, str | None]
    """The judge's training options and base model: ``--config``'s ``genrm:`` section (a whole pipeline config, or
    the section alone), with the flags given on the command line over it and ``GenRMTrainConfig``'s defaults
    for the rest. Unknown keys and bad values are a ``ConfigError`` naming the file."""
    from datarl.config import build_section, load_config
    from datarl.errors import ConfigError
    from datarl.models.genrm_train import GenRMTrainConfig

    data = load_config(args.config)
    section = data.get("genrm", data)  # a whole pipeline config, or the section alone
    if not isinstance(section, dict):
        raise ConfigError(f"{args.config}: genrm: must be a mapping of options, got {type(section).__name__}")
    section = dict(section)
    base = section.pop("base", None)
    if base is not None and (not isinstance(base, str) or not base.strip()):
        raise ConfigError(
            f"{args.config}: genrm.base: a model directory, .gguf file or alias is required, got {base!r}"
        )
    ignored = [k for k in PIPELINE_ONLY_GENRM if section.pop(k, None) is not None]
    if ignored:
        announce(
            f"note: {args.config}: genrm.{' and genrm.'.join(ignored)} are read by the pipeline's judge stage only; "
            "train-genrm trains on PAIRS and --gt as given"
        )
    flags = {"steps": args.steps, "seed": args.seed, "gt_verdict": args.gt_verdict, "precision": args.precision}
    section.update({k: v for k, v in flags.items() if v is not None})
    cfg = build_section(GenRMTrainConfig, section, f"{args.config}: genrm" if args.config else "train-genrm")
    base = args.base or base
    if base and "lr" not in section:
        announce(
            f"note: training {base} at the tiny judge's learning rate ({cfg.lr:g}); a pre-trained model wants a "
            "smaller one: --config examples/genrm_smollm2.yaml holds the recipe measured for a 135M model"
        )
    return cfg, base


def cmd_train_genrm(args: argparse.Namespace) -> int:
    import json

    from datarl.models.genrm_train import train_genrm
    from datarl.preferences import load_pairs
    from datarl.records import read_all_records

    cfg, base = genrm_options(args)
    gt_records = (
        [r.to_dict() for r in read_all_records(args.gt, layout=args.layout, announce=announce)] if args.gt else None
    )
    metrics = train_genrm(
        load_pairs(args.pairs),
        base or sft_dir(),
        args.output,
        cfg,
        gt_records=gt_records,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def _parse_train_genrm(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-genrm",
        help="train the pairwise generative judge (GenRM)",
        description="Train a judge from a causal LM (the tiny SFT policy by default) as a "
        "next-token classifier over the verdict tokens 'A'/'B', on judge examples "
        "made from the pairs in both orders and, with --gt, on (response, ground "
        "truth) examples. Use it with sources: {genrm.gt: {judge: DIR}}. Every option of the "
        "judge's training (learning rate, batch, paired orders, ...) comes from --config's genrm: "
        "section, as the pipeline's judge stage reads it; the flags below override it.",
    )
    add_training(p, steps=None, saves="the judge")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="YAML/JSON with a genrm: section (a pipeline config, or a recipe such as examples/genrm_smollm2.yaml), "
        "or the section's options alone: GenRMTrainConfig fields and base (the model to start from, unless "
        "--base); gt_samples and heldout are the pipeline's and are ignored here",
    )
    p.add_argument(
        "--gt",
        metavar="RECORDS",
        help="records with ground_truth and response (e.g. scored SFT samples) for judge-vs-ground-truth examples",
    )
    p.add_argument(
        "--gt-verdict",
        choices=("slot", "match"),
        help="how --gt examples are asked: 'slot' (which of answers A and B is better, as for pairs) or 'match' "
        "(does the answer reach the reference's result: A = yes, B = no, whichever block comes first; a small "
        "judge learns it far sooner, docs/results.md). Stored with the judge; genrm.gt asks it the same way "
        "(default: --config's, else slot)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="training passes in float32, under bfloat16 autocast (weights stay float32; 0.78 of the time on a "
        "2-core CPU with AVX512-BF16, slower on one without), or 'auto' (bfloat16 on a GPU or CPU that computes it). "
        "Scoring is float32 either way (default: --config's, else float32)",
    )
    add_layout(p, "--gt's records")
    p.set_defaults(fn=cmd_train_genrm)


def cmd_calibrate_genrm(args: argparse.Namespace) -> int:
    import json

    from datarl.models.genrm_train import calibrate_judge
    from datarl.records import read_all_records

    records = [r.to_dict() for r in read_all_records(args.records, layout=args.layout, announce=announce)]
    entry = calibrate_judge(args.judge, records, objective=args.objective, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(entry, indent=2))
    return 0


def _parse_calibrate_genrm(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate-genrm",
        help="fit a GenRM judge's genrm.gt decision threshold on labelled responses",
        description="Judge RECORDS (prompt, ground_truth, response; labelled by rtv.math unless "
        "they carry 'correct') against their ground truth, pick the threshold with "
        "the highest agreement (--objective balanced: the highest balanced agreement), and store it in "
        "JUDGE/datarl_genrm.json. genrm.gt "
        "scores from that judge are then mapped so that the threshold is 0.5 "
        "(reward_info keeps raw_score). Use responses of the policy the judge will "
        "score on training prompts, never the evaluation split.",
    )
    p.add_argument("judge", help="judge directory (datarl train-genrm)")
    p.add_argument(
        "records",
        help="JSONL/Parquet records with ground_truth and response (e.g. datarl generate output on training prompts)",
    )
    p.add_argument(
        "--objective",
        choices=["accuracy", "balanced"],
        default="accuracy",
        help="what the threshold maximises: accuracy (default) or balanced accuracy, the mean of the agreement on "
        "correct and on wrong responses (for a policy whose correct answers are rare)",
    )
    add_layout(p, "RECORDS")
    p.set_defaults(fn=cmd_calibrate_genrm)


def cmd_build_references(args: argparse.Namespace) -> int:
    from datarl.io import write_records
    from datarl.records import read_all_records
    from datarl.references import build_references

    records = read_all_records(args.input, layout=args.layout, announce=announce)
    sampling = sampling_from(args)
    rows = build_references(
        [r.to_dict() for r in records],
        policy_from(args.policy),
        args.bt,
        n=args.n,
        seed=args.seed,
        sampling=sampling,
        progress=stderr_is_tty(),
    )
    write_records(args.output, rows)
    print(f"{sum('reference_info' in r for r in rows)} general references (best of {args.n}) -> {args.output}")
    return 0


def _parse_build_references(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-references",
        help="best-of-N SFT references for general prompts, picked by BT",
        description="For every general record, sample N responses from the policy, score them "
        "with the BT model and write the best as 'reference' (with reference_info: "
        "N, the scores, the chosen index). Other records pass through unchanged.",
    )
    p.add_argument("input", metavar="POOL")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.add_argument(
        "--bt",
        required=True,
        metavar="MODEL",
        help="the reward model: a directory made by datarl train-bt, or any Hugging Face sequence-classification "
        "reward model (a directory or a hub id in the local cache)",
    )
    add_sampling(p, temperature=1.0, n=8)
    add_layout(p)
    p.set_defaults(fn=cmd_build_references)


def cmd_select(args: argparse.Namespace) -> int:
    from datarl.config import load_config
    from datarl.select.prepo import SelectConfig
    from datarl.select.prepo_engine import run_select

    defaults = SelectConfig()
    flags = {
        "strategy": args.strategy,
        "low": args.low,
        "high": args.high,
        "fraction": args.fraction,
        "count": args.count,
        "scope": args.scope,
        "normalise": args.normalise,
        "domains": args.domains.split(",") if args.domains else None,
        "drop_unsolvable": True if args.drop_unsolvable else None,
        "dedup": False if args.no_dedup else None,
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    # Sampling flags always have a value; one left at its default must not override the config's select: section.
    sampled = {
        "samples_per_prompt": args.n,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "timeout_s": args.timeout,
    }
    overrides.update({k: v for k, v in sampled.items() if v != getattr(defaults, k)})
    cfg = SelectConfig.from_mapping(load_config(args.config).get("select"), overrides)
    scores = args.scores or args.output + ".scores.jsonl"
    try:
        summary = run_select(
            args.input,
            args.output,
            policy=lambda: policy_from(args.policy),
            router_config=router_config(args),
            cfg=cfg,
            train_path=args.train,
            merge=args.merge,
            workers=args.workers,
            progress=False if args.no_progress else None,
            scores_path=scores,
            restart=args.restart,
            engine=args.engine,
            ray=ray_options(args),
            layout=args.layout,
            announce=announce,
        )
    except KeyboardInterrupt:
        if os.path.exists(scores):
            print(
                f"datarl: the scores so far are saved in {scores}; run the same command again to resume",
                file=sys.stderr,
            )
        raise
    print(summary.format())
    return 0


def _parse_select(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "select",
        help="Pre-PPO: keep the pool prompts the policy scores lowest (resumable)",
        description="Sample the policy --n times per POOL prompt, score the samples with the reward "
        "router, normalise each prompt's mean reward within its domain and keep the "
        "lowest-scoring fraction (PAPER section 4). Writes SELECTED (pool records with "
        "a 'prepo' field; with --merge the training set first), SELECTED.report.json "
        "(per-domain histograms, thresholds, kept and dropped counts) and, as it goes, "
        "the scores file: after an interruption, the same command resumes. Flags "
        "override the config's select: section.",
    )
    p.add_argument("input", metavar="POOL")
    p.add_argument("-o", "--output", required=True, metavar="SELECTED")
    p.add_argument(
        "--train",
        metavar="TRAIN",
        help="the original training set: pool prompts repeating one are dropped (case and whitespace folded)",
    )
    p.add_argument("--merge", action="store_true", help="write TRAIN's records, then the selected ones")
    p.add_argument(
        "--strategy",
        choices=("lowest", "band", "random", "all"),
        help="lowest (Pre-PPO, default); band (mean reward in [--low, --high], open-r1's pass-rate band); "
        "or the baselines random (same count, seeded) and all",
    )
    p.add_argument(
        "--low",
        type=float,
        help="band: the lowest mean reward kept (default 0.1; ends included)",
    )
    p.add_argument(
        "--high",
        type=float,
        help="band: the highest mean reward kept (default 0.9); with --fraction/--count, the band's "
        "lowest-scoring prompts up to that size, else the whole band",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--fraction", type=float, help="share of the eligible prompts to keep (default 0.1; band: the whole band)"
    )
    size.add_argument("--count", type=int, help="keep exactly N prompts (to compare strategies at one count)")
    p.add_argument(
        "--scope",
        choices=("domain", "global"),
        help="keep the fraction of every domain (default), or the lowest normalised scores overall",
    )
    p.add_argument(
        "--normalise",
        choices=("zscore", "rank", "none"),
        help="normalisation within each domain (default zscore; rank = percentile)",
    )
    p.add_argument(
        "--domains",
        metavar="D1,D2",
        help="only these domains (a name matches a domain, its prefix "
        "before a dot, e.g. math for math.addsub, or a task)",
    )
    p.add_argument("--drop-unsolvable", action="store_true", help="drop prompts where no sample scored above 0")
    p.add_argument(
        "--no-dedup",
        action="store_true",
        help="keep pool prompts that repeat a training prompt or an earlier pool prompt",
    )
    p.add_argument(
        "--scores",
        metavar="FILE",
        help="the resumable scores file (default SELECTED.scores.jsonl); one scoring pass serves every strategy",
    )
    p.add_argument("--restart", action="store_true", help="discard the scores file and sample from scratch")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="scoring processes (default: number of cores = %(default)s)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wall-clock limit per scored sample (default %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    add_engine(p, generation=True)
    add_config(p)
    add_sampling(p, temperature=1.0, n=4)
    add_layout(p, "POOL")
    p.set_defaults(fn=cmd_select)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands, in `datarl --help` order."""
    _parse_make_pairs(sub)
    _parse_train_bt(sub)
    _parse_train_genrm(sub)
    _parse_calibrate_genrm(sub)
    _parse_build_references(sub)
    _parse_select(sub)
