"""Training monitors (pure, no I/O): response diversity and the reward-hacking alarm."""

from datarl.metrics.diversity import (
    distinct_n,
    diversity_summary,
    edit_distance,
    final_answer,
    max_pairwise_edit,
    normalised_edit_distance,
)
from datarl.metrics.hacking import HackingConfig, HackingMonitor

__all__ = [
    "distinct_n",
    "diversity_summary",
    "edit_distance",
    "final_answer",
    "max_pairwise_edit",
    "normalised_edit_distance",
    "HackingConfig",
    "HackingMonitor",
]
