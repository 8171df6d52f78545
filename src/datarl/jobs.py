"""File-level jobs behind ``datarl generate`` and ``datarl eval``.

Both read records (``datarl.records``), sample a policy (``datarl.models``) and write
their results atomically, like ``datarl score``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datarl.io import write_records
from datarl.metrics.stats import mean_interval, wilson_interval
from datarl.records import Record, read_all_records


@dataclass(frozen=True)
class GenerateSummary:
    prompts: int
    responses: int
    cut_off: int
    seconds: float

    def format(self) -> str:
        return (
            f"generated {self.responses} responses for {self.prompts} prompts in {self.seconds:.1f} s "
            f"({self.responses / max(self.seconds, 1e-9):.1f}/s); cut off without EOS: {self.cut_off}"
        )


def response_rows(records: Sequence[Record], generations: Sequence[Any], samples_per_prompt: int) -> list[dict]:
    """One output record per generation: the input record with ``response`` filled.

    With several samples per prompt the id becomes ``ID#k`` and ``prompt_id`` keeps the original.
    """
    rows = []
    for g in generations:
        rec = records[g.prompt_index]
        row = dict(rec.raw)
        row["id"] = rec.id if samples_per_prompt == 1 else f"{rec.id}#{g.sample_index}"
        if samples_per_prompt > 1:
            row["prompt_id"] = rec.id
        row["response"] = g.text
        row["response_finished"] = g.finished
        rows.append(row)
    return rows


def generate_file(
    input_path: str,
    output_path: str,
    policy: Any,
    sampling: Any,
    *,
    progress: bool = False,
    layout: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> GenerateSummary:
    """Sample ``policy`` on every record of ``input_path``; write records with ``response``. ``layout`` and
    ``announce`` as for :func:`datarl.records.load_records`."""
    from datarl.models.generate import generate

    records = read_all_records(input_path, layout=layout, announce=announce)
    start = time.perf_counter()
    gens = generate(policy, [r.prompt for r in records], sampling, progress=progress)
    write_records(output_path, response_rows(records, gens, sampling.samples_per_prompt))
    return GenerateSummary(len(records), len(gens), sum(not g.finished for g in gens), time.perf_counter() - start)


def summarise_scores(tasks: Sequence[str], scores: Sequence[float]) -> dict[str, dict[str, float]]:
    """Per-task mean score with a 95% interval (Wilson for 0/1 scores, normal otherwise)."""
    by_task: dict[str, list[float]] = defaultdict(list)
    for task, score in zip(tasks, scores):
        by_task[task].append(float(score))
    out = {}
    for task in sorted(by_task):
        vals = by_task[task]
        binary = all(v in (0.0, 1.0) for v in vals)
        lo, hi = wilson_interval(sum(vals), len(vals)) if binary else mean_interval(vals)
        out[task] = {"n": len(vals), "mean": sum(vals) / len(vals), "ci95_low": lo, "ci95_high": hi}
    return out


def format_eval_table(summary: Mapping[str, Mapping[str, float]]) -> str:
    lines = [f"  {'task':<10} {'n':>6} {'gold':>8} {'95% CI':>17}"]
    for task, s in summary.items():
        lines.append(f"  {task:<10} {int(s['n']):>6} {s['mean']:>8.3f}   [{s['ci95_low']:.3f}, {s['ci95_high']:.3f}]")
    return "\n".join(lines)


def eval_records(
    records: Sequence[Record],
    policy: Any,
    sampling: Any,
    gold: Callable[[Mapping[str, Any], str], Any],
    *,
    workers: int = 1,
    progress: bool = False,
) -> tuple[dict[str, Any], list[dict]]:
    """Generate on ``records`` and score each response with ``gold``; returns (summary, rows)."""
    from datarl.executors import map_ordered
    from datarl.models.generate import generate

    start = time.perf_counter()
    gens = generate(policy, [r.prompt for r in records], sampling, progress=progress)
    rows = response_rows(records, gens, sampling.samples_per_prompt)
    outcomes = map_ordered(lambda row: gold(row, row["response"]), rows, workers=workers, timeout_s=60)
    scores = []
    for row, outcome in zip(rows, outcomes):
        result = outcome.value if outcome.ok else None
        score = float(result.score) if result is not None else 0.0
        row.update(
            {
                "gold": score,
                "gold_source": getattr(result, "source", "none"),
                "gold_info": getattr(result, "info", {"failure": outcome.failure, "error": outcome.error}),
            }
        )
        scores.append(score)
    summary = {
        "by_task": summarise_scores([r["task"] for r in rows], scores),
        "responses": len(rows),
        "cut_off": sum(not g.finished for g in gens),
        "seconds": time.perf_counter() - start,
    }
    return summary, rows
