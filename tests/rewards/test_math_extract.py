"""Extraction rows for ``rtv.math`` from issue 15: several boxes, sentences after a marker, and a
marker after an earlier box. Responses are shaped like real model outputs (MATH/GSM8K style CoT
endings); each row is scored end to end, so the extraction and the comparison are both pinned.
"""

from __future__ import annotations

import pytest

from datarl.rewards.math import score_math

# (gold, response, score, extracted, method)
SEVERAL_BOXES = [
    (
        "(2, 2), (6, 2)",
        "Checking both cases, the solutions are $\\boxed{(2, 2)} \\quad \\text{and} \\quad \\boxed{(6, 2)}$.",
        1.0,
        "(2, 2), (6, 2)",
        "boxed_group",
    ),
    ("{1,2,3}", "The possible values of $k$ are $\\boxed{1}, \\boxed{2}, \\boxed{3}$.", 1.0, "1, 2, 3", "boxed_group"),
    (
        "\\{1,2,3\\}",
        "So $k \\in \\{1, 2, 3\\}$, i.e. $\\boxed{1}$, $\\boxed{2}$ and $\\boxed{3}$.",
        1.0,
        "1, 2, 3",
        "boxed_group",
    ),
    ("-2, 1", "Factoring, $(x+2)(x-1)=0$, so $x = \\boxed{-2}$ or $x = \\boxed{1}$.", 1.0, "-2, 1", "boxed_group"),
    ("x=2, y=3", "Substituting back, $x = \\boxed{2}$, $y = \\boxed{3}$.", 1.0, "2, 3", "boxed_group"),
    ("(2, 3)", "Hence $x=\\boxed{2}$ and $y=\\boxed{3}$.", 1.0, "2, 3", "boxed_group"),
    ("A, C", "Statements A and C hold: \\boxed{A} and \\boxed{C}", 1.0, "A, C", "boxed_group"),
    ("1, 2", "The two roots are\n\\[\\boxed{1}\\]\n\\[\\boxed{2}\\]", 1.0, "1, 2", "boxed_group"),
    ("\\frac{1}{2}", "Thus $p = \\boxed{\\frac{1}{2}}$.\n\n$\\boxed{\\frac{1}{2}}$", 1.0, "\\frac{1}{2}", "boxed"),
    # boxes with prose between them are steps: only the last one is the answer
    (
        "3",
        "For $n=1$ we get $\\boxed{1}$, which fails the condition. For $n=2$ we get $\\boxed{2}$, which also "
        "fails. For $n = 3$ everything holds, so the answer is $\\boxed{3}$.",
        1.0,
        "3",
        "boxed",
    ),
    # negatives: boxing every candidate is read as the list of all of them
    (
        "\\{1,2,3\\}",
        "The possible values are $\\boxed{1}, \\boxed{2}, \\boxed{3}, \\boxed{4}$.",
        0.0,
        "1, 2, 3, 4",
        "boxed_group",
    ),
    ("3", "The answer could be $\\boxed{1}$, $\\boxed{2}$, $\\boxed{3}$.", 0.0, "1, 2, 3", "boxed_group"),
    ("5", "So $n$ is either $\\boxed{3}$ or $\\boxed{5}$.", 0.0, "3, 5", "boxed_group"),
    ("(3, 2)", "Hence $x=\\boxed{2}$ and $y=\\boxed{3}$.", 0.0, "2, 3", "boxed_group"),  # a tuple is ordered
    ("A", "It is \\boxed{A} or \\boxed{B}.", 0.0, "A, B", "boxed_group"),
]

FINAL_ANSWER_SENTENCES = [
    ("34", "Checking $n = 35$ fails, so we stop.\n\nFinal Answer: The largest $n$ is 34.", 1.0, "34", "answer_colon"),
    ("15", "Answer: There are 15 students in the class.", 1.0, "15 students in the class", "answer_colon"),
    (
        "18",
        "16 - 3 - 4 = 9 eggs are left, 9 * 2 = 18 dollars.\nAnswer: Janet makes $18 every day at the market.",
        1.0,
        "18",
        "answer_colon",
    ),
    ("\\frac{3}{4}", "**Final Answer:** The value of $x$ is $\\frac{3}{4}$.", 1.0, "\\frac{3}{4}", "answer_colon"),
    ("2, 3", "Final Answer: The solutions are $x = 2$ and $x = 3$.", 1.0, "x = 2, x = 3", "answer_colon"),
    ("5", "Answer: She has 5 apples left, since 8 - 3 = 5.", 1.0, "5", "answer_colon"),
    (
        "\\frac{1}{6}",
        "Answer: The probability that both are red is $\\dfrac{1}{6}$.",
        1.0,
        "\\dfrac{1}{6}",
        "answer_colon",
    ),
    ("24", "Final answer: The perimeter equals 24 cm.", 1.0, "24 cm", "answer_colon"),
    ("-2", "Answer: Therefore the minimum value of $f$ is $-2$ at $x = 1$.", 1.0, "-2", "answer_colon"),
    ("2, 3, 4", "Final Answer: The roots are $2$, $3$ or $4$.", 1.0, "2, 3, 4", "answer_colon"),
    # not sentences: unchanged
    ("1000", "Final Answer: 1,000 apples", 1.0, "1,000 apples", "answer_colon"),
    ("3", "**Answer:** $x = 3$", 1.0, "x = 3", "answer_colon"),
    # negatives stay negatives
    ("34", "Final Answer: The largest $n$ is 35.", 0.0, "35", "answer_colon"),
    ("7", "Final Answer: The number of apples is unknown.", 0.0, "The number of apples is unknown", "answer_colon"),
    ("-2", "Answer: Therefore the minimum value of $f$ is $1$ at $x = -2$.", 0.0, "1", "answer_colon"),
]

MARKER_AFTER_BOX = [
    (
        "10455",
        "First, $a = \\boxed{17}$ from the first equation. Then $b = 615$, so the product is "
        "$17 \\cdot 615 = 10,455$.\n\nThe final answer is $10,455$.",
        1.0,
        "10,455",
        "the_answer_is",
    ),
    ("15", "The first part gives \\boxed{12}. Adding the remaining three:\nAnswer: 15", 1.0, "15", "answer_colon"),
    ("72", "In April she sold $\\boxed{48}$ clips and in May half as many.\n#### 72", 1.0, "72", "gsm8k_hashes"),
    ("6", "\\boxed{5} is wrong; the answer is 6", 1.0, "6", "the_answer_is"),
    # a marker whose value is no answer does not displace the box
    ("42", "So the total is $\\boxed{42}$. The answer is correct because both checks pass.", 1.0, "42", "boxed"),
    ("7", "The answer is 6. Formatted: \\boxed{7}", 1.0, "7", "boxed"),  # the box comes last
    ("17", "First, $a = \\boxed{17}$.\n\nThe final answer is $10,455$.", 0.0, "10,455", "the_answer_is"),
]


@pytest.mark.parametrize(
    ("gold", "response", "score", "extracted", "method"), SEVERAL_BOXES + FINAL_ANSWER_SENTENCES + MARKER_AFTER_BOX
)
def test_extraction_rows(gold: str, response: str, score: float, extracted: str, method: str) -> None:
    result = score_math({"task": "math", "ground_truth": gold}, response)
    assert (result.info["extracted"], result.info["extraction_method"]) == (extracted, method)
    assert result.score == score


def test_enough_rows_per_class() -> None:
    assert len(SEVERAL_BOXES) >= 10 and len(FINAL_ANSWER_SENTENCES) >= 10
    assert sum(row[2] == 0.0 for row in SEVERAL_BOXES) >= 3  # hedging boxes are refused


def test_a_hundred_boxes_are_read_as_one_capped_group() -> None:
    response = " ".join(f"\\boxed{{{i}}}," for i in range(100))
    result = score_math({"ground_truth": "99"}, response)
    assert result.score == 0.0
    assert result.info["extracted"].count(",") == 19  # MAX_GROUP_BOXES items
