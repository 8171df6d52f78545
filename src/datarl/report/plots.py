"""The report's figures, drawn with matplotlib's Agg canvas (no display, no pyplot global state).

Every panel function takes an Axes and the run, draws what data there is, and writes "no data" in the panel
otherwise, so a figure never fails on a run that logged less than usual.
"""

from __future__ import annotations

import base64
import io
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from datarl.report.load import TASK_ORDER, RunData, gold_tasks, number, series, suffixes

_TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
ALARM_COLOUR = "#d62728"


def colour(name: str, names: Sequence[str] = ()) -> str:
    """A stable colour per task (math, code, ifeval, general first) or per other name in ``names``."""
    if name in TASK_ORDER:
        return _TAB10[TASK_ORDER.index(name)]
    if name.startswith("rtv.") and name[4:] in TASK_ORDER:  # a verifier takes its task's colour
        return _TAB10[TASK_ORDER.index(name[4:])]
    rest = [n for n in names if n not in TASK_ORDER and not (n.startswith("rtv.") and n[4:] in TASK_ORDER)]
    index = rest.index(name) if name in rest else zlib.crc32(name.encode())
    return _TAB10[(len(TASK_ORDER) + index) % len(_TAB10)]


def new_figure(rows: int, cols: int, width: float, height: float) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def to_png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def data_uri(fig: Any) -> str:
    return "data:image/png;base64," + base64.b64encode(to_png(fig)).decode("ascii")


def no_data(ax: Any, title: str, why: str = "no data") -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


def _finish(ax: Any, title: str, ylabel: str = "", legend: bool = True) -> None:
    ax.set_title(title)
    ax.set_xlabel("step")
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")


def _smooth(ys: list[float]) -> list[float]:
    """Trailing moving average, so 4,000 noisy steps read as a curve."""
    width = max(5, len(ys) // 25)
    out, total = [], 0.0
    for i, y in enumerate(ys):
        total += y
        if i >= width:
            total -= ys[i - width]
        out.append(total / min(i + 1, width))
    return out


def _curve(
    ax: Any, xs: list[float], ys: list[float], label: str, col: str, *, smooth: bool | None = None, **kw: Any
) -> None:
    if smooth if smooth is not None else len(ys) > 30:
        ax.plot(xs, ys, color=col, alpha=0.25, linewidth=0.8)
        ax.plot(xs, _smooth(ys), color=col, label=label, linewidth=1.6, **kw)
    else:
        ax.plot(xs, ys, color=col, label=label, marker="." if len(ys) < 60 else None, **kw)


def lines(
    ax: Any,
    run_rows: list[dict[str, Any]],
    keys: dict[str, str],
    title: str,
    ylabel: str = "",
    *,
    names: Sequence[str] = (),
) -> bool:
    """One curve per ``label: key``; "no data" if none of the keys has a value. Returns whether it drew."""
    curves = {label: series(run_rows, key) for label, key in keys.items()}
    curves = {label: xy for label, xy in curves.items() if xy[0]}
    smooth = max((len(xs) for xs, _ in curves.values()), default=0) > 30  # one style per panel
    for label, (xs, ys) in curves.items():
        _curve(ax, xs, ys, label, colour(label, names or list(keys)), smooth=smooth)
    drew = bool(curves)
    if drew:
        _finish(ax, title, ylabel)
    else:
        no_data(ax, title)
    return drew


# --------------------------------------------------------------------------------- panels


def reward_by_source(ax: Any, run: RunData) -> None:
    sources = suffixes(run.metrics, r"reward/source/(.+)")
    keys = {s: f"reward/source/{s}" for s in sources}
    drew = lines(ax, run.metrics, keys, "reward by source", "reward", names=sources)
    xs, ys = series(run.metrics, "reward/mean")
    if xs:
        _curve(ax, xs, ys, "mean", "#000000", smooth=len(xs) > 30, linestyle="--")
        _finish(ax, "reward by source", "reward")
    elif not drew:
        no_data(ax, "reward by source")


def reward_by_task(ax: Any, run: RunData) -> None:
    tasks = suffixes(run.metrics, r"reward/task/([^/]+)")
    lines(ax, run.metrics, {t: f"reward/task/{t}" for t in tasks}, "reward by task", "reward", names=tasks)


def _with_twin(ax: Any, run: RunData, key: str, twin_key: str, title: str, ylabel: str, twin_label: str) -> None:
    if not lines(ax, run.metrics, {ylabel: key}, title, ylabel):
        return
    xs, ys = series(run.metrics, twin_key)
    if xs:
        twin = ax.twinx()
        twin.plot(xs, ys, color="#7f7f7f", linestyle=":", label=twin_label)
        twin.set_ylabel(twin_label, color="#7f7f7f")


def kl(ax: Any, run: RunData) -> None:
    _with_twin(ax, run, "ppo/kl", "ppo/kl_coef", "KL to the reference policy", "KL", "KL coefficient")


def entropy(ax: Any, run: RunData) -> None:
    lines(ax, run.metrics, {"entropy": "ppo/entropy"}, "policy entropy", "nats / token")


def length(ax: Any, run: RunData) -> None:
    _with_twin(ax, run, "response/length", "response/cut_off", "response length", "tokens", "cut off (fraction)")


def ppo_losses(ax: Any, run: RunData) -> None:
    _with_twin(ax, run, "ppo/clipfrac", "ppo/value_loss", "clip fraction and value loss", "clip fraction", "value loss")


def gold(ax: Any, run: RunData) -> None:
    tasks = gold_tasks(run.results)
    for task in tasks:
        scores = [(float(r.step), r.gold[task]) for r in run.results if task in r.gold]
        col = colour(task, tasks)
        ax.plot([x for x, _ in scores], [s.mean for _, s in scores], color=col, marker="o", label=task)
        band = [(x, s.ci95_low, s.ci95_high) for x, s in scores if s.ci95_low is not None and s.ci95_high is not None]
        if band:
            ax.fill_between(
                [b[0] for b in band], [b[1] for b in band], [b[2] for b in band], color=col, alpha=0.15, linewidth=0
            )
    if tasks:
        _finish(ax, "gold eval score by task (95% CI)", "gold score")
    else:
        no_data(ax, "gold eval score by task")


def alarm_steps(run: RunData) -> dict[str, list[float]]:
    """Eval steps at which ``hacking/alarm/<task>`` was true, per task."""
    tasks = suffixes(run.evals, r"hacking/alarm/([^/]+)")
    return {t: [float(r["step"]) for r in run.evals if r.get(f"hacking/alarm/{t}") is True] for t in tasks}


def hacking_gap(ax: Any, run: RunData) -> None:
    tasks = suffixes(run.evals, r"hacking/gap/([^/]+)")
    alarms = alarm_steps(run)
    for task in tasks:
        xs, ys = series(run.evals, f"hacking/gap/{task}")
        ax.plot(xs, ys, color=colour(task, tasks), marker="o", label=task)
        hit = [(x, y) for x, y in zip(xs, ys) if x in set(alarms.get(task, []))]
        if hit:
            ax.scatter(
                [h[0] for h in hit],
                [h[1] for h in hit],
                marker="X",
                s=140,
                color=ALARM_COLOUR,
                zorder=5,
                label=f"alarm ({task})",
            )
    for i, step in enumerate(sorted({s for steps in alarms.values() for s in steps})):
        ax.axvline(step, color=ALARM_COLOUR, linestyle="--", alpha=0.5, label="alarm" if i == 0 else None)
    if tasks:
        ax.axhline(0, color="#000000", linewidth=0.6)
        _finish(ax, "hacking gap (proxy - gold)", "gap")
    else:
        no_data(ax, "hacking gap", "no learned-reward task evaluated")


def proxy_vs_gold(ax: Any, run: RunData) -> None:
    tasks = suffixes(run.evals, r"proxy/([^/]+)")
    for task in tasks:
        col = colour(task, tasks)
        xs, ys = series(run.evals, f"proxy/{task}")
        ax.plot(xs, ys, color=col, linestyle="--", marker="^", label=f"{task} proxy")
        xs, ys = series(run.evals, f"gold/{task}")
        ax.plot(xs, ys, color=col, marker="o", label=f"{task} gold")
    if tasks:
        _finish(ax, "proxy reward (dashed) vs gold (solid)", "score")
    else:
        no_data(ax, "proxy vs gold")


def diversity(metric: str, title: str) -> Callable[[Any, RunData], None]:
    def panel(ax: Any, run: RunData) -> None:
        tasks = suffixes(run.evals, rf"diversity/([^/]+)/{metric}")
        lines(ax, run.evals, {t: f"diversity/{t}/{metric}" for t in tasks}, title, names=tasks)

    return panel


def curriculum(ax: Any, run: RunData) -> None:
    tasks = suffixes(run.metrics, r"curriculum/realised/([^/]+)")
    rows = [r for r in run.metrics if any(f"curriculum/realised/{t}" in r for t in tasks)]
    if not rows:
        no_data(ax, "curriculum: realised task mixture")
        return
    xs = [float(r["step"]) for r in rows]
    stacks = [[number(r.get(f"curriculum/realised/{t}")) or 0.0 for r in rows] for t in tasks]
    # step="post": a step's mixture holds until the next step, so areas change exactly at the phase lines
    ax.stackplot(xs, *stacks, labels=tasks, colors=[colour(t, tasks) for t in tasks], alpha=0.8, step="post")
    top = max(1.0, max(map(sum, zip(*stacks))))
    ax.set_ylim(0, top * 1.12)  # headroom for the phase names
    for step, name in phase_starts(run):
        ax.axvline(step, color="#000000", linewidth=1.2)
        ax.text(step, top * 1.06, f" {name}", va="center", ha="left", fontsize=9)
    _finish(ax, "curriculum: realised task mixture per step (lines = phase starts)", "fraction of prompts")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: the areas fill the axes


def phase_starts(run: RunData) -> list[tuple[float, str]]:
    """(step, phase name) where ``curriculum/phase`` changes, the first logged step included."""
    out: list[tuple[float, str]] = []
    last: Any = object()
    for row in run.metrics:
        phase = row.get("curriculum/phase")
        if phase is None or phase == last:
            continue
        name = row.get("curriculum/phase_name")
        out.append((float(row["step"]), str(name) if name is not None else f"phase {phase}"))
        last = phase
    return out


def selection_histogram(ax: Any, domain: str, info: dict[str, Any]) -> None:
    hist = info.get("histogram") if isinstance(info.get("histogram"), dict) else {}
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    kept = hist.get("kept_counts") or [0] * len(counts)
    if len(edges) != len(counts) + 1 or not counts:
        no_data(ax, domain, "no histogram")
        return
    widths = [edges[i + 1] - edges[i] for i in range(len(counts))]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color="#c7c7c7", edgecolor="#999999", label="dropped")
    ax.bar(
        edges[:-1],
        kept[: len(counts)],
        width=widths,
        align="edge",
        color=colour(domain, [domain]),
        edgecolor="#333333",
        label="kept",
    )
    threshold = number(info.get("threshold"))
    if threshold is not None:
        ax.axvline(threshold, color=ALARM_COLOUR, linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set_title(f"{domain}: kept {info.get('kept', '?')} of {info.get('count', '?')}")
    ax.set_xlabel("mean score over samples")
    ax.set_ylabel("prompts")
    ax.legend(fontsize=8)
