"""``general`` records: open-ended short writing with no ground truth.

Three kinds, one domain each: ``general.describe`` ("Describe a dog."),
``general.compare`` ("Compare the ocean and a forest.") and ``general.advise``
("Give advice about winter."). Gold is the hidden rubric (:mod:`datarl.synth.rubric`);
the reference is built from the topic's lexicon and scores at least
``rubric.REFERENCE_THRESHOLD``. Difficulty: 1 describe, 2 advise, 3 compare.
"""

from __future__ import annotations

import random
from typing import Any

from datarl.synth.rubric import TOPICS

__all__ = ["generate", "response_for", "KINDS"]

KINDS = {1: "describe", 2: "advise", 3: "compare"}

_PROMPTS = {
    "describe": ("Describe {t}.", "Write a few sentences about {t}.", "Tell me about {t}."),
    "advise": ("Give advice about {t}.", "What should I know about {t}?", "Share some tips about {t}."),
    "compare": ("Compare {t} and {u}.", "How is {t} different from {u}?", "Contrast {t} with {u}."),
}

# {T} topic phrase (capitalised at a sentence start), {n} nouns, {a} adjectives.
_DESCRIBE = (
    "{T} is {a0} and {a1}.",
    "It has {n0} and {n1}.",
    "You can find {n2} there.",
    "Most people remember the {n3}.",
    "I also like the {a2} {n4}.",
    "There are {n5} everywhere.",
)
_ADVISE = (
    "Here is my advice about {t}.",
    "Check the {n0} and the {n1} first.",
    "Bring {n2} if you can.",
    "Look for {a0} {n3}.",
    "Do not forget the {n4}.",
    "Enjoy the {a1} {n5}.",
)
# Optional second sentences: more distinct prompts, same gold rubric.
_MODIFIERS = (
    "",
    " Keep it short.",
    " Use simple words.",
    " Write for a child.",
    " Be specific.",
    " Write a few sentences.",
    " Be clear.",
    " Write for a friend.",
)
_COMPARE_ONE = ("{T} is {a0} and {a1}.", "It has {n0} and {n1}.", "It is known for {n2}.")
_COMPARE_END = ("Both are worth a visit.", "Each one has its own charm.", "I enjoy them both.")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fill(template: str, topic: str, nouns: list[str], adjs: list[str]) -> str:
    slots: dict[str, str] = {"T": _cap(topic), "t": topic}
    slots.update({f"n{i}": w for i, w in enumerate(nouns)})
    slots.update({f"a{i}": w for i, w in enumerate(adjs)})
    return template.format(**slots)


def _pick(
    rng: random.Random, topic: str, n_nouns: int, n_adjs: int, avoid: frozenset[str] = frozenset()
) -> tuple[list[str], list[str]]:
    nouns, adjs = TOPICS[topic]
    return (
        rng.sample([w for w in nouns if w not in avoid], n_nouns),
        rng.sample([w for w in adjs if w not in avoid], n_adjs),
    )


def response_for(kind: str, topics: list[str], rng: random.Random) -> str:
    """A good answer of ``kind`` about ``topics`` (one topic, two for ``compare``)."""
    if kind == "compare":
        t, u = topics[0], topics[1]
        n_t, a_t = _pick(rng, t, 3, 2)
        n_u, a_u = _pick(rng, u, 3, 2, avoid=frozenset(n_t + a_t))
        parts = [_fill(s, t, n_t, a_t) for s in _COMPARE_ONE]
        second = [_fill(s, u, n_u, a_u) for s in _COMPARE_ONE]
        second[2] = second[2].replace("It is known for", "It offers")
        second[1] = second[1].replace("It has", "It also has")
        return " ".join(parts + second + [rng.choice(_COMPARE_END)])
    topic = topics[0]
    nouns, adjs = _pick(rng, topic, 6, 3)
    bank = _DESCRIBE if kind == "describe" else _ADVISE
    keep = sorted(rng.sample(range(1, len(bank)), 4))
    return " ".join(_fill(bank[i], topic, nouns, adjs) for i in [0] + keep)


def generate(rng: random.Random, difficulty: int) -> dict[str, Any]:
    """One ``general`` record (no ``id``) of ``difficulty`` 1..3."""
    kind = KINDS[difficulty]
    names = list(TOPICS)
    topics = rng.sample(names, 2 if kind == "compare" else 1)
    template = rng.choice(_PROMPTS[kind])
    prompt = template.format(t=topics[0], u=topics[-1])
    prompt = _cap(prompt) + rng.choice(_MODIFIERS)
    return {
        "task": "general",
        "domain": f"general.{kind}",
        "difficulty": difficulty,
        "prompt": prompt,
        "reference": response_for(kind, topics, rng),
    }
