"""``datarl study``: ablations of the pipeline with seeds, shared stages and paired statistics.

``spec`` (the study file) <- ``plan`` (run matrix, shared stages, estimate) <- ``execute`` (runs, locally or
on Ray) and ``results`` (statistics, ``results.json``/``.md``) <- ``html`` (``study.html``) <- ``runner``.
"""

from datarl.study.runner import dry_run, run_study
from datarl.study.spec import StudyError, StudySpec, load_study

__all__ = ["StudyError", "StudySpec", "dry_run", "load_study", "run_study"]
