"""Reward sources. Each is a pure function ``(record, response) -> RewardResult`` that never raises."""

from datarl.rewards.base import RewardResult

__all__ = ["RewardResult"]
