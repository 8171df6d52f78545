"""docs/ppo.md links each PPO detail to the line that implements it: every linked line must still hold what
its link names (a function or class defined there, a name assigned or called there, or a ``# N.`` step).

After an edit that moves lines, ``python tests/rl/test_ppo_doc.py --fix`` points every link at the nearest
line that holds what it names (and says which it could not place)."""

from __future__ import annotations

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "ppo.md")
LINK = re.compile(r"\[([^\]]+)\]\(\.\./(src/datarl/[\w/]+\.py)#L(\d+)\)")


def links() -> list[tuple[str, str, str]]:
    with open(DOC, encoding="utf-8") as fh:
        return LINK.findall(fh.read())


def holds(text: str, line: str) -> bool:
    """Whether ``line`` holds what the link text ``text`` names."""
    text = text.strip("`")
    step = re.fullmatch(r"step (\d+)", text)
    if step:
        return f"# {step.group(1)}. " in line
    name = re.escape(text.split(".")[-1])
    return re.search(rf"\b(def|class) {name}\b|\b{name} = |\.{name}\(", line) is not None


def _lines(path: str) -> list[str]:
    with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
        return fh.read().splitlines()


def nearest(text: str, path: str, line: int) -> int | None:
    """The line nearest to ``line`` (1-based) that holds what ``text`` names, or None."""
    lines = _lines(path)
    found = [i + 1 for i, target in enumerate(lines) if holds(text, target)]
    return min(found, key=lambda i: abs(i - line)) if found else None


def test_every_line_link_of_docs_ppo_points_at_what_it_names() -> None:
    found = links()
    assert len(found) >= 30 and any(path.endswith("rl/trainer.py") for _, path, _ in found)
    wrong = []
    for text, path, line in found:
        lines = _lines(path)
        target = lines[int(line) - 1] if int(line) <= len(lines) else ""
        if not holds(text, target):
            wrong.append(
                f"{text} -> {path}:{line}: {target.strip()!r} (nearest match: {nearest(text, path, int(line))})"
            )
    assert not wrong, (
        "docs/ppo.md links to lines that moved; `python tests/rl/test_ppo_doc.py --fix` updates "
        "them:\n" + "\n".join(wrong)
    )


def fix() -> int:
    with open(DOC, encoding="utf-8") as fh:
        doc = fh.read()
    lost = []

    def relink(m: re.Match[str]) -> str:
        text, path, line = m.group(1), m.group(2), int(m.group(3))
        if int(line) <= len(_lines(path)) and holds(text, _lines(path)[line - 1]):
            return m.group(0)
        new = nearest(text, path, line)
        if new is None:
            lost.append(f"{text} ({path})")
            return m.group(0)
        return f"[{text}](../{path}#L{new})"

    with open(DOC, "w", encoding="utf-8") as fh:
        fh.write(LINK.sub(relink, doc))
    for item in lost:
        print(f"not found, fix by hand: {item}")
    return 1 if lost else 0


if __name__ == "__main__" and sys.argv[1:] == ["--fix"]:
    sys.exit(fix())
