"""``genrm.gt`` / ``genrm.bon``: a pairwise generative judge over (prompt, response, reference).

The judge reads one prompt (:data:`JUDGE_TEMPLATE`, sent as the user turn of the judge's chat
template) holding the question and two answers in slots A and B, and its next token is the
verdict: ``"A"`` or ``"B"`` (the slot that is better; on a tie, the candidate's slot; see
:mod:`datarl.models.genrm_train` for the label scheme). The score reads the two verdict tokens'
next-token probabilities, renormalised over the two, in both orders (position debiasing)::

    p1 = P("A" | A=response,  B=reference)
    p2 = P("A" | A=reference, B=response)
    score = 0.5 * (p1 + (1 - p2))        # P(response better); 0.5 = on par with the reference

Identical response and reference therefore score exactly 0.5 with any judge (both orders are
the same input). ``position_consistent`` says whether both orders gave the same verdict
(response preferred twice, or reference preferred twice).

References (PAPER section 2): ``genrm.gt`` compares with the record's ``ground_truth``, written as a
short final answer in the suite's format (``gt_format``, default ``"#### {ground_truth}"``) and
placed in a response slot, because the order-averaged score needs the reference in both slots;
``genrm.bon`` compares with the record's ``reference`` (the SFT best-of-N response). A judge whose
``gt_verdict`` is ``match`` is asked about a ground truth differently (:data:`MATCH_TEMPLATE`): does the
answer reach the reference's result, A = yes, B = no, with the blocks named by role in both orders; then
``score = 0.5 * (P(yes | answer first) + P(yes | reference first))``.

Judge specs (``judge=`` option): a model directory or alias (``smollm2-135m``) for the local
Hugging Face backend, or a mapping ``{backend: "openai", base_url, model, api: "completions" |
"chat", timeout_s, retries, batch_size, top_logprobs, readout, max_tokens}`` for any OpenAI-compatible
endpoint: with logprobs (vLLM, SGLang, llama-cpp-python) P("A") is read from them; from a chat model
that returns none, the verdict is read from the reply's text (``reward_info.readout``: ``logits``,
``logprobs`` or ``text``, the last a lower-resolution readout: each order gives 0 or 1). Judges are
cached per process by spec.

Calibration: a judge directory may carry a fitted decision threshold per source
(``datarl calibrate-genrm``, from responses labelled by a verifier); its scores are then mapped by
:func:`calibrate` so that the threshold lands on 0.5 (monotone, so the ranking is unchanged) and
``reward_info`` keeps the ``raw_score`` and the ``calibration_threshold``.

Failures never raise and are never a silent 0.5: a missing reference is ``failure: "no_reference"``
and a failed judge call (timeout, HTTP error, neither logprobs nor a verdict in the text, no verdict
token) is
``failure: "judge_error"`` with the error, both with reward 0.0.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datarl.rewards.base import RewardResult
from datarl.rewards.genrm_backends import build_backend
from datarl.rewards.judge import GT_FORMAT, GT_VERDICTS, VERDICTS, JudgeBackend, JudgeError, readout

__all__ = [
    "JUDGE_TEMPLATE",
    "VERDICTS",
    "GT_FORMAT",
    "JudgeResult",
    "JudgeBackend",
    "JudgeError",
    "judge_prompt",
    "match_prompt",
    "MATCH_TEMPLATE",
    "GT_VERDICTS",
    "readout",
    "combine",
    "combine_match",
    "calibrate",
    "judge_batch",
    "get_judge",
    "clear_judge_cache",
    "gt_reference",
    "score_genrm_gt",
    "score_genrm_bon",
    "score_genrm_gt_batch",
    "score_genrm_bon_batch",
    "SOURCE_GT",
    "SOURCE_BON",
]

SOURCE_GT, SOURCE_BON = "genrm.gt", "genrm.bon"
MAX_ANSWER_CHARS = 1500  # per answer slot; longer answers keep their head and tail (the final answer)
REFERENCE_INFO_CHARS = 200

# The judge's user turn. Kept short: the tiny judge has a 384-token context. The answers' last
# lines (where a conclusion or final answer usually is) are repeated side by side just before the
# verdict, so a small judge compares them over a few tokens instead of across two whole answers.
JUDGE_TEMPLATE = (
    "Compare two answers to the question.\n"
    "[Question]\n{question}\n"
    "[Answer A]\n{answer_a}\n"
    "[Answer B]\n{answer_b}\n"
    "[Last lines]\nA: {end_a}\nB: {end_b}\n"
    "Which answer is better? Reply A or B."
)
END_CHARS = 80  # characters of each answer's last line in the [Last lines] section

# ``genrm.gt`` with ``gt_verdict: match``: the judge is asked whether the answer reaches the reference's
# result, with the two blocks named by role instead of by slot. Its verdict token means yes (``A``) or no
# (``B``) whichever block comes first, so the verdict does not depend on where the reference is (with slot
# verdicts it is "A" exactly when A is the response and the answers agree: an exclusive-or a small judge is
# slow to learn, docs/results.md). Both orders of the blocks are still judged and averaged.
MATCH_TEMPLATE = (
    "Check an answer against the reference.\n"
    "[Question]\n{question}\n"
    "[{first}]\n{text_first}\n"
    "[{second}]\n{text_second}\n"
    "[Last lines]\n{first}: {end_first}\n{second}: {end_second}\n"
    "Does the answer reach the reference's result? Reply A (yes) or B (no)."
)


@dataclass(frozen=True)
class JudgeResult:
    """One judged (prompt, response, reference) triple.

    score: P(response better than reference), averaged over both orders; 0.0 when ``error``.
    p_response_first: P("A") with A = response, B = reference (renormalised over A/B).
    p_reference_first: P("A") with A = reference, B = response.
    position_consistent: both orders preferred the same answer.
    backend: which backend judged (``hf:<spec>`` or ``openai:<model>``).
    error: why the judge call failed (then the probabilities are NaN); None on success.
    info: backend details (truncation, missing verdict tokens, attempts, a text-read reply).
    readout: where the verdicts came from (``logits``, ``logprobs`` or ``text``; ``mixed`` when the two
        orders differ, each order's then in ``info``).
    """

    score: float
    p_response_first: float
    p_reference_first: float
    position_consistent: bool
    backend: str
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    readout: str = ""


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + "\n...\n" + text[-(limit - head - 5) :]


def _as_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):  # chat messages: the conversation as plain text
        return "\n".join(
            f"{m.get('role', 'user')}: {m.get('content', '')}" if isinstance(m, Mapping) else str(m) for m in prompt
        )
    return str(prompt)


def judge_prompt(question: Any, answer_a: str, answer_b: str, *, max_answer_chars: int = MAX_ANSWER_CHARS) -> str:
    """The judge's user turn for one order (the backend wraps it in its chat template)."""
    return JUDGE_TEMPLATE.format(
        question=_clip(_as_text(question), 2 * max_answer_chars),
        answer_a=_clip(str(answer_a), max_answer_chars),
        answer_b=_clip(str(answer_b), max_answer_chars),
        end_a=_last_line(str(answer_a)),
        end_b=_last_line(str(answer_b)),
    )


def match_prompt(
    question: Any, response: str, reference: str, *, reference_first: bool, max_answer_chars: int = MAX_ANSWER_CHARS
) -> str:
    """The ``gt_verdict: match`` judge turn for one order of the blocks (see :data:`MATCH_TEMPLATE`)."""
    blocks = [("Reference", str(reference)), ("Answer", str(response))]
    (first, text_first), (second, text_second) = blocks if reference_first else blocks[::-1]
    return MATCH_TEMPLATE.format(
        question=_clip(_as_text(question), 2 * max_answer_chars),
        first=first,
        second=second,
        text_first=_clip(text_first, max_answer_chars),
        text_second=_clip(text_second, max_answer_chars),
        end_first=_last_line(text_first),
        end_second=_last_line(text_second),
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-END_CHARS:] if lines else ""


def combine(p_response_first: float, p_reference_first: float) -> tuple[float, bool]:
    """Order-averaged score and position consistency from the two orders' P("A")."""
    score = 0.5 * (p_response_first + (1.0 - p_reference_first))
    # Strict verdicts only: an exact 0.5 is no verdict, so it cannot be consistent.
    consistent = (p_response_first > 0.5 > p_reference_first) or (p_response_first < 0.5 < p_reference_first)
    return score, consistent


def combine_match(p_answer_first: float, p_reference_first: float) -> tuple[float, bool]:
    """``gt_verdict: match``: the mean P(yes) of the two block orders, and whether both said the same."""
    score = 0.5 * (p_answer_first + p_reference_first)
    consistent = min(p_answer_first, p_reference_first) > 0.5 or max(p_answer_first, p_reference_first) < 0.5
    return score, consistent


def calibrate(score: float, threshold: float) -> float:
    """Map a judge score so that ``threshold`` becomes 0.5: ``sigmoid(logit(score) - logit(threshold))``.

    Monotone in ``score``; 0 and 1 stay 0 and 1; ``threshold = 0.5`` is the identity.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"calibration threshold must be in (0, 1), got {threshold}")
    if score <= 0.0 or score >= 1.0:
        return min(1.0, max(0.0, score))
    z = math.log(score / (1.0 - score)) - math.log(threshold / (1.0 - threshold))
    return 1.0 / (1.0 + math.exp(-z))


# --- judge cache -------------------------------------------------------------------------------

_CACHE: dict[str, JudgeBackend] = {}
_CACHE_LOCK = threading.Lock()


def _spec_key(spec: str | Mapping[str, Any]) -> str:
    return spec if isinstance(spec, str) else json.dumps(dict(spec), sort_keys=True, default=str)


def get_judge(spec: str | Mapping[str, Any] | JudgeBackend) -> JudgeBackend:
    """The backend for ``spec``, built once per process (loading a model is the slow part)."""
    if hasattr(spec, "verdict_probs"):
        return spec  # type: ignore[return-value]
    key = _spec_key(spec)  # type: ignore[arg-type]
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = build_backend(spec)  # type: ignore[arg-type]
        return _CACHE[key]


def clear_judge_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def judge_batch(
    judge: str | Mapping[str, Any] | JudgeBackend,
    items: Sequence[tuple[Any, str, str]],
    *,
    max_answer_chars: int | None = None,
    source: str | None = None,
) -> list[JudgeResult]:
    """Judge ``(prompt, response, reference)`` triples; both orders of every item go in one batch.

    max_answer_chars: per-slot cap; None takes the judge's own (what it was trained with, from its
    ``datarl_genrm.json``), else :data:`MAX_ANSWER_CHARS`.
    source: the reward source the items are for; ``genrm.gt`` items are asked as the backend's
    ``gt_verdict`` says (``match``: :data:`MATCH_TEMPLATE`; then ``p_response_first`` is P(yes) with the
    answer's block first and ``p_reference_first`` P(yes) with the reference's first), all else by slot.
    """
    backend = get_judge(judge)
    if max_answer_chars is None:
        max_answer_chars = getattr(backend, "max_answer_chars", None) or MAX_ANSWER_CHARS
    match = source == SOURCE_GT and getattr(backend, "gt_verdict", "slot") == "match"
    prompts: list[str] = []
    for question, response, reference in items:
        if match:  # the answer's block first, then the reference's
            prompts += [
                match_prompt(question, response, reference, reference_first=f, max_answer_chars=max_answer_chars)
                for f in (False, True)
            ]
        else:
            prompts.append(judge_prompt(question, response, reference, max_answer_chars=max_answer_chars))
            prompts.append(judge_prompt(question, reference, response, max_answer_chars=max_answer_chars))
    out = backend.verdict_probs(prompts) if prompts else []
    default = str(getattr(backend, "readout", "") or "")
    results = []
    for i in range(len(items)):
        (p1, d1), (p2, d2) = out[2 * i], out[2 * i + 1]
        d1, d2 = dict(d1), dict(d2)
        r1, r2 = str(d1.pop("readout", default)), str(d2.pop("readout", default))
        if r1 != r2:  # one order read from logprobs, the other from text: each says which
            d1["readout"], d2["readout"] = r1, r2
        how = r1 if r1 == r2 else "mixed"
        info = {k: v for k, v in {"response_first": d1, "reference_first": d2}.items() if v}
        errors = [p for p in (p1, p2) if isinstance(p, Exception)]
        if errors:
            message = "; ".join(f"{type(e).__name__}: {e}" for e in errors)
            results.append(JudgeResult(0.0, math.nan, math.nan, False, backend.name, message, info, how))
            continue
        score, consistent = (combine_match if match else combine)(float(p1), float(p2))  # type: ignore[arg-type]
        results.append(JudgeResult(score, float(p1), float(p2), consistent, backend.name, None, info, how))  # type: ignore[arg-type]
    return results


def _to_reward(result: JudgeResult, source: str, reference: str) -> RewardResult:
    info: dict[str, Any] = {
        "reference": reference[:REFERENCE_INFO_CHARS],
        "backend": result.backend,
        **({"readout": result.readout} if result.readout else {}),
        "p_response_first": result.p_response_first,
        "p_reference_first": result.p_reference_first,
        "position_consistent": result.position_consistent,
        **result.info,
    }
    if result.error is not None:
        info.update(failure="judge_error", error=result.error)
        info["p_response_first"] = info["p_reference_first"] = None  # NaN is not valid JSON
        return RewardResult(0.0, source, info)
    return RewardResult(min(1.0, max(0.0, result.score)), source, info)


def _score(
    record: Mapping[str, Any],
    response: str,
    reference: str | None,
    source: str,
    judge: Any,
    max_answer_chars: int | None,
) -> RewardResult:
    return _score_many([record], [response], [reference], source, judge, max_answer_chars)[0]


def _score_many(
    records: Sequence[Mapping[str, Any]],
    responses: Sequence[str],
    references: Sequence[str | None],
    source: str,
    judge: Any,
    max_answer_chars: int | None,
) -> list[RewardResult]:
    """Judge many records in one batch (both orders of every item together); never raises."""
    if judge is None:
        return [
            RewardResult(
                0.0,
                source,
                {
                    "failure": "judge_error",
                    "error": f"{source}: no judge configured; set "
                    f"sources.{source}.judge to a model dir or an endpoint mapping",
                },
            )
            for _ in records
        ]
    out: list[RewardResult | None] = [None] * len(records)
    todo = []
    for i, ref in enumerate(references):
        if ref is None:
            out[i] = RewardResult(
                0.0, source, {"failure": "no_reference", "error": "record has no reference to judge against"}
            )
        else:
            todo.append(i)
    try:
        results = (
            judge_batch(
                judge,
                [(records[i].get("prompt", ""), str(responses[i]), references[i]) for i in todo],
                max_answer_chars=max_answer_chars,
                source=source,
            )
            if todo
            else []
        )
    except Exception as exc:  # building the judge failed: reported per record, never raised
        for i in todo:
            out[i] = RewardResult(
                0.0,
                source,
                {
                    "failure": "judge_error",
                    "error": f"{type(exc).__name__}: {exc}",
                    "reference": str(references[i])[:REFERENCE_INFO_CHARS],
                },
            )
        return [r for r in out if r is not None]
    threshold = (getattr(get_judge(judge), "calibration", None) or {}).get(source) if todo else None
    for i, result in zip(todo, results):
        reward = _to_reward(result, source, str(references[i]))
        if threshold is not None and "failure" not in reward.info:
            reward = RewardResult(
                calibrate(reward.score, threshold),
                source,
                {**reward.info, "raw_score": reward.score, "calibration_threshold": threshold},
            )
        out[i] = reward
    return [r for r in out if r is not None]


def _bon_reference(record: Mapping[str, Any]) -> str | None:
    ref = record.get("reference")
    return None if ref is None or str(ref).strip() == "" else str(ref)


def gt_reference(record: Mapping[str, Any], judge: Any = None) -> str | None:
    """The ground truth as the judge sees it (``gt_format`` of the judge, else :data:`GT_FORMAT`)."""
    truth = record.get("ground_truth")
    if truth is None or str(truth).strip() == "":
        return None
    fmt = GT_FORMAT
    if judge is not None and not isinstance(judge, (str, Mapping)):
        fmt = getattr(judge, "gt_format", GT_FORMAT)
    elif judge is not None:
        try:
            fmt = get_judge(judge).gt_format
        except Exception:
            pass  # the judge error is reported by _score
    return fmt.format(ground_truth=str(truth).strip())


def score_genrm_gt(
    record: Mapping[str, Any],
    response: str,
    *,
    judge: str | Mapping[str, Any] | None = None,
    max_answer_chars: int | None = None,
) -> RewardResult:
    """``genrm.gt``: P(response at least as good as the ground-truth answer)."""
    return _score(record, response, gt_reference(record, judge), SOURCE_GT, judge, max_answer_chars)


def score_genrm_bon(
    record: Mapping[str, Any],
    response: str,
    *,
    judge: str | Mapping[str, Any] | None = None,
    max_answer_chars: int | None = None,
) -> RewardResult:
    """``genrm.bon``: P(response better than the record's best-of-N ``reference``)."""
    return _score(record, response, _bon_reference(record), SOURCE_BON, judge, max_answer_chars)


def score_genrm_gt_batch(
    records: Sequence[Mapping[str, Any]],
    responses: Sequence[str],
    *,
    judge: str | Mapping[str, Any] | None = None,
    max_answer_chars: int | None = None,
) -> list[RewardResult]:
    """``score_genrm_gt`` for many records in one judge batch."""
    return _score_many(
        records, responses, [gt_reference(r, judge) for r in records], SOURCE_GT, judge, max_answer_chars
    )


def score_genrm_bon_batch(
    records: Sequence[Mapping[str, Any]],
    responses: Sequence[str],
    *,
    judge: str | Mapping[str, Any] | None = None,
    max_answer_chars: int | None = None,
) -> list[RewardResult]:
    """``score_genrm_bon`` for many records in one judge batch."""
    return _score_many(records, responses, [_bon_reference(r) for r in records], SOURCE_BON, judge, max_answer_chars)
