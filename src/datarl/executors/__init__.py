"""Executors: where work runs (local process pools; Ray in ``ray_engine``)."""

from datarl.executors.local import Outcome, WorkerPool, map_ordered

__all__ = ["Outcome", "WorkerPool", "map_ordered"]
