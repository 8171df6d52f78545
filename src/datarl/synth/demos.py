"""Imperfect demonstrations: what the tiny SFT policy imitates.

``demonstration(record, rng, quality)`` returns the record's reference with
probability ``quality`` and otherwise a plausibly wrong answer made from the
reference (``wrong_response``), so the SFT model is better than chance yet leaves
headroom for RL on every task:

- math: an arithmetic slip in one step, carried through the later steps;
- code: one small mutation of the reference (comparison or arithmetic operator,
  an off-by-one constant, min/max, upper/lower...), kept only if it fails the
  record's tests (checked in-process: the code is ours, not model output);
- ifeval: one instruction violated (a capital letter, a comma, a missing keyword,
  one bullet too many...), kept only if ``rtv.ifeval`` scores it 0;
- general: an off-topic, repetitive or too-short answer, kept only if the gold
  rubric scores it below ``rubric.PASS_THRESHOLD``.

Every wrong answer fails its gold check (the empty string is the last resort).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from typing import Any

from datarl.records import as_dict
from datarl.rewards.ifeval import score_ifeval
from datarl.synth import general_tasks
from datarl.synth.math_tasks import STEP_RE_TEXT
from datarl.synth.rubric import PASS_THRESHOLD, TOPICS, gold_score, topics_in

__all__ = ["demonstration", "wrong_response", "sft_examples"]

_STEP = re.compile(STEP_RE_TEXT)
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_CODE_MUTATIONS: tuple[tuple[str, Any], ...] = (
    (r"<=", ">"),
    (r">=", "<"),
    (r"<(?!=)", "<="),
    (r">(?!=)", ">="),
    (r"==", "!="),
    (r"!=", "=="),
    (r"(?<=\s)\+(?=\s)", "-"),
    (r"(?<=\s)-(?=\s)", "+"),
    (r"(?<=\s)\*(?=\s)", "+"),
    (r"%", "//"),
    (r"(?<![\w.])(\d+)(?![\w.])", lambda m: str(int(m.group(1)) + 1)),
    (r"\bmax\(", "min("),
    (r"\bmin\(", "max("),
    (r"\.upper\(\)", ".lower()"),
    (r"\.lower\(\)", ".upper()"),
    (r"\[::-1\]", ""),
    (r'"(\w\w+)"', lambda m: f'"{m.group(1)[:-1]}"'),
    (r"\bTrue\b", "False"),
    (r"\band\b", "or"),
    (r"<(?!=)", ">"),
    (r">(?!=)", "<"),
    (r'"([a-y])"', lambda m: f'"{chr(ord(m.group(1)) + 1)}"'),
)
_RETURN_PLUS_ONE = r"\1 + 1"
_CODE_MUTATIONS += ((r"(?<=return )(\S.*)", _RETURN_PLUS_ONE),)
_FENCED = re.compile(r"```python\n(.*?)```", re.S)
_WORDS = re.compile(r"\w+")


def _wrong_math(record: Mapping[str, Any], rng: random.Random) -> str:
    steps = [m.groups() for m in map(_STEP.match, str(record.get("reference", "")).split("\n")) if m]
    if not steps:
        truth = int(str(record.get("ground_truth", "0")) or 0) if str(record.get("ground_truth", "")).isdigit() else 0
        return f"#### {truth + rng.choice((1, 2, -1, 10))}"
    later_div = [i for i, s in enumerate(steps) if s[1] == "/"]
    slip_at = rng.randrange(len(steps))
    if any(i > slip_at for i in later_div):
        slip_at = len(steps) - 1  # a slip before an exact division would not divide evenly
    lines: list[str] = []
    value = int(steps[0][0])
    for i, (_, op, k, result) in enumerate(steps):
        if i > slip_at:
            result = str(_OPS[op](value, int(k)))
        if i == slip_at:
            delta = rng.choice((1, 2, 10, -1, -2, -10))
            result = str(int(result) + delta if int(result) + delta >= 0 else int(result) + abs(delta))
        lines.append(f"{value} {op} {k} = {result}")
        value = int(result)
    return "\n".join(lines + [f"#### {value}"])


def _outcome(code: str, tests_code: str) -> str:
    """``pass``, ``wrong`` (an assert failed) or ``error`` (it does not compile or run)."""
    ns: dict[str, Any] = {}
    try:
        exec(compile(code, "<mutant>", "exec"), ns)
        exec(compile(tests_code, "<synth-tests>", "exec"), ns)
    except AssertionError:
        return "wrong"
    except Exception:
        return "error"
    return "pass"


def _wrong_code(record: Mapping[str, Any], rng: random.Random) -> str:
    reference = str(record.get("reference", ""))
    match = _FENCED.search(reference)
    code = match.group(1) if match else reference
    tests = record.get("tests") or {}
    tests_code = str(tests.get("code", "")) if isinstance(tests, Mapping) else ""
    head, _, body = code.partition("\n")
    candidates = [(repl, m) for pattern, repl in _CODE_MUTATIONS for m in re.finditer(pattern, body)]
    rng.shuffle(candidates)
    # Prefer a mutant that runs and returns a wrong value (a plausible bug) over one
    # that crashes; the generic "return ... + 1" comes last.
    ranked = sorted(candidates, key=lambda c: c[0] == _RETURN_PLUS_ONE)
    fallback: str | None = None
    for repl, m in ranked[:60]:
        piece = repl(m) if callable(repl) else m.expand(repl)
        mutant = f"{head}\n{body[: m.start()]}{piece}{body[m.end() :]}"
        outcome = _outcome(mutant, tests_code)
        if outcome == "wrong":
            return f"```python\n{mutant}```"
        if outcome == "error" and fallback is None:
            fallback = mutant
    if fallback is not None:
        return f"```python\n{fallback}```"
    return f"```python\n{head}\n    return None\n```"


def _recase(sentence: str, like: str) -> str:
    letters = like.strip('"')
    return sentence.upper() if letters.isupper() else sentence.lower() if letters.islower() else sentence


def _violate(iid: str, args: Mapping[str, Any], text: str, rng: random.Random) -> str:
    if iid == "change_case:english_lowercase":
        return re.sub(r"[a-z]", lambda m: m.group().upper(), text, count=1)
    if iid == "change_case:english_capital":
        return re.sub(r"[A-Z]+", lambda m: m.group().lower(), text, count=1)
    if iid == "length_constraints:number_words":
        n = int(args.get("num_words", 0))
        if args.get("relation") == "less than":
            extra = _recase("I like it a lot.", text)
            while len(_WORDS.findall(text)) < n:
                text = text.rstrip('"') + " " + extra + ('"' if text.endswith('"') else "")
            return text
        return " ".join(text.split(" ")[: max(1, n // 2)])
    if iid == "keywords:existence":
        for word in args.get("keywords", []):
            text = re.sub(rf"\b{re.escape(word)}\b", _recase("things", text), text, flags=re.I)
        return text
    if iid == "keywords:forbidden_words":
        words = list(args.get("forbidden_words", [])) or ["it"]
        sentence = _recase(f"I like the {rng.choice(words)}.", text)
        cut = text.find(". ")
        return text[: cut + 1] + " " + sentence + text[cut + 1 :] if cut >= 0 else sentence + " " + text
    if iid == "startend:end_checker":
        phrase = str(args.get("end_phrase", ""))
        cut = text.lower().rfind(phrase.lower())
        return (text[:cut].rstrip() + text[cut + len(phrase) :]).strip() if cut >= 0 else text
    if iid == "punctuation:no_comma":
        return text.replace(" and ", ", and ", 1) if " and " in text else text.replace(" ", ", ", 1)
    if iid == "detectable_format:number_bullet_lists":
        lines = text.split("\n")
        bullets = [i for i, line in enumerate(lines) if line.startswith("* ")]
        if bullets and rng.random() < 0.5:
            del lines[bullets[-1]]
        else:
            lines.insert((bullets[-1] + 1) if bullets else len(lines), _recase("* I like it too.", text))
        return "\n".join(lines)
    if iid == "startend:quotation":
        return text.strip().strip('"')
    return text


def _wrong_ifeval(record: Mapping[str, Any], rng: random.Random) -> str:
    reference = str(record.get("reference", ""))
    ids = list(record.get("instruction_id_list") or [])
    kwargs = list(record.get("kwargs") or [{} for _ in ids])
    order = list(range(len(ids)))
    rng.shuffle(order)
    for i in order:
        args = kwargs[i] if i < len(kwargs) and isinstance(kwargs[i], Mapping) else {}
        candidate = _violate(ids[i], args, reference, rng)
        if candidate.strip() and score_ifeval(record, candidate).score == 0.0:
            return candidate
    return ""


def _wrong_general(record: Mapping[str, Any], rng: random.Random) -> str:
    reference = str(record.get("reference", ""))
    prompt = record.get("prompt")
    topics = topics_in(prompt if isinstance(prompt, str) else str(prompt))
    kind = str(record.get("domain", "general.describe")).rpartition(".")[2]
    kind = kind if kind in general_tasks.KINDS.values() else "describe"
    sentences = re.findall(r"[^.!?]+[.!?]", reference) or [reference]
    modes = ["off_topic", "repetitive", "short"]
    rng.shuffle(modes)
    for mode in modes:
        if mode == "off_topic":
            others = [t for t in TOPICS if t not in topics]
            count = 2 if kind == "compare" else 1
            candidate = general_tasks.response_for(kind, rng.sample(others, count), rng)
        elif mode == "repetitive":
            first = sentences[0].strip()
            candidate = " ".join([first] * rng.randint(3, 5) + [s.strip() for s in sentences[1:2]])
        else:
            candidate = sentences[0].strip()
        if gold_score(record, candidate) < PASS_THRESHOLD:
            return candidate
    return ""


_WRONG = {"math": _wrong_math, "code": _wrong_code, "ifeval": _wrong_ifeval, "general": _wrong_general}


def wrong_response(record: Mapping[str, Any], rng: random.Random) -> str:
    """A plausibly wrong response to a synth ``record``; it fails the record's gold check."""
    rec = as_dict(record)
    maker = _WRONG.get(str(rec.get("task")))
    return maker(rec, rng) if maker else ""


def demonstration(record: Mapping[str, Any], rng: random.Random, quality: float) -> str:
    """The reference with probability ``quality`` (in [0, 1]), else :func:`wrong_response`."""
    if not 0.0 <= quality <= 1.0:
        raise ValueError(f"quality must be in [0, 1], got {quality!r}")
    rec = as_dict(record)
    if rng.random() < quality:
        return str(rec.get("reference", ""))
    return wrong_response(rec, rng)


def sft_examples(records: Iterable[Mapping[str, Any]], rng: random.Random, quality: float) -> list[dict[str, Any]]:
    """One SFT example per record: ``{id, task, domain, prompt, response, is_reference}``."""
    out: list[dict[str, Any]] = []
    for record in records:
        rec = as_dict(record)
        response = demonstration(rec, rng, quality)
        out.append(
            {
                "id": rec.get("id"),
                "task": rec.get("task"),
                "domain": rec.get("domain"),
                "prompt": rec.get("prompt"),
                "response": response,
                "is_reference": response == rec.get("reference"),
            }
        )
    return out
