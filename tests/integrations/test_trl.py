"""TRL reward callables: TRL's calling convention, None for rows a source does not apply to, scores equal
to the router's, async variants. The integration test at the bottom trains TRL's own GRPOTrainer for 2
steps on a micro policy with these callables, in ``.venv-trl`` (``make test-integration``)."""

from __future__ import annotations

import asyncio
import inspect
import json
import pickle
import subprocess
import sys

import pytest

from datarl.integrations import trl as dt
from datarl.rewards import genrm
from datarl.rewards.router import Router, RouterConfig

WRONG = "I do not know."


def trl_call(fn, rows, completions, **extra):
    """Call ``fn`` the way GRPOTrainer._calculate_rewards does: every column but prompt, repeated per
    completion, plus trainer_state/log_extra/log_metric."""
    columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
    columns.update(trainer_state=None, log_extra=lambda *a: None, log_metric=lambda *a: None, **extra)
    call = fn(prompts=[r["prompt"] for r in rows], completions=completions, completion_ids=None, **columns)
    return asyncio.run(call) if inspect.iscoroutine(call) else call


@pytest.fixture(scope="module")
def batch(suite):
    """Each record twice: once with its reference (passes its gold check), once with a wrong answer."""
    rows = dt.trl_rows(suite) * 2
    texts = [r["reference"] for r in suite] + [WRONG] * len(suite)
    return rows, texts, suite * 2


@pytest.mark.parametrize(
    "fn, source, task",
    [
        (dt.rtv_math, "rtv.math", "math"),
        (dt.rtv_code, "rtv.code", "code"),
        (dt.rtv_ifeval, "rtv.ifeval", "ifeval"),
    ],
)
def test_verifier_callables_score_their_task_and_skip_the_rest(batch, fn, source, task):
    rows, texts, recs = batch
    assert fn.__name__ == source.replace(".", "_")
    router = Router()
    for completions in (texts, [[{"role": "assistant", "content": t}] for t in texts]):
        got = trl_call(fn, rows, completions)
        assert len(got) == len(rows)
        for value, rec, text in zip(got, recs, texts):
            if rec["task"] == task:
                assert value == router.score(rec, text).score
            else:
                assert value is None
        assert sorted(v for v in got if v is not None) == [0.0] * 5 + [1.0] * 5


def test_routed_callable_follows_the_router_table(batch):
    rows, texts, recs = batch
    keep = [i for i, r in enumerate(recs) if r["task"] != "general"]
    got = trl_call(dt.datarl_reward, [rows[i] for i in keep], [texts[i] for i in keep])
    router = Router()
    assert dt.datarl_reward.__name__ == "datarl_reward"
    assert got == [router.score(recs[i], texts[i]).score for i in keep]
    # general -> genrm.bon in the default table: with a judge it scores like the router...
    judge = FakeJudge()
    judged = dt.reward_func(None, config={"sources": {"genrm.bon": {"judge": judge}}})
    with_judge = Router(RouterConfig(options={"genrm.bon": {"judge": judge}}))
    assert trl_call(judged, rows, texts) == [r.score for r in with_judge.score_many(recs, texts)]
    genrm.clear_judge_cache()


def test_a_learned_source_without_its_model_is_a_config_error_not_a_silent_zero(batch):
    rows, texts, recs = batch
    # ...and without one, a general row stops the call with how to fix it, instead of training on zeros
    for fn in (dt.datarl_reward, dt.genrm_bon):
        with pytest.raises(
            ValueError,
            match=r"row \d+: task 'general' is routed to genrm.bon, which needs a "
            r"model: set sources.genrm.bon.judge",
        ):
            trl_call(fn, rows, texts)
    assert inspect.iscoroutinefunction(dt.genrm_bon_async.__call__)
    with pytest.raises(ValueError, match="sources.genrm.bon.judge"):
        trl_call(dt.genrm_bon_async, rows, texts)


def test_config_from_environment(batch, tmp_path, monkeypatch):
    rows, texts, recs = batch
    cfg = tmp_path / "run.yaml"
    cfg.write_text("reward:\n  router: {math: none, general: gold.rubric}\n")
    monkeypatch.setenv(dt.CONFIG_ENV, str(cfg))
    fn = dt.reward_func()  # a fresh one reads the variable at its first call
    got = trl_call(fn, rows, texts)
    assert all(v is None for v, r in zip(got, recs) if r["task"] == "math")
    assert all(v is not None for v, r in zip(got, recs) if r["task"] in ("code", "ifeval", "general"))


def test_plain_dataset_columns_work_without_the_record_column(suite):
    math = [r for r in suite if r["task"] == "math"]
    rows = [{"prompt": r["prompt"], "task": r["task"], "ground_truth": r["ground_truth"]} for r in math]
    rows.append({"prompt": "not ours", "task": None, "ground_truth": "3"})  # a row of another dataset
    got = trl_call(dt.rtv_math, rows, [r["reference"] for r in math] + ["#### 3"])
    assert got == [1.0] * len(math) + [None]


def test_broken_records_score_zero_and_never_raise(suite):
    rec = next(r for r in suite if r["task"] == "math")
    rows = [
        {"prompt": "p", dt.RECORD_COLUMN: "{not json"},
        {"prompt": "p", dt.RECORD_COLUMN: json.dumps({"task": "math", "prompt": "p"})},
        {"prompt": "p", dt.RECORD_COLUMN: json.dumps({"task": "chess", "prompt": "p"})},
        {"prompt": "p", dt.RECORD_COLUMN: json.dumps(rec)},
    ]
    completions = [
        None,
        17,
        [{"role": "assistant", "content": [{"type": "text", "text": rec["reference"]}]}],
        [{"role": "assistant", "content": rec["reference"]}],
    ]
    assert trl_call(dt.datarl_reward, rows, completions) == [0.0, 0.0, 0.0, 1.0]
    weird = ["\\boxed{" * 300, "x" * 100_000, "", b"\xff"]
    assert all(v in (0.0, 1.0) for v in trl_call(dt.rtv_math, [rows[3]] * 4, weird))


def test_completion_text():
    assert dt.completion_text("abc") == "abc"
    assert (
        dt.completion_text(
            [
                {"role": "assistant", "content": "a"},
                {"role": "tool", "content": "t"},
                {"role": "assistant", "content": "final"},
            ]
        )
        == "final"
    )
    assert (
        dt.completion_text(
            [{"role": "assistant", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}]
        )
        == "xy"
    )
    assert dt.completion_text(None) == "" and dt.completion_text([]) == ""


class FakeJudge:
    """A deterministic judge backend (datarl's JudgeBackend protocol): P("A") grows with answer A's length."""

    name, gt_format = "fake", "#### {ground_truth}"

    def verdict_probs(self, prompts):
        answers_a = [p.split("[Answer A]\n", 1)[1].split("\n[Answer B]\n", 1)[0] for p in prompts]
        return [(min(0.95, 0.05 + len(a) / 200), {}) for a in answers_a]


@pytest.mark.parametrize("source, task", [("genrm.bon", "general"), ("genrm.gt", "math")])
def test_async_judge_callables_match_the_router(batch, source, task):
    rows, texts, recs = batch
    judge = FakeJudge()
    sync_fn = dt.reward_func(source, options={"judge": judge})
    async_fn = dt.reward_func(source, options={"judge": judge}, asynchronous=True)
    assert inspect.iscoroutinefunction(async_fn.__call__) and not inspect.iscoroutinefunction(sync_fn.__call__)
    assert async_fn.__name__ == sync_fn.__name__ == source.replace(".", "_")
    router = Router(RouterConfig(table={task: source}, options={source: {"judge": judge}}))
    got = trl_call(async_fn, rows, texts)
    assert got == trl_call(sync_fn, rows, texts)
    mine = [i for i, r in enumerate(recs) if r["task"] == task]
    want = router.score_many([recs[i] for i in mine], [texts[i] for i in mine])
    assert [v for v in got if v is not None] == [w.score for w in want]
    assert all((v is None) == (r["task"] != task) for v, r in zip(got, recs))
    assert len({round(v, 6) for v in got if v is not None}) > 1  # the judge sees the texts: not a constant
    genrm.clear_judge_cache()


def test_worker_processes_give_the_same_scores(batch):
    rows, texts, recs = batch
    keep = [i for i, r in enumerate(recs) if r["task"] != "general"]
    rows, texts = [rows[i] for i in keep], [texts[i] for i in keep]
    pooled = dt.reward_func(workers=2, timeout_s=20)
    assert trl_call(pooled, rows, texts) == trl_call(dt.datarl_reward, rows, texts)


def test_callables_pickle_and_validate_arguments(batch):
    rows, texts, _ = batch
    trl_call(dt.rtv_code, rows[:4], texts[:4])  # builds its router
    clone = pickle.loads(pickle.dumps(dt.rtv_code))
    assert clone.__name__ == "rtv_code" and trl_call(clone, rows, texts) == trl_call(dt.rtv_code, rows, texts)
    with pytest.raises(ValueError, match="unknown source"):
        dt.reward_func("rtv.maths")
    with pytest.raises(ValueError, match="give tasks="):
        dt.reward_func("rtv.math", tasks=())
    custom = dt.reward_func("bt", tasks=("general", "math"), name="bt_all")
    assert custom.__name__ == "bt_all" and custom.tasks == ("general", "math")


# --- against TRL's own GRPOTrainer (its own venv) --------------------------------------------------


@pytest.mark.integration
def test_grpo_trainer_two_steps_with_datarl_rewards(tmp_path, run_framework_check):
    res = run_framework_check("trl", "trl_check.py", CUDA_VISIBLE_DEVICES="")
    assert res["trl_version"].startswith("1.") and res["global_step"] == 2 and res["params_changed"]
    names = {"rtv_math", "rtv_code", "rtv_ifeval", "datarl_reward", "genrm_bon"}
    assert {c["name"] for c in res["calls"]} == names and len(res["calls"]) == 2 * len(names)
    for name in names:
        assert f"rewards/{name}/mean" in res["logged_keys"]
    assert {c["name"] for c in res["calls"] if c["async"]} == {"genrm_bon"}
    # `datarl score` (this venv's CLI) on the completions TRL generated, row by row
    score = subprocess.run(
        [
            sys.executable,
            "-m",
            "datarl.cli",
            "score",
            str(tmp_path / "completions.jsonl"),
            "-o",
            str(tmp_path / "scored.jsonl"),
            "--workers",
            "2",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert score.returncode == 0 and not (tmp_path / "scored.jsonl.errors.jsonl").exists(), score.stderr
    scored = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    by_key = {(s["call"], s["row"]): s for s in scored}
    judge = res["judge"]
    for call in res["calls"]:
        assert {"task", "id", dt.RECORD_COLUMN, "trainer_state", "log_extra", "log_metric"} <= set(call["columns"])
        assert "prompt" not in call["columns"] and call["chat_completions"]
        for row, (value, task) in enumerate(zip(call["values"], call["tasks"])):
            applies = {
                "rtv_math": task == "math",
                "rtv_code": task == "code",
                "rtv_ifeval": task == "ifeval",
                "datarl_reward": True,
                "genrm_bon": task == "general",
            }[call["name"]]
            if not applies:
                assert value is None, (call["name"], task)
            elif task == "general":  # genrm_bon, and datarl_reward's general rows (routed to genrm.bon)
                assert value == pytest.approx(judge[str(call["index"])][str(row)], abs=1e-9)
            else:
                assert value == by_key[(call["index"], row)]["reward"], (call["name"], task)
    assert {t for c in res["calls"] for t in c["tasks"]} == {"math", "code", "ifeval", "general"}
