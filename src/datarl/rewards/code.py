"""``rtv.code``: run a response's code against the record's tests in the sandbox (DESIGN section 3).

Tests come in two shapes (DESIGN section 2):
  ``{"type": "assert", "code", "setup"?, "entry_point"?}``: HumanEval / MBPP. Every top-level assert is a
      test; HumanEval's ``def check(candidate)`` is called with ``entry_point``. Asserts are rewritten to
      compare plain values (``code_tests``), and the verdict comes from the in-sandbox harness
      (``code_harness``) over a channel the candidate cannot forge.
  ``{"type": "stdio", "cases": [{"input", "output"}], "float_tolerance"?}``: the program runs once per case
      with the input on stdin; its stdout is compared here, outside the sandbox (expected outputs never
      enter it), after normalising trailing whitespace.

Reward: 1.0 when every test passes, else 0.0 (``partial_credit=True``: the passed fraction).
``reward_info``: ``extracted`` (the code run) and ``extracted_from`` (``fenced_python``, ``fenced``,
``response``), ``tests`` (per-test ``passed`` and ``error``), ``passed``/``total``, ``wall_seconds``, and
``failure``: ``no_code``, ``syntax_error``, ``runtime_error``, ``wrong_answer``, ``timeout``, ``memory``,
``output_limit``, ``killed``; or, not the response's fault, ``invalid_tests``, ``sandbox_unavailable``,
``sandbox_error``.
"""

from __future__ import annotations

import logging
import re
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datarl.config import unknown_keys
from datarl.rewards.base import RewardResult
from datarl.rewards.code_tests import outputs_match, split_assert_tests, validate_tests
from datarl.sandbox import SandboxConfig, SandboxUnavailable, run_job

SOURCE = "rtv.code"
HARNESS_SOURCE = Path(__file__).with_name("code_harness.py").read_text()
_PRELOAD = (HARNESS_SOURCE,)
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.M | re.S)
_PY_TAGS = {"python", "py", "python3", "py3"}
_MAX_INFO_CODE = 20_000
log = logging.getLogger("datarl.rewards.code")

__all__ = ["score_code", "validate_tests", "extract_code", "SOURCE"]


def extract_code(response: str) -> tuple[str, str]:
    """The code to run and where it came from: the last fenced ```python block, else the last untagged
    fenced block, else the whole response."""
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(response)]
    for wanted, origin in ((_PY_TAGS, "fenced_python"), ({""}, "fenced")):
        chosen = [body for tag, body in blocks if tag in wanted]
        if chosen:
            return chosen[-1], origin
    return response, "response"


def score_code(
    record: Mapping[str, Any],
    response: str,
    *,
    partial_credit: bool = False,
    config: SandboxConfig | Mapping[str, Any] | None = None,
) -> RewardResult:
    """Score ``response`` against ``record["tests"]``; never raises on model output.

    config: sandbox limits; a mapping (from the router's YAML ``sources: {rtv.code: {config: {...}}}``)
    is turned into a ``SandboxConfig`` (unknown or invalid fields raise ValueError: a config error, not
    model output).
    """
    if not isinstance(partial_credit, bool):
        raise ValueError(f"partial_credit must be true or false, got {partial_credit!r}")
    if config is None:
        config = SandboxConfig()
    elif not isinstance(config, SandboxConfig):
        unknown, known = unknown_keys(SandboxConfig, dict(config))
        if unknown:
            raise ValueError(f"config: unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
        config = SandboxConfig(**dict(config))
    try:
        if not isinstance(response, str):
            return _result(0.0, {"failure": "no_code", "detail": "response is not a string"})
        code, origin = extract_code(response)
        info: dict[str, Any] = {"extracted": code[:_MAX_INFO_CODE], "extracted_from": origin}
        tests = record.get("tests")
        problems = validate_tests(tests)
        if problems:
            return _result(0.0, dict(info, failure="invalid_tests", detail="; ".join(problems)))
        if not code.strip():
            return _result(0.0, dict(info, failure="no_code"))
        assert isinstance(tests, Mapping)
        if tests["type"] == "assert":
            return _score_assert(tests, code, info, partial_credit, config)
        return _score_stdio(tests, code, info, partial_credit, config)
    except SandboxUnavailable as e:
        log.error(
            "!!! rtv.code: %s. Install util-linux/bubblewrap or enable unprivileged user namespaces; "
            "--unsafe-no-isolation runs model code unisolated. !!!",
            e,
        )
        return _result(0.0, {"failure": "sandbox_unavailable", "detail": str(e)})
    except Exception as e:  # the contract: a verifier never raises on model output
        log.exception("rtv.code internal error")
        return _result(0.0, {"failure": "sandbox_error", "detail": f"{type(e).__name__}: {e}"})


def _result(score: float, info: dict[str, Any]) -> RewardResult:
    return RewardResult(score=float(score), source=SOURCE, info=info)


def _score_assert(
    tests: Mapping[str, Any], code: str, info: dict[str, Any], partial: bool, config: SandboxConfig
) -> RewardResult:
    items = split_assert_tests(tests["code"], tests.get("entry_point") or None)
    payload = {"code": code, "setup": tests.get("setup") or "", "tests": [list(i) for i in items]}
    reply = run_job({"runner": "run_assert", "payload": payload}, config, _PRELOAD)
    total = sum(1 for _, is_test in items if is_test)
    info["wall_seconds"] = reply.get("wall_seconds")
    verdict = reply.get("verdict")
    failure = _process_failure(reply)
    if failure is None and verdict is None:
        failure = "runtime_error"
        info["detail"] = f"the program ended before the tests finished (exit code {reply.get('exit_code')})"
    if failure is not None:
        if reply.get("stderr"):
            info["stderr"] = reply["stderr"][-2000:]
        info.update(failure=failure, passed=0, total=total, tests=[{"passed": False}] * total)
        return _result(0.0, info)
    bits, errors, phase = verdict.get("passed", ""), list(verdict.get("errors", [])), verdict.get("phase")
    passed = [b == "1" for b in bits][:total] + [False] * max(0, total - len(bits))
    info["tests"] = _per_test(passed, errors)
    info.update(passed=sum(passed), total=total)
    if phase in ("syntax", "candidate", "bad_tests", "stray_thread") or not all(passed) or not total:
        info["failure"] = _verdict_failure(phase, errors)
        if errors:
            info["detail"] = errors[0]
    score = sum(passed) / total if partial and total else float(bool(total) and all(passed) and "failure" not in info)
    return _result(score if "failure" not in info or partial else 0.0, info)


def _per_test(passed: list[bool], errors: list[str]) -> list[dict[str, Any]]:
    out, it = [], iter(errors)
    for ok in passed:
        out.append({"passed": True} if ok else {"passed": False, "error": next(it, "")})
    return out


def _verdict_failure(phase: str | None, errors: list[str]) -> str:
    if phase == "syntax":
        return "syntax_error"
    if phase == "bad_tests":
        return "invalid_tests"
    if any(e.startswith("MemoryError") for e in errors):
        return "memory"
    if phase in ("candidate", "stray_thread"):
        return "runtime_error"
    if errors and all(e.startswith("AssertionError") for e in errors):
        return "wrong_answer"
    return "runtime_error" if errors else "wrong_answer"


def _process_failure(reply: Mapping[str, Any]) -> str | None:
    """Failure class from how the run ended, before looking at any verdict."""
    status = reply.get("status")
    if status == "timeout":
        return "timeout"
    if status == "output_limit":
        return "output_limit"
    if status != "exited":
        return "sandbox_error"
    sig = reply.get("signal")
    if sig == signal.SIGXCPU:  # RLIMIT_CPU soft limit
        return "timeout"
    if sig is not None:
        return "killed"
    return None


def _score_stdio(
    tests: Mapping[str, Any], code: str, info: dict[str, Any], partial: bool, config: SandboxConfig
) -> RewardResult:
    tol = tests.get("float_tolerance")
    results: list[dict[str, Any]] = []
    failure = None
    wall = 0.0
    try:
        compile(code, "main.py", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as e:
        cases = tests["cases"]
        info.update(
            failure="syntax_error",
            detail=f"{type(e).__name__}: {e}",
            passed=0,
            total=len(cases),
            tests=[{"passed": False}] * len(cases),
        )
        return _result(0.0, info)
    for case in tests["cases"]:
        reply = run_job({"runner": "run_exec", "payload": {"code": code}, "stdin": case["input"]}, config, _PRELOAD)
        wall += reply.get("wall_seconds") or 0.0
        case_failure = _process_failure(reply)
        if case_failure is None and reply.get("exit_code") != 0:
            case_failure = "memory" if "MemoryError" in reply.get("stderr", "") else "runtime_error"
        if case_failure is None and not outputs_match(reply.get("stdout", ""), case["output"], tol):
            case_failure = "wrong_answer"
        entry: dict[str, Any] = {"passed": case_failure is None}
        if case_failure:
            entry["error"] = case_failure
            if reply.get("stderr"):
                entry["stderr"] = reply["stderr"][-500:]
            failure = failure or case_failure
        results.append(entry)
        if case_failure and not partial:
            break
    total = len(tests["cases"])
    results += [{"passed": False, "error": "not run"}] * (total - len(results))
    passed = sum(r["passed"] for r in results)
    info.update(tests=results, passed=passed, total=total, wall_seconds=round(wall, 4))
    if failure:
        info["failure"] = failure
    score = passed / total if partial else float(passed == total)
    return _result(score, info)
