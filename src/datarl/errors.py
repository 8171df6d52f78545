"""The one base class of every error a user can cause, and the two general ones.

A :class:`UserError` is a mistake in what the user gave (a missing file, a bad config value, a model
directory of the wrong kind, an unreachable judge endpoint): its message names the file, line or field
and says how to fix it. The CLI catches ``UserError`` once and prints it in one line with exit status 2;
anything else is a bug and keeps its traceback. Every module's own error class for user mistakes
derives from it (``ConfigError``, ``RouterConfigError``, ``SelectError``, ``PolicyLoadError``...), and
keeps its older base (``ValueError``) where callers catch that.
"""

from __future__ import annotations

__all__ = ["UserError", "InputError", "ConfigError"]


class UserError(Exception):
    """Something the user gave cannot be used; the message says what and how to fix it."""


class InputError(UserError):
    """Bad user input: a file missing or unreadable, bad lines under ``--strict``, an output path in the way."""


class ConfigError(UserError, ValueError):
    """A config file or section that cannot be used; the message names the file and the problem."""
