"""``study.html``: one self-contained page (inline CSS and PNGs) for a study: learning curves per arm with a
band over seeds, the hacking gap per arm, the comparison table with intervals, the run matrix with times."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from datarl.report import plots
from datarl.report.html import CSS
from datarl.study.results import results_markdown

__all__ = ["study_html"]


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _curves_figure(curves: Mapping[str, Mapping[str, Any]], arms: list[str], ylabel: str, title: str) -> str:
    tasks = sorted({t for arm in curves.values() for t in arm})
    if not tasks:
        return f'<p class="msg">{_e(title)}: no evaluations yet.</p>'
    cols = min(2, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plots.new_figure(rows, cols, 6.0 * cols, 3.2 * rows)
    for ax, task in zip(axes, tasks):
        for arm in arms:
            c = curves.get(arm, {}).get(task)
            if not c or not c["steps"]:
                continue
            colour = plots.colour(arm, arms)
            ax.plot(c["steps"], c["mean"], marker="o", color=colour, label=f"{arm} (mean)")
            ax.fill_between(c["steps"], c["min"], c["max"], color=colour, alpha=0.2, label=f"{arm} (seed range)")
        ax.set_title(f"{title}: {task}")
        ax.set_xlabel("PPO step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(tasks) :]:
        ax.set_visible(False)
    return f'<img alt="{_e(title)}" src="{plots.data_uri(fig)}">'


def _verdict_class(cell: str) -> str:
    return ' class="better"' if cell.startswith("better") else ' class="worse"' if cell.startswith("worse") else ""


def _tables(markdown: str) -> str:
    """The Markdown of ``results.md`` as HTML (one source for both outputs)."""
    out: list[str] = []
    rows: list[list[str]] = []

    def flush() -> None:
        if rows:
            head, body = rows[0], rows[2:]
            out.append("<table><tr>" + "".join(f"<th>{_e(c)}</th>" for c in head) + "</tr>")
            for r in body:
                out.append("<tr>" + "".join(f"<td{_verdict_class(c)}>{_e(c)}</td>" for c in r) + "</tr>")
            out.append("</table>")
            rows.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush()
        if line.startswith("## "):
            out.append(f"<h2>{_e(line[3:])}</h2>")
        elif line.strip() and not line.startswith("# "):
            out.append(f"<p>{_e(line)}</p>")
    flush()
    return "\n".join(out)


def study_html(results: Mapping[str, Any], timings: Mapping[str, Any]) -> str:
    arms = list(results["arms"])
    title = f"Study {results['study']}"
    body = [
        f"<header><h1>{_e(title)}</h1><p>arms {_e(', '.join(arms))}; seeds {_e(results['seeds'])}; "
        f"baseline {_e(results['baseline'])}</p></header>",
        '<section id="curves"><h2>Gold over training (mean over seeds; band: the seeds\' range)</h2>',
        _curves_figure(results["curves"], arms, "gold", "gold"),
        "</section>",
        '<section id="hacking"><h2>Hacking gap (training reward - gold) per arm</h2>',
        _curves_figure(results["hacking_gap"], arms, "proxy - gold", "hacking gap"),
        "</section>",
        '<section id="tables">',
        _tables(results_markdown(results, timings)),
        "</section>",
    ]
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
