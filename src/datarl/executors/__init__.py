"""Executors: where work runs (local process pool now; Ray later)."""

from datarl.executors.local import Outcome, map_ordered

__all__ = ["Outcome", "map_ordered"]
