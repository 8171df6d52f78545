"""`datarl serve`: OpenRLHF's remote reward protocol over real HTTP on loopback.

Rewards must equal the router's; nothing may come back as a non-200 or be dropped (OpenRLHF turns a
non-200 into a silent None) except what the issue asks for (401 without the token, 400 for oversized
headers, 503 past the connection cap); concurrent requests are batched; stalled, idle and hostile clients
are cut off by the limits; SIGTERM finishes in-flight work and exits 0 whatever the clients do.
Timing appears only as the issue's generous bounds (1 s of delay, 10 s to exit).
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
from datarl.server import RewardService, ServeConfig
from datarl.server_http import RewardServer
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


def post(url: str, body, raw: bool = False, path: str = "/get_reward", headers: dict | None = None) -> tuple[int, dict]:
    data = body if raw else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.status, json.loads(resp.read())


def raw_request(address, data: bytes, timeout: float = 30) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it (or ``timeout``)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def reply_of(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


class Running:
    """An in-process server on 127.0.0.1, port chosen by the OS, run by a thread (no signals there)."""

    def __init__(self, start: bool = True, verbose: bool = False, **kw) -> None:
        self.service = RewardService(ServeConfig(**{"workers": 2, **kw}), start=start)
        self.server = RewardServer(self.service, verbose=verbose)
        self.thread = threading.Thread(target=self.server.run)
        self.thread.start()
        self.url = self.server.url
        self.address = self.server.sock.getsockname()[:2]

    def health(self, path: str = "/health", headers: dict | None = None) -> dict:
        req = urllib.request.Request(self.url + path, headers=headers or {})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def close(self) -> None:
        self.server.stop()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
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
    conn = http.client.HTTPConnection(*server.address, timeout=30)
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


TOKEN = "test-token-0123456789abcdef"
HALF_HEAD = b"POST /get_reward HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"
HALF_BODY = b'POST /get_reward HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 500\r\n\r\n{"query": ['


def one_math(records: list[dict]) -> dict:
    math = next(r for r in records if r["task"] == "math")
    return batch([math], [math["reference"]])


def test_token_is_required_on_every_request_and_may_come_in_the_path(records, capsys):
    srv = Running(token=TOKEN, workers=1, verbose=True)
    try:
        body = one_math(records)
        refused = [
            {},  # no header: refused before the body is looked at
            {"headers": {"Authorization": "Bearer wrong-token-0123456789"}},
            {"headers": {"Authorization": TOKEN}},  # not a Bearer credential
            {"headers": {"Authorization": f"Basic {TOKEN}"}},
            {"path": "/wrong-token-0123456789/get_reward"},
            {"path": f"/get_reward/{TOKEN}"},  # the token counts as the first path segment only
            {"path": f"/{TOKEN[:-1]}/get_reward"},
        ]
        for kwargs in refused:
            with pytest.raises(urllib.error.HTTPError) as err:
                post(srv.url, body, **kwargs)
            assert err.value.code == 401, kwargs
            assert err.value.headers["WWW-Authenticate"].startswith("Bearer")
            assert "Authorization: Bearer TOKEN" in json.loads(err.value.read())["error"]
        with pytest.raises(urllib.error.HTTPError) as err:
            srv.health()
        assert err.value.code == 401
        # the header, or the token as the first path segment: OpenRLHF's client sends no header, only the URL
        assert post(srv.url, body, headers={"Authorization": f"Bearer {TOKEN}"})[1]["rewards"] == [1.0]
        assert post(srv.url, body, path=f"/{TOKEN}/get_reward")[1]["rewards"] == [1.0]
        assert post(srv.url, body, path=f"/{TOKEN}")[1]["rewards"] == [1.0]
        health = srv.health(f"/{TOKEN}/health")
        assert health["stats"]["requests"] == 3  # no refused request reached the scorer
        assert health["http"]["unauthorized"] == len(refused) + 1
        assert srv.health(headers={"Authorization": f"Bearer {TOKEN}"})["status"] == "ok"
    finally:
        srv.close()
    log = capsys.readouterr().err
    assert "POST /<token>/get_reward 200" in log and "POST /get_reward 401" in log and TOKEN not in log


def test_non_loopback_host_needs_a_token_or_insecure(capsys, monkeypatch):
    monkeypatch.delenv("DATARL_SERVE_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "0.0.0.0 is not a loopback address" in err and "--insecure" in err
    assert main(["serve", "--token", "short", "--workers", "1"]) == 2
    assert "at least 16" in capsys.readouterr().err
    assert main(["serve", "--token", "has/slash/0123456789", "--workers", "1"]) == 2
    assert "letters, digits" in capsys.readouterr().err
    monkeypatch.setenv("DATARL_SERVE_TOKEN", "short-from-env")  # the environment is read when --token is not given
    assert main(["serve", "--host", "0.0.0.0", "--workers", "1"]) == 2
    assert "at least 16" in capsys.readouterr().err
    for host in ("0.0.0.0", "::", "10.1.2.3", "rm1.cluster.internal"):
        with pytest.raises(ValueError, match="not a loopback address"):
            ServeConfig(host=host)
        ServeConfig(host=host, token=TOKEN)  # allowed (not bound here: the tests listen on loopback only)
        ServeConfig(host=host, insecure=True)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        ServeConfig(host=host)
    assert TOKEN not in repr(ServeConfig(token=TOKEN))


def test_nested_brackets_get_a_request_error_reply(server, records):
    status, reply = post(server.url, b"[" * 100_000, raw=True)
    assert status == 200 and reply["rewards"] == [] and "nested too deeply" in reply["request_error"]
    math = next(r for r in records if r["task"] == "math")
    q = chat(math["prompt"])
    deep = json.loads("[" * 200 + "]" * 200)  # parses, but would break the batch on its way to the workers
    labels = ['{"task": "math", "ground_truth": ' + "[" * 100_000, {**json.loads(make_label(math)), "x": deep}]
    body = {"query": [q + math["reference"]] * 3, "prompts": [q] * 3, "labels": [*labels, make_label(math)]}
    status, reply = post(server.url, body)
    assert status == 200 and reply["rewards"] == [0.0, 0.0, 1.0]  # the good sample is scored all the same
    assert "nested too deeply" in reply["error"][0] and "nested more than 32 levels" in reply["error"][1]


def test_200_idle_connections_do_not_delay_a_good_request(server, records):
    body = one_math(records)

    def timed() -> float:
        t0 = time.perf_counter()
        assert post(server.url, body)[1]["rewards"] == [1.0]
        return time.perf_counter() - t0

    alone = min(timed() for _ in range(3))
    held = []
    try:
        for k in range(200):  # half send nothing, half stop in the middle of a header
            held.append(socket.create_connection(server.address, timeout=30))
            if k % 2:
                held[-1].sendall(HALF_HEAD)
        deadline = time.monotonic() + 30
        while server.health()["http"]["connections"] < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.health()["http"]["connections"] >= 200  # all accepted and held open
        with_idle = timed()
    finally:
        for sock in held:
            sock.close()
    assert with_idle < alone + 1.0, (alone, with_idle)


def test_stalled_clients_are_cut_off_by_the_read_timeout():
    srv = Running(workers=1, read_timeout_s=1.0)
    try:
        t0 = time.perf_counter()
        silent = socket.create_connection(srv.address, timeout=30)
        half_head = socket.create_connection(srv.address, timeout=30)
        half_head.sendall(HALF_HEAD)
        half_body = socket.create_connection(srv.address, timeout=30)
        half_body.sendall(HALF_BODY)
        time.sleep(0.5)
        half_head.sendall(b"ngth: 5\r\n")  # trickling bytes does not move the deadline
        assert read_until_closed(silent) == b"" and read_until_closed(half_head) == b""
        status, reply = reply_of(read_until_closed(half_body))
        assert status == 200 and "did not arrive within --read-timeout 1 s" in reply["request_error"]
        assert time.perf_counter() - t0 < 10  # 1 s each, with a generous margin for a loaded machine
        health = srv.health()
        assert health["http"]["body_timeouts"] == 1 and health["stats"]["requests"] == 0
        for sock in (silent, half_head, half_body):
            sock.close()
    finally:
        srv.close()


def test_connection_cap_answers_503_and_idle_connections_make_room(records):
    srv = Running(workers=1, max_connections=8, read_timeout_s=2.0)
    body = one_math(records)
    try:
        idle = [socket.create_connection(srv.address, timeout=30) for _ in range(7)]
        assert post(srv.url, body)[1]["rewards"] == [1.0]  # the 8th connection is served
        idle.append(socket.create_connection(srv.address, timeout=30))
        time.sleep(0.3)
        with pytest.raises(urllib.error.HTTPError) as err:  # a 9th is not: 503, which OpenRLHF retries
            post(srv.url, body)
        assert err.value.code == 503
        for sock in idle:  # the read timeout closes the idle connections...
            assert read_until_closed(sock) == b""
            sock.close()
        assert post(srv.url, body)[1]["rewards"] == [1.0]  # ...and the server serves again
    finally:
        srv.close()


def test_body_and_header_limits(records):
    srv = Running(workers=1, max_body_mb=0.01, max_header_kb=4)
    try:
        status, reply = post(srv.url, {"query": ["x" * 20_000], "prompts": ["p"], "labels": ["4"]})
        assert status == 200 and "over the 0.01 MB limit" in reply["request_error"]
        chunk = b'{"query": ["' + b"x" * 20_000 + b'"]}'
        chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunked += b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk)
        status, reply = reply_of(raw_request(srv.address, chunked))  # no Content-Length: counted as it comes
        assert status == 200 and "over the 0.01 MB limit" in reply["request_error"]
        big_header = b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\nContent-Length: 2\r\n\r\n{}"
        assert raw_request(srv.address, big_header).startswith(b"HTTP/1.1 400 ")  # arrives whole
        with socket.create_connection(srv.address, timeout=30) as sock:  # arrives in pieces, never ends
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
            for _ in range(10):
                try:
                    sock.sendall(b"X-More: " + b"a" * 1000 + b"\r\n")
                except OSError:
                    break  # closed by the server
                time.sleep(0.05)
            assert read_until_closed(sock).startswith(b"HTTP/1.1 400 ")
        assert srv.health()["http"]["too_large"] == 3
        assert post(srv.url, one_math(records))[1]["rewards"] == [1.0]
    finally:
        srv.close()


def test_stop_flags_samples_not_scored_within_the_drain_timeout(records):
    srv = Running(start=False, workers=1, drain_timeout_s=0.5)  # the scorer never runs: nothing gets scored
    result: dict = {}
    recs = records[:3]
    t = threading.Thread(target=lambda: result.update(post(srv.url, batch(recs, [r["reference"] for r in recs]))[1]))
    t.start()
    try:
        deadline = time.monotonic() + 30
        while srv.service.batcher.queued() < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.perf_counter()
        srv.server.stop()
        t.join(timeout=30)
        srv.thread.join(timeout=30)
        assert not srv.thread.is_alive() and time.perf_counter() - t0 < 10
    finally:
        srv.close()
    assert result["rewards"] == [0.0] * 3 and result["failure"] == ["shutting_down"] * 3
    assert result["extra_logs"]["error"] == [1.0] * 3 and "--drain-timeout 0.5 s" in result["error"][0]


def test_sigterm_with_idle_and_half_sent_connections_finishes_scoring_and_exits_0(records):
    env = {**{k: v for k, v in os.environ.items() if k != "DATARL_SERVE_TOKEN"}, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "datarl", "serve", "--port", "0", "--workers", "1", "--max-wait-ms", "2000"]
    cmd += ["--token"]  # alone: a token is generated and printed
    proc = subprocess.Popen(
        cmd + ["--read-timeout", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    held: list[socket.socket] = []
    try:
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), (url, proc.stderr.read() if proc.poll() else "")
        port = int(url.rsplit(":", 1)[1])
        while "generated a token" not in (line := proc.stderr.readline()):
            assert line, proc.stderr.read()
        token = re.search(r"DATARL_SERVE_TOKEN=([\w.~-]+)", line).group(1)
        assert len(token) >= 32
        url += "/" + token
        result: dict = {}
        recs = records[:3]
        t = threading.Thread(target=lambda: result.update(post(url, batch(recs, [r["reference"] for r in recs]))[1]))
        t.start()
        for k in range(30):  # idle, half a header, half a body
            held.append(socket.create_connection(("127.0.0.1", port), timeout=30))
            held[-1].sendall(
                [b"", HALF_HEAD, HALF_BODY.replace(b"/get_reward", f"/{token}/get_reward".encode())][k % 3]
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until the request waits in the batcher (2 s window)
            with urllib.request.urlopen(url + "/health", timeout=10) as resp:
                if json.loads(resp.read())["queued"] == 3:
                    break
            time.sleep(0.02)
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert time.perf_counter() - t0 < 10
        t.join(timeout=30)
        assert result.get("rewards") == [1.0, 1.0, 1.0]  # the request being scored was answered, not dropped
        for k, sock in enumerate(held):
            got = read_until_closed(sock)
            if k % 3 == 2:  # a body still arriving: told why, not scored
                status, reply = reply_of(got)
                assert status == 200 and reply["request_error"].startswith("shutting_down:"), reply
            else:
                assert got == b""
    finally:
        for sock in held:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
