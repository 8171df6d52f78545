"""docs/ppo.md links each PPO detail to the line that implements it: every linked line must still hold what
its link names (a function or class defined there, a name assigned or called there, or a ``# N.`` step)."""

from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINK = re.compile(r"\[([^\]]+)\]\(\.\./(src/datarl/[\w/]+\.py)#L(\d+)\)")


def links():
    with open(os.path.join(ROOT, "docs", "ppo.md"), encoding="utf-8") as fh:
        return LINK.findall(fh.read())


def test_every_line_link_of_docs_ppo_points_at_what_it_names():
    found = links()
    assert len(found) >= 30 and any(path.endswith("rl/trainer.py") for _, path, _ in found)
    wrong = []
    for text, path, line in found:
        with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        target = lines[int(line) - 1] if int(line) <= len(lines) else ""
        text = text.strip("`")
        step = re.fullmatch(r"step (\d+)", text)
        if step:
            ok = f"# {step.group(1)}. " in target
        else:
            name = re.escape(text.split(".")[-1])
            ok = re.search(rf"\b(def|class) {name}\b|\b{name} = |\.{name}\(", target) is not None
        if not ok:
            wrong.append(f"{text} -> {path}:{line}: {target.strip()!r}")
    assert not wrong, "docs/ppo.md links to lines that moved; update them:\n" + "\n".join(wrong)
