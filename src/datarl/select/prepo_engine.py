"""``datarl select``: sample the policy on a pool, score the samples, keep the hardest (resumably).

:func:`run_select` does, in order, with every check a user can fail *before* any sampling:
1. load the pool (bad lines go to ``OUT.errors.jsonl``, as ``datarl score`` does), restrict it to
   ``cfg.domains`` (a named domain with no prompts is an error), load the training set (``train_path``;
   any bad line is fatal: it is your training data), drop duplicates (they are never sampled), and
   check that the selection cannot be empty;
2. check the router can score every pool task (a source is configured; ``genrm.*`` has a judge and its
   records have the reference it compares with; one scored smoke sample per task does not fail with a
   scorer error such as ``sandbox_unavailable``), and that every prompt fits the policy's context
   (a prompt that does not is a bad line);
3. sample ``samples_per_prompt`` responses per prompt and score them with the router, ``prompts_per_chunk``
   prompts at a time, appending each chunk's scores to the scores file (default ``OUT.scores.jsonl``)
   with a flush and fsync before the next chunk starts;
4. where a ``bt`` model's mapping was fitted per chunk (a reward model without a stored mapping), map its
   samples again with one fit over the whole pool (:func:`datarl.rewards.bt.refit`, from the raw scores kept
   in the scores file), so chunks are comparable and a resumed run equals an uninterrupted one;
5. select (:func:`datarl.select.prepo.select_prompts`) and write ``OUT`` (the selected pool records,
   or with ``merge`` the training records followed by them) and ``OUT.report.json``, atomically.

Resuming: the scores file's first line is a header with a fingerprint of everything that decides the
samples (the policy's weights, sampling, chunk size, router table and options). A rerun with
the same fingerprint skips every prompt already scored (matched by id and a hash of the record, so an
edited record is scored again) and samples only the rest; chunk ``c`` always covers the same pool
positions and is sampled with the same seed, so the result equals an uninterrupted run's. A different
fingerprint is refused (``restart=True`` discards the file). The scores file is reusable across
strategies: ``lowest``, ``band``, ``random`` and ``all`` on one pool need one scoring pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datarl.errors import InputError
from datarl.executors.engine import LocalEngine, ScoringEngine
from datarl.io import progress_bar, write_json, write_records
from datarl.records import Record, RecordError, format_errors, load_records, read_all_records, write_errors
from datarl.rewards.base import RewardResult
from datarl.rewards.bt import refit, refit_state
from datarl.rewards.router import Router, RouterConfig
from datarl.select.prepo import (
    SCORING_ERRORS,
    Drop,
    ScoredPrompt,
    SelectConfig,
    SelectError,
    find_duplicates,
    matches_domain,
    select_prompts,
    target_count,
)
from datarl.select.prepo_report import build_report, format_summary

__all__ = ["run_select", "SelectSummary", "check_router", "SCORES_FORMAT", "parse_scores"]

SCORES_FORMAT = 1


@dataclass
class SelectSummary:
    """What one run did (printed by the CLI)."""

    output: str
    report_path: str
    scores_path: str
    errors_path: str | None
    report: dict[str, Any]
    sampled_now: int = 0  # prompts sampled by this run
    already_scored: int = 0  # prompts whose scores a previous run left in the scores file
    seconds: float = 0.0
    chunks: list[int] = field(default_factory=list)  # chunk indices sampled by this run
    generate_seconds: float = 0.0
    score_seconds: float = 0.0

    def format(self) -> str:
        return format_summary(self)


def _load_pool(
    path: str, cfg: SelectConfig, layout: str | None, announce: Callable[[str], None] | None
) -> tuple[list[Record], list[RecordError], int, int]:
    """Valid pool records in ``cfg.domains``, load errors, total lines, records outside the domains."""
    loaded = load_records(path, layout=layout, announce=announce)
    if not loaded.records:
        detail = (
            f"; all {len(loaded.errors)} lines are bad:\n{format_errors(loaded.errors, 5)}"
            if loaded.errors
            else " (the file is empty)"
        )
        raise InputError(f"{path}: no valid pool records{detail}")
    seen: dict[str, int] = {}
    for rec in loaded.records:
        if rec.id in seen:
            raise InputError(
                f"{path}:{rec.line}: id: {rec.id!r} is also on line {seen[rec.id]}; pool ids must "
                "be unique (selection and resuming match prompts by id)"
            )
        seen[rec.id] = rec.line
    records = loaded.records
    if cfg.domains:
        missing = [n for n in cfg.domains if not any(matches_domain(r.domain, r.task, [n]) for r in records)]
        if missing:
            present = ", ".join(sorted({r.domain for r in records}))
            raise SelectError(
                f"{path}: no pool prompts of domain(s) {', '.join(map(repr, missing))}; the pool has: {present}"
            )
        records = [r for r in records if matches_domain(r.domain, r.task, cfg.domains)]
    return records, loaded.errors, loaded.total_lines, len(loaded.records) - len(records)


def _load_train(path: str, announce: Callable[[str], None] | None) -> list[dict[str, Any]]:
    records = read_all_records(path, what="the training set", limit=5, allow_empty=True, announce=announce)
    return [{**r.raw, "id": r.id} for r in records]


def check_router(router: Router, records: Sequence[Record]) -> None:
    """Raise SelectError unless the router can score every task among ``records`` (before any sampling)."""
    for problem in router.config.preflight([r.to_dict() for r in records]):
        if not problem.records:
            raise SelectError(f"{problem.field}: {problem.message}")
        first = records[problem.records[0]]
        hint = (
            " (for general prompts, e.g. 'router: {general: genrm.bon}' with 'sources: {genrm.bon: {judge: "
            "DIR}}'), or leave them out with select.domains"
            if problem.field == "task"
            else ""
        )
        raise SelectError(
            f"{len(problem.records)} {first.task} pool prompt(s) (first: {first.source}) cannot be "
            f"scored: {problem.field}: {problem.message}{hint}"
        )
    for task in sorted({r.task for r in records}):
        source = router.config.source_for(task)
        first = next(r for r in records if r.task == task)
        result = router.score_many([first.to_dict()], [first.reference or "smoke test"])[0]
        if result.failure in SCORING_ERRORS:
            detail = result.info.get("error") or result.info.get("detail") or ""
            raise SelectError(
                f"the {source} scorer fails on {first.source} with {result.failure} before any "
                f"sampling ({str(detail)[:300]}); fix the reward config"
            )


def _fitting(policy: Any, records: list[Record], cfg: SelectConfig) -> tuple[list[Record], list[RecordError]]:
    """Records whose prompt fits the context with ``max_new_tokens``; the rest as bad lines."""
    from datarl.models.generate import GenerationError, encode_prompts

    ok, bad = [], []
    for rec in records:
        try:
            encode_prompts(policy, [rec.prompt], cfg.max_new_tokens)
            ok.append(rec)
        except GenerationError as exc:
            bad.append(
                RecordError(
                    rec.source.rsplit(":", 1)[0], rec.line, "prompt", str(exc).replace("prompt 0", "the prompt", 1)
                )
            )
    return ok, bad


def _policy_digest(policy: Any) -> str:
    import torch

    h = hashlib.sha256()
    for name, tensor in policy.model.state_dict().items():
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _fingerprint(policy: Any, router: RouterConfig, cfg: SelectConfig) -> dict[str, Any]:
    # The weights, not the path they were loaded from, identify the policy: a moved model still resumes.
    return {
        "weights": _policy_digest(policy),
        "sampling": {
            k: getattr(cfg, k)
            for k in (
                "samples_per_prompt",
                "temperature",
                "top_p",
                "max_new_tokens",
                "batch_size",
                "seed",
                "prompts_per_chunk",
            )
        },
        "router": json.loads(
            json.dumps(
                {"table": dict(router.table), "options": _real_paths(dict(router.options))}, sort_keys=True, default=str
            )
        ),
    }


def _real_paths(value: Any) -> Any:
    """Router options with every existing path resolved: a judge reached through a link (a study's runs link
    one shared judge) is the same judge, so its scores file serves them all."""
    if isinstance(value, str) and os.path.isabs(value) and os.path.exists(value):
        return os.path.realpath(value)
    if isinstance(value, dict):
        return {k: _real_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_real_paths(v) for v in value]
    return value


def _record_hash(rec: Record) -> str:
    body = {k: v for k, v in rec.raw.items() if k not in ("response", "response_finished")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _open_scores(path: str, fingerprint: dict[str, Any], restart: bool, policy_name: str) -> dict[str, dict[str, Any]]:
    """Scored entries already in ``path`` (by id); creates the file with its header if needed."""
    if restart and os.path.exists(path):
        os.unlink(path)
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(
                json.dumps({"datarl_prepo_scores": SCORES_FORMAT, "policy": policy_name, "fingerprint": fingerprint})
                + "\n"
            )
            fh.flush()
            os.fsync(fh.fileno())
        return {}
    with open(path, "rb+") as fh:  # a run killed mid-write can leave a torn last line: cut it off
        data = fh.read()
        if not data.endswith(b"\n"):
            fh.truncate(data.rfind(b"\n") + 1)
            data = data[: data.rfind(b"\n") + 1]
    header, done = parse_scores(data.decode("utf-8", errors="replace"), path)
    old = header["fingerprint"]
    if old != fingerprint:
        differ = sorted(
            {"weights": "policy"}.get(k, k) for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k)
        )
        raise SelectError(
            f"{path}: these scores were made with a different {', '.join(differ)}; pass --restart to "
            "discard them, or --scores NEW_PATH to keep both"
        )
    return done


def parse_scores(text: str, path: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A scores file's header and its entries by prompt id (``id``, ``task``, ``domain``, ``rewards``, ...);
    a corrupt entry line is left out (it only costs re-scoring that prompt); a bad header is a SelectError."""
    lines = text.splitlines()
    try:
        header = json.loads(lines[0])
        if not isinstance(header, dict) or "datarl_prepo_scores" not in header or "fingerprint" not in header:
            raise ValueError
    except (ValueError, IndexError):
        raise SelectError(f"{path}: not a datarl scores file (bad header); delete it or pass --restart") from None
    done: dict[str, dict[str, Any]] = {}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
            done[str(entry["id"])] = entry
        except (ValueError, KeyError, TypeError):
            continue
    return header, done


def _chunk_seed(seed: int, chunk: int) -> int:
    return int.from_bytes(hashlib.sha256(f"prepo:{seed}:{chunk}".encode()).digest()[:4], "big") >> 1


def _score_chunk(
    policy: Any,
    scorer: ScoringEngine,
    records: list[Record],
    chunk: int,
    cfg: SelectConfig,
    summary: SelectSummary,
    runner: Any = None,
) -> list[dict[str, Any]]:
    from datarl.models.generate import SamplingConfig, generate

    sampling = SamplingConfig(
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        samples_per_prompt=cfg.samples_per_prompt,
        seed=_chunk_seed(cfg.seed, chunk),
        batch_size=cfg.batch_size,
    )
    t0 = time.perf_counter()
    on_ray = runner is not None and runner.options.generate_gpus > 0  # else sampling stays in this process
    sampled = (runner.generate if on_ray else generate)(policy, [r.prompt for r in records], sampling)
    gens = sorted(sampled, key=lambda g: (g.prompt_index, g.sample_index))
    t1 = time.perf_counter()
    dicts = [r.to_dict() for r in records]
    rows = [{**dicts[g.prompt_index], "response_finished": g.finished} for g in gens]  # cut off: invalid
    results = scorer.score(rows, [g.text for g in gens])
    summary.generate_seconds += t1 - t0
    summary.score_seconds += time.perf_counter() - t1
    entries = [
        {
            "id": r.id,
            "hash": _record_hash(r),
            "task": r.task,
            "domain": r.domain,
            "chunk": chunk,
            "rewards": [],
            "failures": [],
            "finished": [],
        }
        for r in records
    ]
    for g, res in zip(gens, results):
        e = entries[g.prompt_index]
        e["rewards"].append(float(res.score))
        e["failures"].append(res.failure)
        e["finished"].append(g.finished)
        e["source"] = res.source
        state = refit_state(res)
        if state is not None:  # a bt mapping fitted on this chunk: refitted on the whole pool at the end
            e.setdefault("refit", [None] * (len(e["rewards"]) - 1)).append(state)
        elif "refit" in e:
            e["refit"].append(None)
    return entries


def _refitted(entries: Mapping[str, dict[str, Any]]) -> tuple[dict[str, list[float]], dict[str, Any] | None]:
    """Per prompt id, the rewards with every chunk-fitted bt mapping replaced by one fit over the whole pool
    (what one call scoring every sample would give), and that mapping (None when there was none)."""
    where = [(pid, k) for pid, e in entries.items() for k, state in enumerate(e.get("refit") or ()) if state]
    rewards = {pid: list(e["rewards"]) for pid, e in entries.items()}
    if not where:
        return rewards, None
    done = refit([RewardResult(rewards[pid][k], "bt", entries[pid]["refit"][k]) for pid, k in where])
    for (pid, k), res in zip(where, done):
        rewards[pid][k] = res.score
    info = done[0].info
    return rewards, {key: info[key] for key in ("bt_model", "shift", "scale", "mapping_from", "fitted_on")}


def _append(path: str, entries: list[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(e) + "\n" for e in entries))  # one write: a chunk lands whole or not at all
        fh.flush()
        os.fsync(fh.fileno())


@dataclass
class _Inputs:
    """The pool and training set after the checks that need no model."""

    records: list[Record]  # valid pool records in cfg.domains, in file order
    errors: list[RecordError]
    total_lines: int
    excluded: int  # valid records outside cfg.domains
    train: list[dict[str, Any]] | None
    prior: list[Drop]  # duplicates, never sampled
    candidates: list[Record]  # what gets sampled and scored


def _inputs(
    pool_path: str,
    out_path: str,
    scores_path: str,
    cfg: SelectConfig,
    train_path: str | None,
    merge: bool,
    layout: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> _Inputs:
    if merge and not train_path:
        raise SelectError("merge needs the training set (--train TRAIN)")
    if len({os.path.abspath(p) for p in (pool_path, out_path, scores_path, train_path or pool_path)}) < 3:
        raise InputError("the output and scores paths must differ from the pool and training files")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out_path))):
        raise InputError(f"{out_path}: output directory does not exist")
    records, errors, total_lines, excluded = _load_pool(pool_path, cfg, layout, announce)
    train = _load_train(train_path, announce) if train_path else None
    if merge and train is not None:
        clash = sorted({r["id"] for r in train} & {r.id for r in records})
        if clash:
            raise SelectError(
                f"{len(clash)} id(s) are in both the pool and the training set (first: {clash[0]!r}); "
                "merged output needs unique ids"
            )
    dups = find_duplicates([r.raw for r in records], train or ()) if cfg.dedup else {}
    prior = [Drop(records[i].id, records[i].domain, reason, other) for i, (reason, other) in sorted(dups.items())]
    candidates = [r for i, r in enumerate(records) if i not in dups]
    target_count(cfg, len(candidates))  # an empty selection is an error now, not after sampling
    return _Inputs(records, errors, total_lines, excluded, train, prior, candidates)


def _score_all(
    inp: _Inputs,
    policy: Any,
    scorer: ScoringEngine,
    cfg: SelectConfig,
    done: dict[str, dict[str, Any]],
    summary: SelectSummary,
    progress: bool | None,
    on_chunk: Callable[[int, int], None] | None,
    runner: Any = None,
) -> None:
    """Sample and score every candidate not in ``done``, chunk by chunk, saving each chunk as it completes."""
    position = {r.id: i for i, r in enumerate(inp.records)}
    todo = [r for r in inp.candidates if done.get(r.id, {}).get("hash") != _record_hash(r)]
    summary.already_scored = len(inp.candidates) - len(todo)
    chunks: dict[int, list[Record]] = {}
    for rec in todo:  # chunk c is always the same pool positions, so it gets the same seed on a rerun
        chunks.setdefault(position[rec.id] // cfg.prompts_per_chunk, []).append(rec)
    bar = progress_bar(len(inp.candidates), progress, initial=summary.already_scored, unit="prompt", desc="pre-ppo")
    try:
        for chunk in sorted(chunks):
            entries = _score_chunk(policy, scorer, chunks[chunk], chunk, cfg, summary, runner)
            _append(summary.scores_path, entries)
            done.update({e["id"]: e for e in entries})
            summary.sampled_now += len(entries)
            summary.chunks.append(chunk)
            if bar is not None:
                bar.update(len(entries))
            if on_chunk is not None:
                on_chunk(chunk, summary.already_scored + summary.sampled_now)
    finally:
        if bar is not None:
            bar.close()


def run_select(
    pool_path: str,
    out_path: str,
    *,
    policy: Any,
    router_config: RouterConfig | None = None,
    cfg: SelectConfig | None = None,
    train_path: str | None = None,
    merge: bool = False,
    workers: int = 1,
    progress: bool | None = None,
    scores_path: str | None = None,
    restart: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
    engine: str = "local",
    ray: Any = None,
    layout: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> SelectSummary:
    """Pre-PPO selection of ``pool_path`` into ``out_path`` (see the module docstring).

    policy: a ``models.Policy``, a spec for ``models.loading.load_policy``, or a function returning a Policy
        (specs and functions are loaded after the input and router checks).
    router_config: which source scores each task (default: the default table).
    train_path: the original training set: duplicates of it are dropped; with ``merge`` it is written first.
    workers: scoring processes; progress: a progress bar (None: when stderr is a terminal).
    scores_path: the resumable scores file (default ``out_path + ".scores.jsonl"``); restart: discard it first.
    on_chunk: called with (chunk index, prompts scored so far) after each chunk is saved.
    engine: ``local``, or ``ray`` to score on Ray Data actor pools (``pip install 'datarl[ray]'``; the same
        scores); ray: its ``datarl.executors.ray_engine.RayOptions`` (None: a local Ray; sampling moves to
        a Ray actor only with ``generate_gpus`` > 0).
    layout: read the pool in this layout (``datarl.layouts.LAYOUT_NAMES``) instead of detecting it;
    announce: receives the layout mapping of the pool and training files that are not datarl files.
    """
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    runner = None
    if engine == "ray":
        from datarl.executors.ray_engine import RayEngine, RayOptions, import_ray

        import_ray()  # a missing Ray is a one-line error before any work
        runner = RayEngine(ray or RayOptions())
    try:
        return _run_select(
            pool_path,
            out_path,
            policy,
            router_config,
            cfg,
            train_path,
            merge,
            workers,
            progress,
            scores_path,
            restart,
            on_chunk,
            runner,
            layout,
            announce,
        )
    finally:
        if runner is not None:
            runner.close()


def _run_select(
    pool_path: str,
    out_path: str,
    policy: Any,
    router_config: RouterConfig | None,
    cfg: SelectConfig | None,
    train_path: str | None,
    merge: bool,
    workers: int,
    progress: bool | None,
    scores_path: str | None,
    restart: bool,
    on_chunk: Callable[[int, int], None] | None,
    runner: Any,
    layout: str | None,
    announce: Callable[[str], None] | None,
) -> SelectSummary:
    start = time.perf_counter()
    cfg = cfg or SelectConfig()
    router = Router(router_config or RouterConfig())
    scores_path = scores_path or out_path + ".scores.jsonl"
    inp = _inputs(pool_path, out_path, scores_path, cfg, train_path, merge, layout, announce)
    check_router(router, inp.candidates)
    if runner is not None:  # a stage needing GPUs the cluster lacks fails now, not after sampling
        runner.preflight(router.config, sorted({r.task for r in inp.candidates}), generate=True)
    if callable(policy) and not hasattr(policy, "model"):
        policy = policy()  # lazily: building the default policy takes minutes, the checks above take seconds
    elif isinstance(policy, str):
        from datarl.models.loading import load_policy

        policy = load_policy(policy)
    inp.candidates, too_long = _fitting(policy, inp.candidates, cfg)
    inp.errors = inp.errors + too_long
    done = _open_scores(scores_path, _fingerprint(policy, router.config, cfg), restart, policy.name)
    summary = SelectSummary(out_path, out_path + ".report.json", scores_path, None, {})
    scorer: ScoringEngine
    if runner is not None:
        from datarl.executors.ray_engine import RayScoringEngine

        scorer = RayScoringEngine(router.config, timeout_s=cfg.timeout_s, engine=runner)
    else:
        scorer = LocalEngine(router, workers=workers, timeout_s=cfg.timeout_s)
    try:
        _score_all(inp, policy, scorer, cfg, done, summary, progress, on_chunk, runner)
    finally:
        scorer.close()
    rewards, bt_mapping = _refitted({r.id: done[r.id] for r in inp.candidates})
    scored = [
        ScoredPrompt({**r.raw, "id": r.id}, r.domain, tuple(rewards[r.id]), tuple(done[r.id]["failures"]))
        for r in inp.candidates
    ]
    result = select_prompts(scored, cfg, prior_drops=inp.prior)
    rows = (list(inp.train or ()) if merge else []) + result.annotated()
    summary.errors_path = out_path + ".errors.jsonl" if inp.errors else None
    summary.seconds = time.perf_counter() - start
    summary.report = build_report(
        result,
        cfg,
        {
            "pool": pool_path,
            "train": train_path,
            "output": out_path,
            "merged": merge,
            "scores": scores_path,
            "errors": summary.errors_path,
            "policy": policy.name,
            "router": dict(router.config.table),
            "pool_lines": inp.total_lines,
            "invalid_dropped": len(inp.errors),
            "excluded_by_domain": inp.excluded,
            "train_records": len(inp.train or ()),
            "written": len(rows),
            "sampled_now": summary.sampled_now,
            "already_scored": summary.already_scored,
            "seconds": round(summary.seconds, 3),
            "generate_seconds": round(summary.generate_seconds, 3),
            "score_seconds": round(summary.score_seconds, 3),
            **({"bt_mapping": bt_mapping} if bt_mapping else {}),
        },
        inp.records,
    )
    write_records(out_path, rows)
    write_errors(out_path + ".errors.jsonl", inp.errors)
    _write_json(summary.report_path, summary.report)
    return summary


def _write_json(path: str, data: Mapping[str, Any]) -> None:
    write_json(path, data)
