"""``datarl report RUN_DIR``: one self-contained HTML page (inline CSS, plots as inline base64 PNGs, no
scripts, nothing fetched) plus ``report.png``, the main figure.

Sections, each an element with an ``id``: ``training``, ``gold``, ``hacking``, ``diversity``, ``curriculum``,
``selection``, ``before-after``; a header summarises the run config. A section whose data is missing says so
in one line instead of failing.
"""

from __future__ import annotations

import datetime as _dt
import functools
import html
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from datarl.io import write_bytes
from datarl.report import plots
from datarl.report.load import RunData, before_after, difference, find_key, gold_tasks, load_run, number, suffixes

SECTIONS = ("training", "gold", "hacking", "diversity", "curriculum", "selection", "judge", "before-after", "claims")
Panel = Callable[[Any, RunData], None]

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1320px; padding: 0 24px 48px; color: #222; }
header { border-bottom: 2px solid #444; padding: 12px 0; }
h1 { margin: 0 0 6px; font-size: 26px; } h2 { margin-top: 34px; border-bottom: 1px solid #ccc; }
nav a { margin-right: 14px; color: #1f5fa8; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: left; }
th { background: #f1f1f1; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; }
.msg { color: #666; font-style: italic; background: #f7f7f7; padding: 10px 14px; border-left: 4px solid #bbb; }
.alarm { color: #b00020; font-weight: 600; } .better { color: #1a7f37; font-weight: 600; }
.worse { color: #b00020; font-weight: 600; } .problems { color: #8a5a00; }
pre { background: #f7f7f7; padding: 10px; overflow-x: auto; font-size: 12px; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _msg(text: str) -> str:
    return f'<p class="msg">{_e(text)}</p>'


def _fmt(value: Any, digits: int = 3) -> str:
    x = number(value)
    return "–" if x is None else f"{x:.{digits}f}"


def _figure(run: RunData, panels: Sequence[Panel], cols: int, width: float, row_height: float, alt: str) -> str:
    rows = -(-len(panels) // cols)
    fig, axes = plots.new_figure(rows, cols, width, row_height * rows)
    for ax, panel in zip(axes, panels):
        panel(ax, run)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return f'<img alt="{_e(alt)}" src="{plots.data_uri(fig)}">'


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}">\n<h2>{_e(title)}</h2>\n{body}\n</section>'


# --------------------------------------------------------------------------------- header


def _value_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " → ".join(map(str, value))
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _header(run: RunData) -> str:
    cfg = run.config or {}
    rows = []
    for key in ("policy", "steps", "seed", "curriculum", "prompts_per_step", "samples_per_prompt"):
        value = find_key(cfg, key)
        if value is not None:
            rows.append(f"<tr><th>{_e(key)}</th><td>{_e(_value_text(value))}</td></tr>")
    steps = [r["step"] for r in run.metrics]
    times = [t for r in run.metrics if (t := number(r.get("time_s"))) is not None]
    logged = (
        (f"{len(steps)} PPO steps logged (last step {steps[-1]}" + (f", {times[-1]:.0f} s" if times else "") + ")")
        if steps
        else "no PPO steps logged"
    )
    rows.append(f"<tr><th>logged</th><td>{_e(logged)}; {len(run.evals)} evaluations</td></tr>")
    router = find_key(cfg, "router")
    router_html = ""
    if isinstance(router, Mapping) and router:
        body = "".join(f"<tr><td>{_e(t)}</td><td>{_e(_value_text(s))}</td></tr>" for t, s in router.items())
        router_html = f"<h3>Reward router</h3><table><tr><th>task</th><th>source</th></tr>{body}</table>"
    problems = "".join(f"<li>{_e(p)}</li>" for p in run.problems)
    nav = " ".join(f'<a href="#{s}">{s}</a>' for s in SECTIONS)
    full = (
        (f"<details><summary>full config</summary><pre>{_e(json.dumps(cfg, indent=2, default=str))}</pre></details>")
        if run.config is not None
        else _msg("no config.json in this run directory")
    )
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        f'<header id="header"><h1>datarl run report: {_e(run.run_dir.name)}</h1>'
        f"<div>{_e(run.run_dir.resolve())} · generated {when}</div><nav>{nav}</nav>"
        f"<h3>Run</h3><table>{''.join(rows)}</table>{router_html}{full}"
        + (f'<ul class="problems">{problems}</ul>' if problems else "")
        + "</header>"
    )


# ------------------------------------------------------------------------------- sections


def _training(run: RunData) -> str:
    if not run.metrics:
        return _msg("no training metrics (metrics.jsonl missing or empty)")
    panels = [plots.reward_by_source, plots.reward_by_task, plots.kl, plots.entropy, plots.length, plots.ppo_losses]
    return _figure(run, panels, 3, 15, 3.6, "training curves")


def _gold(run: RunData) -> str:
    if not gold_tasks(run.results):
        return _msg("no gold evaluations (eval.jsonl missing or has no gold/<task> scores)")
    return _figure(run, [plots.gold], 1, 11, 4.5, "gold eval score by task")


def _hacking(run: RunData) -> str:
    if not suffixes(run.evals, r"hacking/gap/([^/]+)"):
        return _msg("no hacking gap logged (no task trained on a learned reward was evaluated)")
    alarms = {t: s for t, s in plots.alarm_steps(run).items() if s}
    if alarms:
        text = "; ".join(
            f"{t} at step{'s' if len(s) > 1 else ''} {', '.join(str(int(x)) for x in s)}" for t, s in alarms.items()
        )
        note = f'<p class="alarm">Hacking alarm: {_e(text)} (proxy rising while gold falls).</p>'
    else:
        note = "<p>No hacking alarm fired.</p>"
    return note + _figure(run, [plots.hacking_gap, plots.proxy_vs_gold], 2, 15, 4.5, "hacking gap")


def _diversity(run: RunData) -> str:
    if not suffixes(run.evals, r"diversity/([^/]+)/[^/]+"):
        return _msg("no diversity metrics in eval.jsonl")
    panels = [
        plots.diversity("max_edit", "max pairwise edit distance (normalised)"),
        plots.diversity("distinct_1", "distinct-1"),
        plots.diversity("distinct_2", "distinct-2"),
        plots.diversity("answers", "distinct final answers per prompt"),
    ]
    return (
        "<p>Per eval prompt, k samples: the paper's maximum pairwise normalised token edit distance, "
        "distinct n-grams, and the number of distinct final answers (means over prompts).</p>"
        + _figure(run, panels, 4, 15, 3.4, "diversity")
    )


def _curriculum(run: RunData) -> str:
    if not suffixes(run.metrics, r"curriculum/realised/([^/]+)"):
        return _msg("no curriculum metrics (curriculum/realised/<task>) in metrics.jsonl")
    starts = plots.phase_starts(run)
    table = "".join(f"<tr><td class='num'>{int(s)}</td><td>{_e(n)}</td></tr>" for s, n in starts)
    phases = f"<table><tr><th>from step</th><th>phase</th></tr>{table}</table>" if starts else ""
    return phases + _figure(run, [plots.curriculum], 1, 13, 4.2, "curriculum")


def _selection(run: RunData) -> str:
    sel = run.selection
    if not sel:
        return _msg("no selection in this run (no selection/report.json)")
    keys = (
        "strategy",
        "low",
        "high",
        "normalise",
        "scope",
        "fraction",
        "count",
        "seed",
        "samples_per_prompt",
        "drop_unsolvable",
        "dedup",
        "policy",
        "kept",
        "dropped",
    )
    head = "".join(f"<tr><th>{k}</th><td>{_e(_value_text(sel[k]))}</td></tr>" for k in keys if sel.get(k) is not None)
    domains = sel.get("domains") if isinstance(sel.get("domains"), Mapping) else {}
    if not domains:
        return f"<table>{head}</table>" + _msg("the selection report lists no domains")
    table = _selection_table(domains)
    panels = [
        functools.partial(_selection_panel, domain=d, info=dict(i))
        for d, i in domains.items()
        if isinstance(i, Mapping)
    ]
    figure = _figure(run, panels, min(4, len(panels)), 15, 3.4, "selection histograms") if panels else ""
    return (
        f"<table>{head}</table>{table}<p>Pre-PPO histograms per domain of each prompt's mean score over its "
        "samples; the kept part is coloured, the dashed line is the threshold.</p>" + figure
    )


def _selection_table(domains: Mapping[str, Any]) -> str:
    cols = ("count", "eligible", "kept", "dropped", "threshold", "mean", "std")
    present = [c for c in cols if any(isinstance(i, Mapping) and c in i for i in domains.values())]
    rows = []
    for d, info in domains.items():
        if not isinstance(info, Mapping):
            continue
        cells = "".join(
            f"<td class='num'>{_fmt(info.get(c)) if c in ('threshold', 'mean', 'std') else _e(info.get(c, '–'))}</td>"
            for c in present
        )
        reasons = info.get("dropped_by_reason")
        why = ", ".join(f"{k}: {v}" for k, v in reasons.items()) if isinstance(reasons, Mapping) else ""
        rows.append(f"<tr><td>{_e(d)}</td>{cells}<td>{_e(why)}</td></tr>")
    head = "".join(f"<th>{c}</th>" for c in present)
    return f"<table><tr><th>domain</th>{head}<th>dropped by reason</th></tr>{''.join(rows)}</table>"


def _ci_cell(stat: Mapping[str, Any] | None) -> str:
    if not stat:
        return "<td class='num'>–</td>"
    n = f" (n={_e(stat['n'])})" if stat.get("n") is not None else ""
    ci = (
        f" [{_fmt(stat.get('ci95_low'))}, {_fmt(stat.get('ci95_high'))}]"
        if number(stat.get("ci95_low")) is not None
        else ""
    )
    return f"<td class='num'>{_fmt(stat.get('mean'))}{ci}{n}</td>"


def _diff_cell(before: Any, after: Any, paired: Mapping[str, Any] | None = None) -> str:
    d = paired or difference(before, after)
    if d is None:
        return "<td class='num'>–</td>"
    cls = ""
    if "low" in d:
        cls = " better" if d["low"] > 0 else " worse" if d["high"] < 0 else ""
        return f"<td class='num{cls}'>{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]</td>"
    return f"<td class='num'>{d['diff']:+.3f}</td>"


def _before_after(run: RunData) -> str:
    tasks, table, steps = before_after(run)
    if not tasks:
        return _msg("no gold scores to compare (no eval.jsonl or summary.json)")
    head = (
        f"<tr><th>task</th><th>before (step 0)</th><th>after (final, step {_e(steps['after'])})</th>"
        f"<th>difference</th><th>best (step {_e(steps['best'])})</th><th>difference</th></tr>"
    )
    body = "".join(
        f"<tr><td>{_e(t)}</td>{_ci_cell(r['before'])}{_ci_cell(r['after'])}"
        f"{_diff_cell(r['before'], r['after'], r.get('gain_after'))}"
        f"{_ci_cell(r['best'])}{_diff_cell(r['before'], r['best'], r.get('gain_best'))}</tr>"
        for t, r in table.items()
    )
    paired = any(r.get("gain_after") or r.get("gain_best") for r in table.values())
    how = (
        "is paired: it comes from the per-prompt differences on the same eval prompts (greedy responses before "
        "and after)"
        if paired
        else "is a normal approximation from the two intervals"
    )
    return (
        f"<table>{head}{body}</table><p>Gold score with 95% confidence intervals. A difference's interval "
        f"{how}; green = above zero, red = below.</p>"
    )


_JUDGE_KINDS = {
    "gt": "genrm.gt: SFT responses to eval math prompts vs rtv.math",
    "pairs": "genrm.bon: pairs of SFT responses to eval general prompts vs the gold ordering",
}


def _judge(run: RunData) -> str:
    if not run.judges:
        return _msg("the run's reward sources name no local GenRM judge")
    parts = []
    for spec, meta in run.judges.items():
        table = meta.get("heldout") or {}
        if not isinstance(table, Mapping) or not table:
            parts.append(
                f"<h3>{_e(spec)}</h3>" + _msg("this judge has no held-out table (trained outside the pipeline)")
            )
            continue
        head = (
            "<tr><th>held-out items</th><th>n</th><th>agreement</th><th>balanced agreement</th>"
            "<th>position consistency</th><th>ROC AUC</th><th>judge errors</th></tr>"
        )
        rows = "".join(
            f"<tr><td>{_e(_JUDGE_KINDS.get(kind, kind))}</td><td>{_fmt(row.get('items'), 0)}</td>"
            f"<td>{_fmt(row.get('agreement'))}</td><td>{_fmt(row.get('balanced_agreement'))}</td>"
            f"<td>{_fmt(row.get('position_consistency'))}</td><td>{_fmt(row.get('roc_auc'))}</td>"
            f"<td>{_fmt(row.get('judge_errors'), 0)}</td></tr>"
            for kind, row in table.items()
            if isinstance(row, Mapping)
        )
        parts.append(f"<h3>{_e(spec)}</h3><table>{head}{rows}</table>")
    return "".join(parts) + (
        "<p>Measured when the pipeline built the judge, on items from evaluation prompts it never trained on. "
        "Agreement: the judge's verdict (score above 0.5, or above the judge's calibrated threshold for "
        "ground-truth items) matches the gold check; balanced agreement: the mean over the two labels, so a judge "
        "that always says the same thing gets 0.5; position consistency: both orders of an item gave the same "
        "verdict; ROC AUC: how well the raw scores rank right above wrong whatever the threshold (– where every "
        "item has the same label). A general reward from a judge near 0.5 here is noise.</p>"
    )


def _sources(run: RunData) -> str:
    router = ((run.config or {}).get("reward") or {}).get("router") or {}
    return ", ".join(f"{task} -> {source}" for task, source in sorted(router.items())) or "the default router"


def _claims(run: RunData) -> str:
    """Which of the paper's claims (../shared/PAPER.md section 8) one run can speak to, and which need a study."""
    if run.config is None:
        return _msg("config.json missing: which claims this run can speak to depends on its config")
    sel = run.selection or {}
    kept = sel.get("kept")
    selected = (
        f"this run added {kept} pool prompts ({(sel.get('config') or {}).get('strategy', '?')})"
        if kept is not None
        else "this run added no pool prompts"
    )
    rows = [
        (
            "Reward hacking: RTV > GenRM+GT > GenRM+BoN (and BT)",
            f"in part: the hacking gap of the sources it trained with ({_sources(run)}) is in 'Reward hacking'",
            "an ordering needs runs that differ only in the source: examples/studies/hacking.yaml",
        ),
        (
            "Pre-PPO beats the original prompts, a random share and the whole pool",
            f"no: {selected}, and one run has nothing to compare with",
            "examples/studies/prepo.yaml",
        ),
        (
            "Adding 10% of the pool beats 20%, which beats 50%",
            "no",
            "examples/studies/prepo_scale.yaml",
        ),
        (
            "Code and math first beats the natural mixture",
            "no: the curriculum it used is in 'Curriculum', but not what the other order would have given",
            "examples/studies/curriculum.yaml",
        ),
    ]
    head = "<tr><th>claim</th><th>what this run shows</th><th>what tests it</th></tr>"
    body = "".join(f"<tr><td>{_e(a)}</td><td>{_e(b)}</td><td>{_e(c)}</td></tr>" for a, b, c in rows)
    return (
        f"<table>{head}{body}</table><p>One run is one arm and one seed. Its gains over the SFT policy (above) "
        "are measured on the same prompts before and after, but two seeds of the same configuration can differ "
        "by more than their intervals (1.3 points of math gold at 10 steps in the smoke study), so a claim about "
        "a data strategy needs a study with at least three seeds: `datarl study`, docs/studies.md; what the "
        "studies found is in docs/results.md.</p>"
    )


_BUILDERS: dict[str, tuple[str, Callable[[RunData], str]]] = {
    "training": ("Training curves", _training),
    "gold": ("Gold evaluation", _gold),
    "hacking": ("Reward hacking", _hacking),
    "diversity": ("Response diversity", _diversity),
    "curriculum": ("Curriculum", _curriculum),
    "selection": ("Pre-PPO selection", _selection),
    "judge": ("How far to trust the judge", _judge),
    "before-after": ("Before and after training", _before_after),
    "claims": ("What this run can say about the paper's claims", _claims),
}


def _main_figure(run: RunData) -> bytes:
    fig, axes = plots.new_figure(2, 2, 13, 9)
    for ax, panel in zip(
        axes,
        (
            plots.gold,
            plots.hacking_gap,
            plots.reward_by_source,
            plots.diversity("max_edit", "max pairwise edit distance"),
        ),
    ):
        panel(ax, run)
    fig.suptitle(f"datarl run: {run.run_dir.name}")
    return plots.to_png(fig)


def _selection_panel(ax: Any, _run: RunData, *, domain: str, info: dict[str, Any]) -> None:
    plots.selection_histogram(ax, domain, info)


def render_html(run: RunData) -> str:
    sections = "\n".join(_section(sid, title, build(run)) for sid, (title, build) in _BUILDERS.items())
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>datarl report: '
        f"{_e(run.run_dir.name)}</title><style>{CSS}</style></head><body>\n{_header(run)}\n{sections}\n"
        "</body></html>\n"
    )


def write_report(run_dir: str | Path, out_html: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` (default: in ``run_dir``) and the main figure next to it as ``.png``.

    Raises :class:`~datarl.report.load.ReportError` if ``run_dir`` does not exist; anything missing inside it
    becomes a message in the page.
    """
    run = load_run(run_dir)
    html_path = Path(out_html) if out_html is not None else run.run_dir / "report.html"
    png_path = html_path.with_suffix(".png")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(str(html_path), render_html(run).encode("utf-8"))
    write_bytes(str(png_path), _main_figure(run))
    return html_path, png_path
