"""The run report: ``write_report(run_dir)`` -> (report.html, report.png); see :mod:`datarl.report.html`."""

from datarl.report.html import SECTIONS, render_html, write_report
from datarl.report.load import ReportError, RunData, load_run

__all__ = ["ReportError", "RunData", "SECTIONS", "load_run", "render_html", "write_report"]
