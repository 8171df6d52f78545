"""OpenRLHF's own remote reward client against `datarl serve` (and against our ``reward_func`` file hook).

OpenRLHF's trainer cannot install without CUDA (flash-attn, deepspeed), so ``openrlhf`` goes into its own
venv, ``.venv-openrlhf``, with ``--no-deps`` plus what its reward path imports: torch (CPU, pinned by
constraints.txt), transformers (OpenRLHF's pin), aiohttp (the HTTP client), pylatexenc and sympy
(``openrlhf.utils`` imports its math grader), datasets (``openrlhf.datasets``), and datarl itself (for the
file hook). Built on first use (~1 min) or by ``python tests/integrations/test_openrlhf.py``.

A driver script runs in that venv and calls OpenRLHF's code, unchanged:

- ``preprocess_data`` turns our exported rows (``datarl.integrations.openrlhf.openrlhf_rows``) into prompt
  and label with the tokenizer's chat template, as ``--data.apply_chat_template --data.label_key label`` does;
- ``SingleTurnAgentExecutor.execute`` (what every vLLM rollout actor runs) tokenizes the prompt, takes the
  "generated" tokens, decodes prompt + response with special tokens kept and asks the reward endpoints:
  two ``datarl serve`` URLs, each server requiring a token that the URL carries in its path
  (``http://HOST:PORT/TOKEN/get_reward``: OpenRLHF's client sends no header) (``--reward.remote_url A,B``
  is split on commas; 0.11 rotates one-query calls across the URLs and shards a multi-query call into
  ceil(n/k) slices), then our file hook;
- ``SamplesGenerator._process_response_into_experience`` turns each result into OpenRLHF's Experience
  (``torch.tensor([reward])``, every ``extra_logs`` value into a tensor).

Stand-ins, and only where OpenRLHF needs a GPU: the vLLM engine is replaced by an object that "generates"
the response the test chose (the policy is not under test), and the module names ``ray``, ``vllm`` and
``openrlhf.trainer.ray.vllm_engine`` are empty placeholders so that the samples generator imports (its
conversion function uses none of them), as OpenRLHF's own tests do.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-openrlhf"
VENV_PY = VENV / "bin" / "python"
OPENRLHF = "openrlhf==0.11.2"
RUNTIME = ["torch==2.13.0", "transformers==5.15.0", "aiohttp", "pylatexenc", "sympy", "datasets"]
STAMP = VENV / f".datarl-{hashlib.sha1(' '.join([OPENRLHF, *RUNTIME]).encode()).hexdigest()[:12]}"

WRONG = {
    "math": "It is 123456789.\n#### 123456789",
    "code": "```python\ndef nothing():\n    return None\n```",
    "ifeval": "no",
}


def build_venv() -> Path:
    """Create (or reuse) .venv-openrlhf; returns its python."""
    if STAMP.exists() and VENV_PY.exists():
        return VENV_PY
    if not VENV_PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [
        str(VENV_PY),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "-q",
        "-c",
        str(REPO / "constraints.txt"),
    ]
    log = VENV / "install.log"
    with open(log, "w") as fh:
        for cmd in (pip + RUNTIME + ["-e", str(REPO)], pip + ["--no-deps", OPENRLHF]):
            if subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode != 0:
                raise RuntimeError(f"installing into {VENV} failed; see {log}")
    STAMP.touch()
    return VENV_PY


DRIVER = r'''
import asyncio, json, os, sys, types
from types import SimpleNamespace

cfg = json.load(open(sys.argv[1]))
for name in ("ray", "vllm", "openrlhf.trainer.ray.vllm_engine"):  # import-time placeholders only
    sys.modules[name] = types.ModuleType(name)
sys.modules["vllm"].SamplingParams = object
sys.modules["openrlhf.trainer.ray.vllm_engine"].batch_vllm_engine_call = None

from transformers import AutoTokenizer
from openrlhf.datasets.prompts_dataset import preprocess_data
from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
from openrlhf.utils.agent import SingleTurnAgentExecutor

tok = AutoTokenizer.from_pretrained(cfg["tokenizer"])


class Generated:
    """Stands in for the vLLM engine: returns the tokens of the response the test chose."""

    def __init__(self, text):
        self.text = text

    async def generate(self, token_ids, params, multi_modal_data=None):
        ids = tok(text=self.text + tok.eos_token, add_special_tokens=False)["input_ids"]
        out = SimpleNamespace(token_ids=ids, text=self.text, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[out])


def tensor_list(t):
    return t.flatten().tolist() if t is not None else None


async def run(remote_url):
    executor = SingleTurnAgentExecutor(remote_url.split(","))  # as train_ppo_ray.py splits the flag
    params = SimpleNamespace(max_tokens=256, logprobs=None)
    samples = [preprocess_data(row, None, "input", "label", tok.apply_chat_template) for row in cfg["rows"]]
    outs = await asyncio.gather(*[executor.execute(p, l, params, 1024, tok, Generated(r))
                                  for (p, l), r in zip(samples, cfg["responses"])])
    results = []
    for out in outs:
        exp = SamplesGenerator._process_response_into_experience(None, out, max_len=1024)
        results.append({"reward": out["reward"], "scores": out["scores"], "extra_logs": out["extra_logs"],
                        "exp_rewards": tensor_list(exp.rewards), "exp_scores": tensor_list(exp.scores),
                        "exp_info": {k: tensor_list(v) for k, v in exp.info.items()},
                        "query": tok.decode(out["observation_tokens"], skip_special_tokens=False),
                        "prompt": out["prompt"]})
    shards = None
    if not remote_url.endswith(".py"):  # one call with 5 queries: sharded across the two URLs
        q = [r["query"] for r in results[:5]]
        shards = await executor._fetch_rewards_via_http(q, [r["prompt"] for r in results[:5]],
                                                        [l for _, l in samples[:5]])
    return {"results": results, "shards": shards}


def text_in_extra_logs():
    """Why datarl's extra_logs hold numbers only: OpenRLHF tensorises every value."""
    out = {"observation_tokens": [1, 2, 3], "action_ranges": [(1, 3)], "rollout_log_probs": None,
           "prompt": "p", "label": "l", "reward": [0.0], "scores": [0.0], "extra_logs": {"error": ["bad label"]}}
    try:
        SamplesGenerator._process_response_into_experience(None, out, max_len=1024)
    except Exception as exc:
        return type(exc).__name__
    return None


print(json.dumps({"http": asyncio.run(run(cfg["urls"])), "hook": asyncio.run(run(cfg["hook"])),
                  "text_in_extra_logs": text_in_extra_logs()}))
'''


TOKEN = "openrlhf-test-token-0123456789"


def _start_server() -> tuple[subprocess.Popen, str]:
    """A server that requires a token; the URL returned carries it as OpenRLHF's client must (no header)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "datarl", "serve", "--port", "0", "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DATARL_SERVE_TOKEN": TOKEN},
    )
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise AssertionError(f"datarl serve did not start: {proc.stderr.read()}")
    return proc, f"{url}/{TOKEN}"


def _health(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url + "/health", timeout=30) as resp:
        return json.loads(resp.read())


@pytest.mark.integration
def test_openrlhf_remote_reward_client_against_datarl_serve(tmp_path):
    import datarl.integrations.openrlhf_reward as hook
    from datarl.integrations.openrlhf import openrlhf_rows
    from datarl.models.tokenizer import train_tokenizer
    from datarl.rewards.router import Router
    from datarl.synth import SynthConfig, build_suite

    python = build_venv()
    suite = build_suite(SynthConfig(train_per_task=3, pool_per_task=0, eval_per_task=0))["train"]
    records = [r for r in suite if r["task"] in ("math", "code", "ifeval")]
    tokenizer = train_tokenizer([r["prompt"] + " " + r["reference"] for r in suite], vocab_size=400)
    tokenizer.save_pretrained(tmp_path / "tok")
    cases = [(r, r["reference"]) for r in records] + [(r, WRONG[r["task"]]) for r in records]
    rows = openrlhf_rows([r for r, _ in cases])
    bad = {"input": records[0]["prompt"], "label": '{"task": "code", "tests": '}  # truncated label
    unrouted = {"input": "Describe a cat.", "label": json.dumps({"task": "general", "reference": "A cat."})}
    rows += [bad, unrouted]
    responses = [resp for _, resp in cases] + [records[0]["reference"], "A cat."]
    servers = [_start_server(), _start_server()]
    try:
        cfg = {
            "tokenizer": str(tmp_path / "tok"),
            "rows": rows,
            "responses": responses,
            "urls": ",".join(url + "/get_reward" for _, url in servers),
            "hook": hook.__file__,
        }
        (tmp_path / "cfg.json").write_text(json.dumps(cfg))
        (tmp_path / "driver.py").write_text(DRIVER)
        run = subprocess.run(
            [str(python), str(tmp_path / "driver.py"), str(tmp_path / "cfg.json")],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
            env={**os.environ, "DATARL_WORKERS": "1"},
        )
        assert run.returncode == 0, run.stderr[-4000:]
        got = json.loads(run.stdout.strip().splitlines()[-1])
        requests = [_health(url)["stats"]["requests"] for _, url in servers]
    finally:
        for proc, _ in servers:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=60) for proc, _ in servers]
    assert codes == [0, 0]

    router = Router()
    expected = [router.score(r, resp).score for r, resp in cases]
    assert expected[: len(records)] == [1.0] * len(records) and max(expected[len(records) :]) < 1.0
    n = len(cases)
    for mode in ("http", "hook"):
        results = got[mode]["results"]
        assert len(results) == n + 2
        for i, res in enumerate(results[:n]):  # per task, pass and fail: OpenRLHF sees our reward
            task = cases[i][0]["task"]
            assert res["reward"] == [expected[i]] and res["exp_rewards"] == [expected[i]], (mode, task, i)
            assert res["exp_scores"] == [expected[i]] and res["exp_info"]["reward"] == [expected[i]]
            assert res["exp_info"]["error"] == [0.0], (mode, i)
        for res in results[n:]:  # bad label, task without a source: a reward of 0, flagged, not None
            assert res["reward"] == [0.0] and res["exp_rewards"] == [0.0]
            assert res["extra_logs"]["error"] == [1.0] and res["exp_info"]["error"] == [1.0]
    # every one-query call went to one of the two servers, alternating (plus the sharded call: 2 requests)
    assert sum(requests) == n + 2 + 2 and abs(requests[0] - requests[1]) <= 1 and min(requests) > 0
    shards = got["http"]["shards"]
    assert [len(s["rewards"]) for s in shards] == [3, 2]  # ceil(5 / 2) per URL
    assert [x for s in shards for x in s["rewards"]] == expected[:5]
    assert {i["response_from"] for s in shards for i in s["reward_info"]} == {"prefix"}
    assert got["text_in_extra_logs"] == "ValueError"  # a string in extra_logs would break OpenRLHF's rollout


if __name__ == "__main__":
    print(build_venv())
