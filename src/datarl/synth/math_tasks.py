"""``math`` records: arithmetic word problems with 1 to 4 operations.

A problem is a short story about one quantity that changes step by step ("Ana has 12
apples. She buys 5 more. She gives away 3. How many apples does Ana have now?").
Difficulty sets the number of operations and the size of the numbers:

=========== ============ ================= ==============
difficulty  operations   start / addends   factors
=========== ============ ================= ==============
1           1            2..9              2..3
2           2            10..99            2..9
3           3 or 4       20..999           2..12
=========== ============ ================= ==============

Every intermediate value is a positive integer (subtractions never go below 1,
divisions are exact). The reference is one line per step (``12 + 5 = 17``) and ends
with ``#### N``; ``ground_truth`` is ``N``. Domains: ``math.addsub`` (only + and -)
and ``math.muldiv`` (at least one * or /).
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["generate", "STEP_RE_TEXT"]

# How demos (and readers) find the steps of a reference: "a op b = c".
STEP_RE_TEXT = r"^(\d+) ([+\-*/]) (\d+) = (\d+)$"

_NAMES = (
    "Ana",
    "Ben",
    "Cara",
    "Dan",
    "Eva",
    "Finn",
    "Gia",
    "Hugo",
    "Ivy",
    "Jon",
    "Kai",
    "Lena",
    "Max",
    "Nora",
    "Omar",
    "Pia",
    "Raj",
    "Sara",
    "Tom",
    "Uma",
)
_ITEMS = (
    "apples",
    "books",
    "coins",
    "stamps",
    "marbles",
    "pencils",
    "cards",
    "shells",
    "stickers",
    "eggs",
    "cookies",
    "beads",
)
_ADD = ("{P} buys {k} more.", "{P} finds {k} more.", "A friend gives {O} {k} more.", "{P} gets {k} more.")
_SUB = ("{P} gives away {k}.", "{P} loses {k}.", "{P} sells {k}.", "{P} uses {k}.")
_MUL = ("{P} now has {k} times as many.", "The {x} grow to {k} times as many.")
_DIV = ("{P} keeps one of {k} equal piles.", "{P} keeps one in every {k} {x}.")
_RANGES = {1: ((2, 9), (2, 3), (1, 1)), 2: ((10, 99), (2, 9), (2, 2)), 3: ((20, 999), (2, 12), (3, 4))}
_MAX_VALUE = 100_000


def _step(rng: random.Random, value: int, difficulty: int) -> tuple[str, int, int]:
    """Choose an operation valid for ``value``: ``(op, operand, result)``."""
    (lo, hi), (f_lo, f_hi), _ = _RANGES[difficulty]
    ops = ["+", "-", "*", "/"]
    rng.shuffle(ops)
    for op in ops:
        if op == "+":
            k = rng.randint(max(1, lo // 2), hi)
            return op, k, value + k
        if op == "-" and value > 1:
            k = rng.randint(1, value - 1)
            return op, k, value - k
        if op == "*" and value * f_hi <= _MAX_VALUE:
            k = rng.randint(f_lo, f_hi)
            return op, k, value * k
        if op == "/":
            divisors = [d for d in range(f_lo, f_hi + 1) if value % d == 0 and value // d >= 1]
            if divisors:
                k = rng.choice(divisors)
                return op, k, value // k
    k = rng.randint(1, hi)
    return "+", k, value + k


def generate(rng: random.Random, difficulty: int) -> dict[str, Any]:
    """One ``math`` record (no ``id``) of ``difficulty`` 1..3."""
    (lo, hi), _, (n_lo, n_hi) = _RANGES[difficulty]
    person, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    pronoun_obj = person  # names keep the text free of pronoun agreement
    value = rng.randint(lo, hi)
    story = [f"{person} has {value} {item}."]
    steps: list[str] = []
    ops_used: set[str] = set()
    for _ in range(rng.randint(n_lo, n_hi)):
        op, k, result = _step(rng, value, difficulty)
        bank = {"+": _ADD, "-": _SUB, "*": _MUL, "/": _DIV}[op]
        story.append(rng.choice(bank).format(P=person, O=pronoun_obj, k=k, x=item))
        steps.append(f"{value} {op} {k} = {result}")
        ops_used.add(op)
        value = result
    story.append(f"How many {item} does {person} have now?")
    domain = "math.muldiv" if ops_used & {"*", "/"} else "math.addsub"
    return {
        "task": "math",
        "domain": domain,
        "difficulty": difficulty,
        "prompt": " ".join(story),
        "ground_truth": str(value),
        "reference": "\n".join(steps + [f"#### {value}"]),
    }


def arithmetic_drill(rng: random.Random, lines: int = 8) -> str:
    """Pretraining text: ``lines`` worked operations (``a op b = c``) drawn like the problems' steps.

    A model of a few million parameters cannot pick up carrying from a few hundred word
    problems; a plain-text corpus of equations, the way pretraining corpora contain
    arithmetic, gives it that skill without showing it any eval problem.
    """
    out = []
    for _ in range(lines):
        difficulty = rng.choice((1, 1, 2, 2, 3))
        (lo, hi), _, _ = _RANGES[difficulty]
        value = rng.randint(lo, hi)
        op, k, result = _step(rng, value, difficulty)
        out.append(f"{value} {op} {k} = {result}")
    return "\n".join(out)


def practice_text(
    rng: random.Random,
    banned: set[str] | frozenset[str] = frozenset(),
    weights: tuple[float, float, float] = (0.75, 0.25, 0.0),
) -> str:
    """Pretraining text: one fresh word problem and its worked solution (``story\\nsteps\\n#### N``).

    The skill the suite's problems need beyond the arithmetic of ``arithmetic_drill`` is
    reading the numbers out of the story in order; a corpus of worked problems, the way
    pretraining corpora contain worked exercises, teaches it. ``banned`` holds prompts
    that must never be shown (the eval split's); a problem whose prompt is in it is redrawn.
    """
    while True:
        difficulty = rng.choices((1, 2, 3), weights=weights)[0]
        record = generate(rng, difficulty)
        if record["prompt"] not in banned:
            return record["prompt"] + "\n" + record["reference"]
