"""The task names a record's ``task`` takes: the router's keys, and what every layout maps its rows to."""

from __future__ import annotations

__all__ = ["TASKS"]

TASKS = ("math", "code", "ifeval", "general")
