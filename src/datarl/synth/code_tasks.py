"""``code`` records: small Python functions from 22 templates, checked by assert tests.

Each template has a few function names, random constants, an input generator and a
reference body. The expected outputs of the tests are computed by running the
reference in this process (it is our own code, never model output), so every
reference passes its tests by construction; the suite's tests also run them through
``rtv.code``. Domains: ``code.string``, ``code.list``, ``code.arith``, ``code.cond``.
Difficulty 1: one-line transformations; 2: filters, counts and simple branches;
3: loops with state, several branches.

Record shape: ``tests = {"type": "assert", "code": "assert f(...) == ...\\n...",
"entry_point": "f"}``; the reference is a fenced python block.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["generate", "from_template", "Template", "TEMPLATES", "run_tests_in_process", "N_TESTS"]

N_TESTS = 4
_WORDS = (
    "cat",
    "tree",
    "banana",
    "level",
    "moon",
    "apple",
    "river",
    "noon",
    "kayak",
    "sun",
    "bread",
    "stone",
    "radar",
    "lemon",
    "sea",
    "book",
)
Inputs = Callable[[random.Random], tuple[Any, ...]]
# Prompt openings and parameter renamings: more distinct prompts from the same templates.
_VERBS = ("Write", "Implement", "Define", "Create")
_RENAME = {
    "s": ("s", "text", "word"),
    "nums": ("nums", "values", "items", "xs"),
    "x": ("x", "num", "value"),
    "n": ("n", "num", "k"),
}


@dataclass(frozen=True)
class Template:
    """One family of functions: ``build(rng) -> (name, params, description, body, inputs)``."""

    key: str
    domain: str
    difficulty: int
    build: Callable[[random.Random], tuple[str, str, str, str, Inputs]]


def _word(rng: random.Random) -> str:
    return rng.choice(_WORDS)


def _phrase(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4)))


def _nums(rng: random.Random, lo: int = -9, hi: int = 20) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(1, 6))]


def _t(key: str, domain: str, difficulty: int) -> Callable[[Callable[..., Any]], Template]:
    def wrap(fn: Callable[[random.Random], tuple[str, str, str, str, Inputs]]) -> Template:
        return Template(key, domain, difficulty, fn)

    return wrap


@_t("repeat", "code.string", 1)
def _repeat(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    k = rng.randint(2, 4)
    return (
        rng.choice(("repeat_text", "echo_word", "times_str")),
        "s",
        f"returns the string s repeated {k} times",
        f"return s * {k}",
        lambda r: (_word(r),),
    )


@_t("suffix", "code.string", 1)
def _suffix(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    suf = rng.choice(("ing", "ly", "ed", "er", "s", "ful"))
    return (
        rng.choice(("add_ending", "with_suffix", "extend_word")),
        "s",
        f'returns s with "{suf}" added at the end',
        f'return s + "{suf}"',
        lambda r: (_word(r),),
    )


@_t("shout", "code.string", 1)
def _shout(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    up = rng.random() < 0.5
    return (
        rng.choice(("shout", "loud", "to_caps")) if up else rng.choice(("whisper", "quiet", "to_small")),
        "s",
        f"returns s in {'upper' if up else 'lower'} case",
        f"return s.{'upper' if up else 'lower'}()",
        (lambda r: (_phrase(r),)) if up else (lambda r: (_phrase(r).upper(),)),
    )


@_t("linear", "code.arith", 1)
def _linear(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    a, b = rng.randint(2, 9), rng.randint(1, 20)
    return (
        rng.choice(("scale", "line_value", "transform")),
        "x",
        f"returns {a} * x + {b}",
        f"return {a} * x + {b}",
        lambda r: (r.randint(-10, 20),),
    )


@_t("add_k", "code.list", 1)
def _add_k(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    k = rng.randint(1, 9)
    return (
        rng.choice(("add_to_all", "shift_list", "bump")),
        "nums",
        f"returns a new list with {k} added to each element of nums",
        f"return [x + {k} for x in nums]",
        lambda r: (_nums(r),),
    )


@_t("max3", "code.cond", 1)
def _max3(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    body = "if a >= b and a >= c:\n    return a\nif b >= c:\n    return b\nreturn c"
    return (
        rng.choice(("largest", "max_of_three", "biggest")),
        "a, b, c",
        "returns the largest of a, b and c without using max",
        body,
        lambda r: tuple(r.randint(-20, 50) for _ in range(3)),
    )


@_t("count_char", "code.string", 2)
def _count_char(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    c = rng.choice("aeonrt")
    return (
        rng.choice(("count_letter", "letter_count", "how_many")),
        "s",
        f'returns how many times the letter "{c}" appears in s',
        f'return s.count("{c}")',
        lambda r: (_phrase(r),),
    )


@_t("vowels", "code.string", 2)
def _vowels(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    body = 'count = 0\nfor ch in s:\n    if ch in "aeiou":\n        count += 1\nreturn count'
    return (
        rng.choice(("count_vowels", "vowel_count", "num_vowels")),
        "s",
        "returns the number of vowels in the lowercase string s",
        body,
        lambda r: (_phrase(r),),
    )


@_t("palindrome", "code.string", 2)
def _palindrome(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    return (
        rng.choice(("is_palindrome", "reads_same", "mirror_word")),
        "s",
        "returns True if s reads the same backwards, else False",
        "return s == s[::-1]",
        lambda r: (_word(r),),
    )


@_t("sum_above", "code.list", 2)
def _sum_above(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    k = rng.randint(0, 10)
    return (
        rng.choice(("sum_above", "big_total", "sum_large")),
        "nums",
        f"returns the sum of the elements of nums that are greater than {k}",
        f"return sum(x for x in nums if x > {k})",
        lambda r: (_nums(r),),
    )


@_t("count_multiples", "code.list", 2)
def _count_multiples(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    k = rng.randint(2, 5)
    return (
        rng.choice(("count_multiples", "multiples_in", "count_divisible")),
        "nums",
        f"returns how many elements of nums are divisible by {k}",
        f"return sum(1 for x in nums if x % {k} == 0)",
        lambda r: (_nums(r, 0, 30),),
    )


@_t("keep_below", "code.list", 2)
def _keep_below(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    k = rng.randint(0, 12)
    return (
        rng.choice(("keep_small", "below", "filter_low")),
        "nums",
        f"returns the elements of nums that are less than {k}, in order",
        f"return [x for x in nums if x < {k}]",
        lambda r: (_nums(r),),
    )


@_t("spread", "code.list", 2)
def _spread(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    return (
        rng.choice(("spread", "value_range", "max_gap")),
        "nums",
        "returns the largest element of nums minus the smallest",
        "return max(nums) - min(nums)",
        lambda r: (_nums(r),),
    )


@_t("clamp", "code.cond", 2)
def _clamp(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    lo = rng.randint(-5, 5)
    hi = lo + rng.randint(3, 15)
    body = f"if x < {lo}:\n    return {lo}\nif x > {hi}:\n    return {hi}\nreturn x"
    return (
        rng.choice(("clamp", "limit", "bound")),
        "x",
        f"returns x limited to the range {lo} to {hi}",
        body,
        lambda r: (r.randint(lo - 10, hi + 10),),
    )


@_t("label", "code.cond", 2)
def _label(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    k = rng.randint(0, 20)
    low, high = rng.choice((("small", "big"), ("low", "high"), ("cold", "hot"), ("short", "tall")))
    return (
        rng.choice(("label", "classify", "size_word")),
        "x",
        f'returns "{low}" if x is less than {k} and "{high}" otherwise',
        f'return "{low}" if x < {k} else "{high}"',
        lambda r: (r.randint(k - 10, k + 10),),
    )


@_t("fizz", "code.cond", 3)
def _fizz(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    a, b = rng.sample((2, 3, 5, 7), 2)
    w1, w2 = rng.sample(("fizz", "buzz", "ping", "pong", "zip", "zap"), 2)
    body = (
        f'if n % {a} == 0 and n % {b} == 0:\n    return "{w1}{w2}"\nif n % {a} == 0:\n'
        f'    return "{w1}"\nif n % {b} == 0:\n    return "{w2}"\nreturn str(n)'
    )
    return (
        rng.choice(("fizz_word", "game_word", "say")),
        "n",
        f'returns "{w1}{w2}" if n is divisible by {a} and {b}, "{w1}" if only by {a}, '
        f'"{w2}" if only by {b}, else str(n)',
        body,
        lambda r: (r.randint(1, a * b * 2),),
    )


@_t("digit_sum", "code.arith", 3)
def _digit_sum(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    body = "total = 0\nfor d in str(n):\n    total += int(d)\nreturn total"
    return (
        rng.choice(("digit_sum", "sum_digits", "add_digits")),
        "n",
        "returns the sum of the digits of the non-negative integer n",
        body,
        lambda r: (r.randint(0, 99999),),
    )


@_t("range_sum", "code.arith", 3)
def _range_sum(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    k = rng.randint(2, 6)
    return (
        rng.choice(("sum_multiples", "multiple_total", "add_multiples")),
        "n",
        f"returns the sum of all multiples of {k} from 1 to n inclusive",
        f"return sum(i for i in range(1, n + 1) if i % {k} == 0)",
        lambda r: (r.randint(1, 40),),
    )


@_t("running", "code.list", 3)
def _running(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    body = "out = []\ntotal = 0\nfor x in nums:\n    total += x\n    out.append(total)\nreturn out"
    return (
        rng.choice(("running_total", "prefix_sums", "cumulative")),
        "nums",
        "returns the list of running totals of nums",
        body,
        lambda r: (_nums(r),),
    )


@_t("second", "code.list", 3)
def _second(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    def inputs(r: random.Random) -> tuple[Any, ...]:
        nums = _nums(r)
        while len(set(nums)) < 2:
            nums.append(r.randint(-9, 20))
        return (nums,)

    return (
        rng.choice(("second_largest", "runner_up", "second_max")),
        "nums",
        "returns the second largest distinct value in nums",
        "return sorted(set(nums))[-2]",
        inputs,
    )


@_t("title", "code.string", 3)
def _title(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    return (
        rng.choice(("title_case", "cap_words", "big_initials")),
        "s",
        "returns s with the first letter of every word in upper case",
        'return " ".join(w[0].upper() + w[1:] for w in s.split())',
        lambda r: (_phrase(r),),
    )


@_t("long_words", "code.string", 3)
def _long_words(rng: random.Random) -> tuple[str, str, str, str, Inputs]:
    k = rng.randint(2, 5)
    return (
        rng.choice(("count_long", "long_words", "big_words")),
        "s",
        f"returns how many words in s have more than {k} letters",
        f"return len([w for w in s.split() if len(w) > {k}])",
        lambda r: (_phrase(r),),
    )


TEMPLATES: tuple[Template, ...] = (
    _repeat,
    _suffix,
    _shout,
    _linear,
    _add_k,
    _max3,
    _count_char,
    _vowels,
    _palindrome,
    _sum_above,
    _count_multiples,
    _keep_below,
    _spread,
    _clamp,
    _label,
    _fizz,
    _digit_sum,
    _range_sum,
    _running,
    _second,
    _title,
    _long_words,
)


def run_tests_in_process(code: str, tests_code: str) -> bool:
    """Whether ``code`` passes ``tests_code`` when run here. Only for code this package wrote
    (references and their mutations); model output goes through ``rtv.code``'s sandbox."""
    ns: dict[str, Any] = {}
    try:
        exec(compile(code, "<synth>", "exec"), ns)
        exec(compile(tests_code, "<synth-tests>", "exec"), ns)
    except Exception:
        return False
    return True


def generate(rng: random.Random, difficulty: int) -> dict[str, Any]:
    """One ``code`` record (no ``id``) of ``difficulty`` 1..3."""
    return from_template(rng.choice([t for t in TEMPLATES if t.difficulty == difficulty]), rng)


def from_template(template: Template, rng: random.Random) -> dict[str, Any]:
    """One ``code`` record (no ``id``) from ``template``."""
    difficulty = template.difficulty
    name, params, description, body, inputs = template.build(rng)
    for old in params.split(", "):
        new = rng.choice(_RENAME.get(old, (old,)))
        if new != old:  # whole words outside string literals
            pattern = re.compile(rf'(?<!["\w]){old}(?!["\w])')
            params, description, body = (pattern.sub(new, t) for t in (params, description, body))
    source = f"def {name}({params}):\n" + "\n".join("    " + line for line in body.split("\n")) + "\n"
    ns: dict[str, Any] = {}
    exec(compile(source, "<synth-reference>", "exec"), ns)
    asserts: list[str] = []
    seen: set[str] = set()
    for _ in range(N_TESTS * 4):
        args = inputs(rng)
        call = f"{name}({', '.join(repr(a) for a in args)})"
        if call in seen:
            continue
        seen.add(call)
        asserts.append(f"assert {call} == {ns[name](*args)!r}")
        if len(asserts) == N_TESTS:
            break
    return {
        "task": "code",
        "domain": template.domain,
        "difficulty": difficulty,
        "prompt": f"{rng.choice(_VERBS)} a Python function `{name}({params})` that {description}.",
        "tests": {"type": "assert", "code": "\n".join(asserts) + "\n", "entry_point": name},
        "reference": f"```python\n{source}```",
    }
