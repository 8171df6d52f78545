"""`datarl serve`: OpenRLHF's remote reward protocol over real HTTP on loopback.

Rewards must equal the router's; nothing may come back as a non-200 or be dropped (OpenRLHF turns a
non-200 into a silent None); concurrent requests are batched; SIGTERM finishes in-flight work and exits 0.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

import datarl.integrations.openrlhf_reward as hook_module
from datarl.cli import main
from datarl.integrations.openrlhf import make_label, openrlhf_rows, parse_label, split_response
from datarl.rewards.router import Router
from datarl.server import RewardHTTPServer, RewardService, ServeConfig
from datarl.synth import SynthConfig, build_suite

WRONG = {
    "math": "I think it is 123456789.\n#### 123456789",
    "code": "```python\ndef nothing():\n    return None\n```",
    "ifeval": "no",
}


def chat(prompt: str) -> str:
    """A chat-templated prompt as OpenRLHF sends it in ``prompts``."""
    return f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def records() -> list[dict]:
    suite = build_suite(SynthConfig(train_per_task=3, pool_per_task=0, eval_per_task=0))
    recs = [r for r in suite["train"] if r["task"] in ("math", "code", "ifeval")]
    assert sorted({r["task"] for r in recs}) == ["code", "ifeval", "math"] and len(recs) == 9
    return recs


def batch(records: list[dict], responses: list[str]) -> dict:
    prompts = [chat(r["prompt"]) for r in records]
    return {
        "query": [p + resp + "<|im_end|>" for p, resp in zip(prompts, responses)],
        "prompts": prompts,
        "labels": [make_label(r) for r in records],
    }


def post(url: str, body, raw: bool = False) -> tuple[int, dict]:
    data = body if raw else json.dumps(body).encode()
    req = urllib.request.Request(url + "/get_reward", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.status, json.loads(resp.read())


class Running:
    """An in-process server on 127.0.0.1, port chosen by the OS."""

    def __init__(self, start: bool = True, **kw) -> None:
        self.service = RewardService(ServeConfig(workers=2, **kw), start=start)
        self.httpd = RewardHTTPServer(self.service, "127.0.0.1", 0)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()
        self.url = self.httpd.url

    def close(self) -> None:
        self.httpd.shutdown()
        self.thread.join()
        self.httpd.server_close()
        self.service.close()


@pytest.fixture(scope="module")
def server():
    srv = Running(max_wait_ms=150)
    yield srv
    srv.close()


def test_mixed_task_batch_matches_router(server, records):
    router = Router()
    responses = [r["reference"] for r in records] + [WRONG[r["task"]] for r in records]
    status, reply = post(server.url, batch(records + records, responses))
    assert status == 200
    n = 2 * len(records)
    assert all(len(reply[k]) == n for k in ("rewards", "scores", "reward_source", "error", "reward_info"))
    assert set(reply["extra_logs"]) == {"error", "failure"} and all(len(v) == n for v in reply["extra_logs"].values())
    expected = [router.score(rec, resp).score for rec, resp in zip(records + records, responses)]
    assert reply["rewards"] == expected == reply["scores"]
    assert expected[: len(records)] == [1.0] * len(records) and max(expected[len(records) :]) < 1.0
    assert reply["reward_source"] == [f"rtv.{r['task']}" for r in records + records]
    assert reply["extra_logs"]["error"] == [0.0] * n and reply["error"] == [None] * n
    assert reply["extra_logs"]["failure"][len(records) :] == [1.0] * len(records)  # wrong answers carry a class
    assert {i["response_from"] for i in reply["reward_info"]} == {"prefix"}
    assert reply["request_error"] is None


def test_plain_string_label_is_a_math_ground_truth_and_empty_batch_is_fine(server):
    q = chat("2+2?")
    status, reply = post(server.url, {"query": [q + "#### 4", q + "#### 5"], "prompts": [q, q], "labels": ["4", "4"]})
    assert status == 200 and reply["rewards"] == [1.0, 0.0] and reply["reward_source"] == ["rtv.math"] * 2
    status, reply = post(server.url, {"query": [], "prompts": [], "labels": []})
    assert status == 200 and reply["rewards"] == [] and reply["extra_logs"] == {"error": [], "failure": []}


def test_malformed_samples_come_back_200_flagged_with_reward_0(server, records):
    math = next(r for r in records if r["task"] == "math")
    q = chat(math["prompt"])
    good = q + math["reference"]
    cases = [  # (query, label, words the error must contain)
        (good, "{not json", "does not parse"),
        (good, json.dumps({"task": "poetry"}), "unknown task"),
        (good, json.dumps({"task": "math"}), "ground_truth"),
        (good, json.dumps({"task": "general", "reference": "x"}), "no judge configured"),  # default: genrm.bon
        (good, "", "empty"),
        (good, 42, "must be a JSON object string"),
        (["not", "a string"], make_label(math), "query[6] must be a string"),
    ]
    body = {
        "query": [c[0] for c in cases] + [good, good],
        "prompts": [q] * (len(cases) + 2),
        "labels": [c[1] for c in cases] + [make_label(math)],
    }  # the last sample has no label at all
    status, reply = post(server.url, body)
    assert status == 200 and len(reply["rewards"]) == len(cases) + 2
    for i, (_, _, words) in enumerate(cases):
        assert reply["rewards"][i] == 0.0 and reply["extra_logs"]["error"][i] == 1.0, i
        assert words in reply["error"][i], (i, reply["error"][i])
    assert reply["rewards"][len(cases)] == 1.0 and reply["error"][len(cases)] is None  # the good one
    assert reply["extra_logs"]["error"][-1] == 1.0 and "labels[8] is missing" in reply["error"][-1]


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"query": "one string"}', b'{"prompts": []}', b"\xff\xfe"])
def test_malformed_body_comes_back_200_with_request_error(server, body):
    status, reply = post(server.url, body, raw=True)
    assert status == 200 and reply["rewards"] == [] and reply["request_error"].startswith("bad_request:")


def test_missing_content_length_is_200_too(server):
    host, port = server.httpd.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.putrequest("POST", "/")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 200 and "Content-Length" in json.loads(resp.read())["request_error"]


def test_health_and_unknown_get(server):
    with urllib.request.urlopen(server.url + "/health", timeout=30) as resp:
        health = json.loads(resp.read())
    assert resp.status == 200 and health["status"] == "ok" and health["router"]["math"] == "rtv.math"
    assert {"batches", "items", "multi_request_batches", "rejected_items"} <= set(health["stats"])
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.url + "/nope", timeout=30)
    assert err.value.code == 404


def test_concurrent_requests_are_answered_and_batched_together(server, records):
    router = Router()
    before = dict(server.service.batcher.stats)
    n_threads = 8
    gate = threading.Barrier(n_threads)
    out: dict[int, tuple[list, list]] = {}

    def client(k: int) -> None:
        recs = records[k % 3 :: 3][:3]  # a mixed batch of 3, different for each thread
        responses = [r["reference"] if (j + k) % 2 else WRONG[r["task"]] for j, r in enumerate(recs)]
        gate.wait()
        out[k] = (
            post(server.url, batch(recs, responses))[1]["rewards"],
            [router.score(r, s).score for r, s in zip(recs, responses)],
        )

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(out) == list(range(n_threads))
    for k, (got, expected) in out.items():
        assert got == expected, k
    stats = server.service.batcher.stats
    assert stats["items"] - before["items"] == 3 * n_threads
    assert stats["multi_request_batches"] > before["multi_request_batches"]  # batching across requests
    assert stats["batches"] - before["batches"] < n_threads


def test_full_queue_is_flagged_not_dropped(records):
    srv = Running(start=False, max_queue=4)  # the scorer is not started: queued samples stay queued
    try:
        first = records[:3]
        result: dict = {}
        body = batch(first, [r["reference"] for r in first])
        t = threading.Thread(target=lambda: result.update(post(srv.url, body)[1]))
        t.start()
        deadline = time.monotonic() + 30
        while srv.service.batcher.queued() < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        status, reply = post(srv.url, batch(records[3:5], [r["reference"] for r in records[3:5]]))
        assert status == 200 and reply["rewards"] == [0.0, 0.0]
        assert reply["failure"] == ["overloaded"] * 2 and reply["extra_logs"]["error"] == [1.0, 1.0]
        assert "max_queue 4" in reply["error"][0]
        assert srv.service.batcher.stats["rejected_items"] == 2
        srv.service.start()
        t.join(timeout=120)
        assert result["rewards"] == [1.0, 1.0, 1.0]  # the queued request is scored once the scorer runs
    finally:
        srv.close()


def test_split_response_table():
    p = chat("Q?")
    table = [  # (query, prompt, response, how)
        (p + "#### 4<|im_end|>", p, "#### 4", "prefix"),
        ("<s>" + p + "#### 4</s>", p, "#### 4", "after_prompt"),  # a BOS the decoder put in front
        (p + "x <|im_end|> <|endoftext|>\n", p, "x", "prefix"),
        ("just text", "other prompt", "just text", "whole_query"),
        ("just text", None, "just text", "whole_query"),
        (None, p, "", "whole_query"),
    ]
    for query, prompt, response, how in table:
        assert split_response(query, prompt) == (response, how), query


def test_labels_round_trip_and_rows(records):
    for rec in records:
        label = make_label(rec)
        assert "prompt" not in json.loads(label) and "reference" in json.loads(label)
        parsed, problem = parse_label(label, chat(rec["prompt"]), 0)
        assert problem is None and parsed["task"] == rec["task"]
        assert Router().score(parsed, rec["reference"]).score == 1.0
    rows = openrlhf_rows(records)
    assert [r["input"] for r in rows] == [r["prompt"] for r in records]
    assert all(isinstance(r["label"], str) for r in rows)
    assert parse_label({"task": "math", "ground_truth": "4", "prompt": "own"}, "sent", 0)[0]["prompt"] == "own"


def test_reward_func_file_hook_loaded_by_path_like_openrlhf(records, monkeypatch):
    monkeypatch.setenv("DATARL_WORKERS", "1")
    spec = importlib.util.spec_from_file_location("reward_func", hook_module.__file__)  # as OpenRLHF does
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        responses = [r["reference"] for r in records[:4]] + [WRONG[records[4]["task"]]]
        body = batch(records[:5], responses)
        reply = module.reward_func(body["query"], body["prompts"], body["labels"])
        assert reply["rewards"] == [Router().score(r, s).score for r, s in zip(records[:5], responses)]
        assert set(reply["extra_logs"]) == {"error", "failure"}
    finally:
        if module._SERVICE is not None:
            module._SERVICE.close()


def test_cli_rejects_bad_options_and_busy_port(capsys):
    assert main(["serve", "--max-batch", "0"]) == 2
    assert "datarl: error: --max-batch must be at least 1" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["serve", "--port", str(busy.getsockname()[1]), "--workers", "1"]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def test_sigterm_finishes_in_flight_request_and_exits_0(records):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "datarl", "serve", "--port", "0", "--workers", "1", "--max-wait-ms", "2000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), (url, proc.stderr.read() if proc.poll() else "")
        port = int(url.rsplit(":", 1)[1])
        result: dict = {}
        recs = records[:3]
        t = threading.Thread(target=lambda: result.update(post(url, batch(recs, [r["reference"] for r in recs]))[1]))
        t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until the request waits in the batcher (2 s window)
            with urllib.request.urlopen(url + "/health", timeout=10) as resp:
                if json.loads(resp.read())["queued"] == 3:
                    break
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        t.join(timeout=60)
        assert result.get("rewards") == [1.0, 1.0, 1.0]  # answered, not dropped
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
