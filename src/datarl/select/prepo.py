"""Pre-PPO prompt selection (PAPER section 4): train on the pool prompts the SFT policy finds hardest.

The paper sampled the SFT policy on a pool of new prompts, scored the samples with the reward
model, normalised the scores within each domain and kept the lowest-scoring ~10%: high-scoring
prompts were easy and prone to reward hacking, low-scoring ones carried the learning signal.

This module is the pure core: :func:`select_prompts` takes prompts already scored
(:class:`ScoredPrompt`: the record, its domain, one reward per sample) and decides which to
keep; the engine that samples and scores, resumably, is :mod:`datarl.select.prepo_engine`.

In order, :func:`select_prompts`
1. drops duplicates (``dedup``): a prompt whose text, after case folding and whitespace
   collapsing, equals a training prompt (``duplicate_of_train``) or an earlier pool prompt
   (``duplicate_in_pool``);
2. drops prompts with a sample the *scorer* could not judge (``scoring_failed``: a missing
   judge or reference, a broken sandbox, a crash; see :data:`SCORING_ERRORS`): their mean
   would read as "hard" when it is only broken;
3. with ``drop_unsolvable``, drops prompts where no sample scored above 0 (``unsolvable``):
   possibly broken or unanswerable rather than hard;
4. normalises each remaining prompt's mean reward within its domain: a z-score
   ``(s - mean) / std`` (0 when the domain's scores are all equal) and a percentile
   (mid-rank / n, ties share one value);
5. keeps ``count`` prompts, or ``fraction`` of the eligible ones (rounded half up), split over
   domains in proportion to their size by the largest-remainder rule (``scope: domain``), or
   the lowest across all domains after normalisation (``scope: global``).

Within one domain z-score, percentile and raw score give the same order, so ``normalise`` only
changes *which* prompts are kept under ``scope: global``. Ties are broken by a seeded hash of
the record id, so the result depends on the seed and the scores, never on file order.
Baselines: ``random`` keeps the same number of prompts (same per-domain split under
``scope: domain``) drawn by a seeded hash; ``all`` keeps every eligible prompt.

``band`` (open-r1's pass-rate filter) keeps the eligible prompts whose mean reward (for a verifier,
the pass rate of the samples) lies in ``[low, high]``, both ends included: neither always solved
nor never solved. Given ``fraction`` or ``count`` too, it keeps that many (counted over the eligible
prompts, as the other strategies do, so strategies compare at one size), the lowest-scoring inside
the band first, split over domains in proportion to their prompts in the band (``scope: domain``);
a band holding fewer prompts than that is an error. Normalisation still runs over every eligible
prompt of a domain, so the ``prepo`` stats mean the same under every strategy.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datarl.config import unknown_keys
from datarl.errors import UserError
from datarl.rewards.base import SCORING_ERRORS

__all__ = [
    "SelectConfig",
    "SelectError",
    "ScoredPrompt",
    "Drop",
    "SelectionResult",
    "select_prompts",
    "prompt_key",
    "find_duplicates",
    "allocate",
    "matches_domain",
    "SCORING_ERRORS",
    "STRATEGIES",
    "BAND",
]

STRATEGIES = ("lowest", "band", "random", "all")
BAND = (0.1, 0.9)  # band's default [low, high]: open-r1's pass-rate band
SCOPES = ("domain", "global")
NORMALISERS = ("zscore", "rank", "none")

# Failure classes that mean the scorer could not judge a sample (not that the model failed the task).


class SelectError(UserError, ValueError):
    """A selection that cannot run as configured; the message says what to change."""


@dataclass(frozen=True)
class SelectConfig:
    """How Pre-PPO selects (the ``select:`` section of a run config; flags override it).

    strategy: ``lowest`` (Pre-PPO: keep the lowest-scoring, i.e. hardest), ``band`` (the prompts
        whose mean reward lies in [``low``, ``high``]), ``random`` (same count, seeded) or ``all``
        (every eligible prompt): the baselines to compare against.
    fraction: share of the eligible prompts to keep, in (0, 1]; 0.10 when neither it nor
        ``count`` is given (``band``: the whole band). Ignored by ``all``.
    count: keep exactly this many prompts instead (compare strategies at the same count).
    low, high: ``band`` only: the band of mean reward kept, ends included, ``0 <= low <= high <= 1``;
        0.1 and 0.9 when not given.
    scope: ``domain`` (keep ``fraction`` of every domain) or ``global`` (the lowest normalised
        scores across domains).
    normalise: ``zscore`` or ``rank`` (percentile within the domain), or ``none`` (raw mean
        reward; only sensible with ``scope: domain`` or a single domain).
    samples_per_prompt: responses sampled per pool prompt; a prompt's score is their mean reward.
    temperature, top_p, max_new_tokens, batch_size: sampling (see ``models.generate.SamplingConfig``).
    drop_unsolvable: drop prompts where no sample scored above 0.
    dedup: drop pool prompts whose text (case and whitespace folded) is a training prompt's or an
        earlier pool prompt's.
    domains: only consider pool prompts of these domains (a name matches the record's domain,
        its prefix before a dot, e.g. ``math`` for ``math.addsub``, or its task); None: all.
    seed: sampling seed and tie-break / ``random`` seed.
    prompts_per_chunk: prompts sampled and scored per chunk; each chunk's scores are saved before
        the next starts, so an interrupted run loses at most one chunk.
    timeout_s: wall-clock limit per scored sample (as ``datarl score --timeout``).
    histogram_bins: bins over [0, 1] of the per-domain score histograms in the report.
    """

    strategy: str = "lowest"
    fraction: float | None = None
    count: int | None = None
    low: float | None = None
    high: float | None = None
    scope: str = "domain"
    normalise: str = "zscore"
    samples_per_prompt: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    batch_size: int = 32
    drop_unsolvable: bool = False
    dedup: bool = True
    domains: tuple[str, ...] | None = None
    seed: int = 0
    prompts_per_chunk: int = 64
    timeout_s: float = 30.0
    histogram_bins: int = 20

    def __post_init__(self) -> None:
        for name, allowed in (("strategy", STRATEGIES), ("scope", SCOPES), ("normalise", NORMALISERS)):
            if getattr(self, name) not in allowed:
                raise SelectError(f"select.{name}: {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if self.fraction is not None and self.count is not None:
            raise SelectError("select: give fraction or count, not both")
        self._check_band()
        if self.fraction is None and self.count is None and self.strategy != "band":
            object.__setattr__(self, "fraction", 0.10)
        if self.fraction is not None and not (isinstance(self.fraction, (int, float)) and 0 < self.fraction <= 1):
            raise SelectError(f"select.fraction: must be in (0, 1], got {self.fraction!r} (0.1 keeps 10%)")
        for name in (
            "count",
            "samples_per_prompt",
            "max_new_tokens",
            "batch_size",
            "prompts_per_chunk",
            "histogram_bins",
            "seed",
        ):
            value = getattr(self, name)
            low = 0 if name == "seed" else 1
            if (value is not None or name != "count") and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                raise SelectError(f"select.{name}: must be an integer >= {low}, got {value!r}")
        if not (isinstance(self.temperature, (int, float)) and self.temperature >= 0):
            raise SelectError(f"select.temperature: must be >= 0 (0 = greedy), got {self.temperature!r}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise SelectError(f"select.top_p: must be in (0, 1], got {self.top_p!r}")
        if not (isinstance(self.timeout_s, (int, float)) and self.timeout_s > 0):
            raise SelectError(f"select.timeout_s: must be positive, got {self.timeout_s!r}")
        if self.domains is not None:
            domains = (self.domains,) if isinstance(self.domains, str) else tuple(self.domains)
            if not domains or not all(isinstance(d, str) and d for d in domains):
                raise SelectError(f"select.domains: must be a non-empty list of domain names, got {self.domains!r}")
            object.__setattr__(self, "domains", domains)

    def _check_band(self) -> None:
        given = [name for name in ("low", "high") if getattr(self, name) is not None]
        if self.strategy != "band":
            if given:
                raise SelectError(
                    f"select.{given[0]}: bounds a band, but the strategy is {self.strategy!r}; "
                    "remove low/high, or use strategy band (--strategy band)"
                )
            return
        for name, default in zip(("low", "high"), BAND):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, default)
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise SelectError(f"select.{name}: must be a mean reward in [0, 1], got {value!r}")
        if self.low > self.high:  # type: ignore[operator]
            raise SelectError(f"select: the band is empty: low {self.low} > high {self.high}; swap them")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None = None) -> SelectConfig:
        """From a config's ``select:`` section, then ``overrides`` (command-line flags) on top.

        An override of ``fraction`` replaces the section's ``count`` and vice versa.
        """
        if data is not None and not isinstance(data, Mapping):
            raise SelectError("select: must be a mapping of option: value")
        merged = dict(data or {})
        unknown, names = unknown_keys(cls, merged)
        if unknown:
            raise SelectError(f"select: unknown option(s) {unknown}; allowed: {', '.join(names)}")
        overrides = dict(overrides or {})
        for a, b in (("fraction", "count"), ("count", "fraction")):
            if a in overrides and b not in overrides:
                merged.pop(b, None)
        merged.update(overrides)
        return cls(**merged)


@dataclass(frozen=True)
class ScoredPrompt:
    """One pool prompt and the rewards of its samples.

    record: the record as a dict (``id`` set).
    domain: its domain (normalisation group).
    rewards: one reward in [0, 1] per sample (at least one).
    failures: per sample, its ``reward_info.failure`` class or None (same length as rewards, or empty).
    """

    record: Mapping[str, Any]
    domain: str
    rewards: tuple[float, ...]
    failures: tuple[str | None, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rewards", tuple(float(r) for r in self.rewards))
        object.__setattr__(self, "failures", tuple(self.failures))
        if not self.rewards:
            raise ValueError(f"{self.id}: a scored prompt needs at least one reward")
        if self.failures and len(self.failures) != len(self.rewards):
            raise ValueError(f"{self.id}: failures must have one entry per reward")

    @property
    def id(self) -> str:
        return str(self.record.get("id"))

    @property
    def mean(self) -> float:
        return sum(self.rewards) / len(self.rewards)


@dataclass(frozen=True)
class Drop:
    """A pool prompt left out before selection, and why (``detail``: the train id it repeats, ...)."""

    id: str
    domain: str
    reason: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "domain": self.domain, "reason": self.reason, "detail": self.detail}


@dataclass
class SelectionResult:
    """What :func:`select_prompts` decided.

    selected: kept prompts, in input order.
    eligible: prompts that survived the drops (what was normalised and chosen from), input order.
    drops: prompts left out before selection, with reasons.
    stats: id -> {score, z, percentile, domain_rank (0 = lowest in its domain), domain_size}, eligible only.
    quotas: domain -> prompts kept from it.
    target: prompts kept in all.
    """

    selected: list[ScoredPrompt]
    eligible: list[ScoredPrompt]
    drops: list[Drop]
    stats: dict[str, dict[str, Any]]
    quotas: dict[str, int]
    target: int
    config: SelectConfig = field(repr=False, default_factory=SelectConfig)

    def annotated(self) -> list[dict[str, Any]]:
        """The selected records (no ``response``) with a ``prepo`` field: their score and standing."""
        out = []
        for sp in self.selected:
            row = {k: v for k, v in sp.record.items() if k not in ("response", "response_finished")}
            row["prepo"] = {
                **self.stats[sp.id],
                "domain": sp.domain,
                "strategy": self.config.strategy,
                "rewards": list(sp.rewards),
            }
            out.append(row)
        return out


def prompt_key(prompt: Any) -> str:
    """The text two prompts must share to count as duplicates: case folded, whitespace collapsed."""
    if isinstance(prompt, list):
        prompt = "\n".join(f"{m.get('role')}: {m.get('content')}" if isinstance(m, Mapping) else str(m) for m in prompt)
    return re.sub(r"\s+", " ", str(prompt)).strip().casefold()


def find_duplicates(
    records: Sequence[Mapping[str, Any]], train: Iterable[Mapping[str, Any]] = ()
) -> dict[int, tuple[str, str]]:
    """Index of each duplicate in ``records`` -> (reason, the id it repeats).

    A record repeating a ``train`` prompt is ``duplicate_of_train``; one repeating an earlier
    record of ``records`` is ``duplicate_in_pool`` (the first occurrence is kept).
    """
    train_ids: dict[str, str] = {}
    for rec in train:
        train_ids.setdefault(prompt_key(rec.get("prompt")), str(rec.get("id")))
    seen: dict[str, str] = {}
    out: dict[int, tuple[str, str]] = {}
    for i, rec in enumerate(records):
        key = prompt_key(rec.get("prompt"))
        if key in train_ids:
            out[i] = ("duplicate_of_train", train_ids[key])
        elif key in seen:
            out[i] = ("duplicate_in_pool", seen[key])
        else:
            seen[key] = str(rec.get("id"))
    return out


def matches_domain(domain: str, task: str, names: Sequence[str]) -> bool:
    """Whether a record of ``domain``/``task`` is in ``names`` (exact, dotted prefix, or task)."""
    return any(domain == n or domain.startswith(n + ".") or task == n for n in names)


def allocate(total: int, sizes: Mapping[str, int]) -> dict[str, int]:
    """``total`` split over groups in proportion to ``sizes`` (largest remainder; ties: name)."""
    n = sum(sizes.values())
    if n == 0:
        return {k: 0 for k in sizes}
    quotas = {k: total * s / n for k, s in sizes.items()}
    out = {k: int(q) for k, q in quotas.items()}
    for k in sorted(sizes, key=lambda k: (-(quotas[k] - out[k]), k))[: total - sum(out.values())]:
        out[k] += 1
    return out


def _hash01(*parts: Any) -> float:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _domain_stats(items: list[ScoredPrompt]) -> dict[str, dict[str, Any]]:
    means = [sp.mean for sp in items]
    mu = sum(means) / len(means)
    sd = math.sqrt(sum((m - mu) ** 2 for m in means) / len(means))
    order = sorted(range(len(items)), key=lambda i: means[i])
    pct = [0.0] * len(items)
    pos = 0
    while pos < len(order):  # ties share their mid-rank
        end = pos
        while end + 1 < len(order) and means[order[end + 1]] == means[order[pos]]:
            end += 1
        for j in order[pos : end + 1]:
            pct[j] = ((pos + end) / 2 + 0.5) / len(items)
        pos = end + 1
    return {
        sp.id: {"score": m, "z": (m - mu) / sd if sd > 1e-12 else 0.0, "percentile": p, "domain_size": len(items)}
        for sp, m, p in zip(items, means, pct)
    }


def _drops(
    scored: Sequence[ScoredPrompt], cfg: SelectConfig, train: Sequence[Mapping[str, Any]] | None
) -> dict[int, Drop]:
    out: dict[int, Drop] = {}
    if cfg.dedup:
        for i, (reason, other) in find_duplicates([sp.record for sp in scored], train or ()).items():
            out[i] = Drop(scored[i].id, scored[i].domain, reason, other)
    for i, sp in enumerate(scored):
        if i in out:
            continue
        broken = [f for f in sp.failures if f in SCORING_ERRORS]
        if broken:
            out[i] = Drop(sp.id, sp.domain, "scoring_failed", broken[0])
        elif cfg.drop_unsolvable and max(sp.rewards) <= 0:
            out[i] = Drop(sp.id, sp.domain, "unsolvable", f"all {len(sp.rewards)} samples scored 0")
    return out


def target_count(cfg: SelectConfig, eligible: int) -> int:
    """How many prompts the strategy keeps out of ``eligible``; SelectError if 0 or too many. For ``band``
    without a size, ``eligible`` (at most: which prompts lie in the band is known once they are scored)."""
    if cfg.strategy == "all" or (cfg.strategy == "band" and cfg.count is None and cfg.fraction is None):
        target = eligible
    elif cfg.count is not None:
        target = cfg.count
    else:
        target = math.floor(float(cfg.fraction or 0) * eligible + 0.5)
    if eligible == 0:
        raise SelectError(
            "no eligible prompts to select from (every pool prompt was dropped; see the report's "
            "drops, or run without --drop-unsolvable / --no-dedup)"
        )
    if target == 0:
        raise SelectError(
            f"the selection is empty: fraction {cfg.fraction} of {eligible} eligible prompts "
            f"rounds to 0; raise --fraction or give --count"
        )
    if target > eligible:
        raise SelectError(f"count {target} is more than the {eligible} eligible prompts; lower --count")
    return target


def _in_band(eligible: list[ScoredPrompt], cfg: SelectConfig, target: int) -> tuple[list[ScoredPrompt], int]:
    """The eligible prompts whose mean reward lies in ``[cfg.low, cfg.high]``, and how many of them to keep
    (all of them without ``fraction``/``count``); SelectError if the band is empty or holds too few."""
    band = f"[{cfg.low:g}, {cfg.high:g}]"
    inside = [sp for sp in eligible if cfg.low <= sp.mean <= cfg.high]  # type: ignore[operator]
    if not inside:
        raise SelectError(
            f"no eligible prompt's mean reward lies in the band {band} (of {len(eligible)} eligible); "
            "widen it with --low/--high"
        )
    if cfg.count is None and cfg.fraction is None:
        return inside, len(inside)
    if target > len(inside):
        raise SelectError(
            f"the band {band} holds {len(inside)} of the {len(eligible)} eligible prompts, fewer than the "
            f"{target} to keep; lower --count/--fraction, widen the band, or give neither to keep the whole band"
        )
    return inside, target


def select_prompts(
    scored: Sequence[ScoredPrompt],
    cfg: SelectConfig,
    *,
    train: Sequence[Mapping[str, Any]] | None = None,
    prior_drops: Sequence[Drop] = (),
) -> SelectionResult:
    """Choose which scored pool prompts to train on (see the module docstring).

    train: the original training records, for ``dedup`` (within-pool duplicates are dropped either way
        when ``dedup`` is on).
    prior_drops: drops made before scoring (the engine skips sampling duplicates), carried into the result.
    Raises SelectError when nothing is eligible, the selection would be empty, or ``count`` is too large.
    """
    if len({sp.id for sp in scored}) != len(scored):
        raise SelectError("scored prompts must have unique ids (selection and its report refer to prompts by id)")
    dropped = _drops(scored, cfg, train)
    eligible = [sp for i, sp in enumerate(scored) if i not in dropped]
    target = target_count(cfg, len(eligible))
    by_domain: dict[str, list[ScoredPrompt]] = defaultdict(list)
    for sp in eligible:
        by_domain[sp.domain].append(sp)
    stats: dict[str, dict[str, Any]] = {}
    for items in by_domain.values():
        dstats = _domain_stats(items)
        for rank, sp in enumerate(sorted(items, key=lambda sp: (sp.mean, _hash01(cfg.seed, "tie", sp.id)))):
            dstats[sp.id]["domain_rank"] = rank
        stats.update(dstats)
    norm = {"zscore": "z", "rank": "percentile", "none": "score"}[cfg.normalise]

    def key(sp: ScoredPrompt) -> tuple[float, float]:
        if cfg.strategy == "random":
            return (0.0, _hash01(cfg.seed, "random", sp.id))
        return (stats[sp.id][norm], _hash01(cfg.seed, "tie", sp.id))

    candidates, target = _in_band(eligible, cfg, target) if cfg.strategy == "band" else (eligible, target)
    if cfg.scope == "global" or cfg.strategy == "all":
        keep = {sp.id for sp in sorted(candidates, key=key)[:target]}
    else:
        groups: dict[str, list[ScoredPrompt]] = defaultdict(list)
        for sp in candidates:
            groups[sp.domain].append(sp)
        quotas = allocate(target, {d: len(items) for d, items in groups.items()})
        keep = {sp.id for d, items in groups.items() for sp in sorted(items, key=key)[: quotas[d]]}
    selected = [sp for sp in eligible if sp.id in keep]
    kept: dict[str, int] = {d: 0 for d in sorted(by_domain)}
    for sp in selected:
        kept[sp.domain] += 1
    drops = list(prior_drops) + [dropped[i] for i in sorted(dropped)]
    return SelectionResult(selected, eligible, drops, stats, kept, target, cfg)
