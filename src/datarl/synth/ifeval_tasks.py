"""``ifeval`` records: short notes on a topic under 1 to 3 IFEval instructions.

Difficulty is the number of instructions. They are drawn from ids that
``rtv.ifeval`` checks and a tiny model can learn (``CONSTRAINTS``), skipping
incompatible pairs (lowercase with capitals, quotation with bullet lists). The
record carries IFEval's own ``instruction_id_list``/``kwargs``; the reference is
built to satisfy them and is checked with ``rtv.ifeval`` before it is kept (a draw
that fails, e.g. one langdetect does not read as English, is redrawn).
"""

from __future__ import annotations

import random
import re
from typing import Any

from datarl.rewards.ifeval import score_ifeval
from datarl.synth.rubric import TOPICS

__all__ = ["generate", "CONSTRAINTS", "END_PHRASES"]

CONSTRAINTS = (
    "change_case:english_lowercase",
    "change_case:english_capital",
    "length_constraints:number_words",
    "keywords:existence",
    "keywords:forbidden_words",
    "startend:end_checker",
    "punctuation:no_comma",
    "detectable_format:number_bullet_lists",
    "startend:quotation",
)
_INCOMPATIBLE = {
    frozenset({"change_case:english_lowercase", "change_case:english_capital"}),
    frozenset({"startend:quotation", "detectable_format:number_bullet_lists"}),
}
END_PHRASES = ("That is all.", "Thank you.", "The end.", "See you soon.", "Have a nice day.")
_TASKS = ("Write a short note about {t}.", "Write a short message about {t}.", "Write a tiny story about {t}.")
# (with commas, without commas); {T} topic, {n*} nouns, {a*} adjectives.
_OPENING = ("{T} is {a0}, {a1} and nice.", "{T} is {a0} and {a1}.")
_HAS = ("It has {n0}, {n1} and more.", "It has {n0} and {n1}.")
_MORE = (
    ("In the morning, I think about the {n2}.", "In the morning I think about the {n2}."),
    ("People enjoy the {a2} {n3}.", "People enjoy the {a2} {n3}."),
    ("Sometimes, I see the {n4}.", "Sometimes I see the {n4}."),
    ("I will always remember the {n5}.", "I will always remember the {n5}."),
    ("Yes, the {n6} matter too.", "The {n6} matter too."),
)
_WORD = re.compile(r"\w+")


def _compatible(chosen: list[str], candidate: str) -> bool:
    return all(frozenset({c, candidate}) not in _INCOMPATIBLE for c in chosen)


def _pick_constraints(rng: random.Random, count: int) -> list[str]:
    pool = list(CONSTRAINTS)
    rng.shuffle(pool)
    chosen: list[str] = []
    for iid in pool:
        if len(chosen) < count and _compatible(chosen, iid):
            chosen.append(iid)
    return chosen


def _draw(rng: random.Random, ids: list[str]) -> tuple[str, list[dict[str, Any]], str]:
    """Prompt, kwargs and reference for instructions ``ids`` (in order)."""
    topic = rng.choice(list(TOPICS))
    nouns, adjs = list(TOPICS[topic][0]), list(TOPICS[topic][1])
    rng.shuffle(nouns)
    rng.shuffle(adjs)
    plain = "punctuation:no_comma" in ids
    bullets = rng.randint(2, 4) if "detectable_format:number_bullet_lists" in ids else 0
    n_sent = bullets or rng.randint(2, 4)
    slots = {"T": topic[:1].upper() + topic[1:]}
    slots.update({f"n{i}": w for i, w in enumerate(nouns[:7])})
    slots.update({f"a{i}": w for i, w in enumerate(adjs[:3])})
    more = rng.sample(_MORE, n_sent - 2)
    sentences = [pair[1 if plain or rng.random() < 0.5 else 0].format(**slots) for pair in [_OPENING, _HAS] + more]
    text = "\n".join(f"* {s}" for s in sentences) if bullets else " ".join(sentences)
    used = set(_WORD.findall(text.lower()))
    end = rng.choice(END_PHRASES)
    if "startend:end_checker" in ids:
        text += ("\n" if bullets else " ") + end
    if "change_case:english_lowercase" in ids:
        text = text.lower()
    if "change_case:english_capital" in ids:
        text = text.upper()
    if "startend:quotation" in ids:
        text = f'"{text}"'

    kwargs: list[dict[str, Any]] = []
    asks: list[str] = []
    for iid in ids:
        if iid == "change_case:english_lowercase":
            kwargs.append({})
            asks.append("Use only lowercase letters.")
        elif iid == "change_case:english_capital":
            kwargs.append({})
            asks.append("Write everything in capital letters.")
        elif iid == "length_constraints:number_words":
            count = len(_WORD.findall(text))
            if rng.random() < 0.5:
                n = count + rng.randint(3, 10)
                kwargs.append({"num_words": n, "relation": "less than"})
                asks.append(f"Use fewer than {n} words.")
            else:
                n = max(5, count - rng.randint(0, 5))
                kwargs.append({"num_words": n, "relation": "at least"})
                asks.append(f"Use at least {n} words.")
        elif iid == "keywords:existence":
            words = nouns[: rng.randint(1, 2)]
            kwargs.append({"keywords": words})
            asks.append(f"Include the word{'s' if len(words) > 1 else ''} {' and '.join(words)}.")
        elif iid == "keywords:forbidden_words":
            unused = [w for w in nouns + adjs if w not in used]
            words = rng.sample(unused, min(2, len(unused)))
            kwargs.append({"forbidden_words": words})
            asks.append(f"Do not use the word{'s' if len(words) > 1 else ''} {' or '.join(words)}.")
        elif iid == "startend:end_checker":
            kwargs.append({"end_phrase": end})
            asks.append(f'End your response with the exact phrase "{end}"')
        elif iid == "punctuation:no_comma":
            kwargs.append({})
            asks.append("Do not use any commas.")
        elif iid == "detectable_format:number_bullet_lists":
            kwargs.append({"num_bullets": bullets})
            asks.append(f"Use exactly {bullets} bullet points that start with *.")
        elif iid == "startend:quotation":
            kwargs.append({})
            asks.append("Wrap your whole response in double quotes.")
    prompt = " ".join([rng.choice(_TASKS).format(t=topic)] + asks)
    return prompt, kwargs, text


def generate(rng: random.Random, difficulty: int) -> dict[str, Any]:
    """One ``ifeval`` record (no ``id``) with ``difficulty`` (1..3) instructions."""
    for _ in range(20):
        ids = _pick_constraints(rng, difficulty)
        prompt, kwargs, reference = _draw(rng, ids)
        record = {
            "task": "ifeval",
            "domain": "ifeval",
            "difficulty": difficulty,
            "prompt": prompt,
            "instruction_id_list": ids,
            "kwargs": kwargs,
            "reference": reference,
        }
        if score_ifeval(record, reference).score == 1.0:
            return record
    raise RuntimeError("ifeval generator: no valid reference in 20 draws (a bug in synth/ifeval_tasks.py)")
