"""Config files: YAML or JSON, read into plain dicts; errors name the file and what to fix."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from datarl.errors import ConfigError

__all__ = ["ConfigError", "build_section", "did_you_mean", "load_config", "unknown_keys"]

_Section = TypeVar("_Section")


def unknown_keys(cls: type, keys: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(unknown, known)``: the ``keys`` that are not fields of the dataclass ``cls``, and its field
    names, both sorted (for an error that names the bad keys and the allowed ones)."""
    known = sorted(f.name for f in dataclasses.fields(cls))
    return sorted(set(keys) - set(known)), known


def did_you_mean(unknown: Iterable[str], known: Iterable[str]) -> str:
    """``" (did you mean 'steps' for 'stpes'?)"`` for the unknown names close to a known one, else ``""``."""
    import difflib

    known = list(known)
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if close:
            hints.append(f"{close[0]!r} for {name!r}")
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


def load_config(path: str | None) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON config file; ``None`` gives ``{}``."""
    if path is None:
        return {}
    if not os.path.exists(path):
        raise ConfigError(f"{path}: config file not found")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml and json raise different types; both are user errors here
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def build_section(cls: type[_Section], data: object, where: str) -> _Section:
    """``cls(**data)`` for a config section (a dataclass): None gives the defaults; unknown keys (with the
    nearest names) and bad values are a ``ConfigError`` naming ``where``."""
    if data is None:
        return cls()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: must be a mapping of options, got {type(data).__name__}")
    unknown, names = unknown_keys(cls, data)
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {unknown}{did_you_mean(unknown, names)}; allowed: {', '.join(names)}"
        )
    try:
        return cls(**dict(data))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
