"""The verl adapter: the parquet layout verl's RLHFDataset reads, the curriculum as row order, and
``compute_score`` against the router. The integration test at the bottom runs verl's own dataset, sampler,
config composition and reward loop (2 Ray workers) in ``.venv-verl`` (``make test-integration``)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datarl.cli import main as cli_main
from datarl.integrations import verl as dv
from datarl.rewards.router import Router, RouterConfig
from datarl.select.curriculum import CurriculumConfig, CurriculumSampler, paper_default

WRONG = "I do not know."


@pytest.fixture(scope="module")
def exported(suite, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("verl") / "train.parquet")
    summary = dv.export_verl(suite, path)
    return path, summary, pq.read_table(path)


def test_parquet_columns_and_types(exported, suite):
    path, summary, table = exported
    s = pa.string()
    assert table.schema.names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert table.schema.field("prompt").type == pa.list_(pa.struct([("role", s), ("content", s)]))
    assert table.schema.field("reward_model").type == pa.struct([("style", s), ("ground_truth", s)])
    assert table.schema.field("extra_info").type == pa.struct(
        [("id", s), ("task", s), ("domain", s), ("index", pa.int64()), ("record", s)]
    )
    assert summary.rows == len(suite) == table.num_rows and summary.by_task == {
        t: 5 for t in ("code", "general", "ifeval", "math")
    }
    assert not any(p.name.endswith(".tmp") for p in Path(path).parent.iterdir())


def test_rows_carry_the_records(exported, suite):
    _, _, table = exported
    for index, (row, rec) in enumerate(zip(table.to_pylist(), suite)):
        assert row["data_source"] == f"datarl/{rec['task']}" and row["ability"] == rec["task"]
        assert row["prompt"] == [{"role": "user", "content": rec["prompt"]}]
        assert tuple(row["extra_info"]) == dv.EXTRA_INFO_KEYS
        assert row["extra_info"]["index"] == index and row["extra_info"]["id"] == rec["id"]
        assert json.loads(row["extra_info"]["record"]) == rec
        gt = row["reward_model"]["ground_truth"]
        assert isinstance(gt, str)
        expected = {
            "math": lambda r: r["ground_truth"],
            "general": lambda r: r["reference"],
            "code": lambda r: json.dumps({"tests": r["tests"]}, sort_keys=True),
            "ifeval": lambda r: json.dumps(
                {"instruction_id_list": r["instruction_id_list"], "kwargs": r["kwargs"]}, sort_keys=True
            ),
        }[rec["task"]](rec)
        assert gt == expected
        assert row["reward_model"]["style"] == ("model" if rec["task"] == "general" else "rule")


def test_chat_prompts_are_kept_and_response_fields_dropped():
    rec = {
        "id": "c1",
        "task": "math",
        "ground_truth": "2",
        "response": "old",
        "reward": 1.0,
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"}],
    }
    row = dv.verl_rows([rec])[0]
    assert row["prompt"] == rec["prompt"]
    assert set(json.loads(row["extra_info"]["record"])) == {"id", "task", "domain", "ground_truth", "prompt"}


def test_style_follows_the_router_table(suite):
    router = Router(RouterConfig.from_mapping({"router": {"math": "genrm.gt", "general": "genrm.bon"}}))
    styles = {r["ability"]: r["reward_model"]["style"] for r in dv.verl_rows(suite, router=router)}
    assert styles == {"math": "model", "general": "model", "code": "rule", "ifeval": "rule"}


def test_curriculum_row_order_is_the_samplers(suite, tmp_path):
    cfg, steps, k = paper_default(8), 8, 4
    path = str(tmp_path / "c.parquet")
    summary = dv.export_verl(suite, path, curriculum=cfg, steps=steps, prompts_per_step=k, seed=3)
    batches = CurriculumSampler([r["task"] for r in suite], cfg, k, seed=3).ordered(steps)
    rows = pq.read_table(path).to_pylist()
    assert [r["extra_info"]["id"] for r in rows] == [suite[i]["id"] for b in batches for i in b]
    assert [r["extra_info"]["index"] for r in rows] == list(range(steps * k))
    assert summary.steps == steps and summary.prompts_per_step == k and summary.rows == steps * k
    assert {r["ability"] for r in rows[:k]} == {"code"}  # the paper's first phase: code only


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"steps": 3}, "only apply with a curriculum"),
        ({"curriculum": CurriculumConfig(), "steps": 3}, "prompts_per_step"),
    ],
)
def test_export_option_errors(suite, kwargs, fragment):
    with pytest.raises(dv.VerlExportError, match=fragment):
        dv.verl_rows(suite, **kwargs)
    with pytest.raises(dv.VerlExportError, match="ground_truth"):
        dv.verl_rows([{"task": "math", "prompt": "p"}])


def _score(row, response, **kw):
    return dv.compute_score(
        row["data_source"], response, row["reward_model"]["ground_truth"], dict(row["extra_info"]), **kw
    )


def _stable(info):
    return {k: v for k, v in info.items() if "seconds" not in k}  # timings differ run to run


def test_compute_score_equals_the_router_for_every_task(exported, suite):
    router = Router()
    for row, rec in zip(exported[2].to_pylist(), suite):
        if rec["task"] == "general":  # the default table sends it to genrm.bon, which has no judge here
            with pytest.raises(
                ValueError, match="routed to genrm.bon, which needs a model: set sources.genrm.bon.judge"
            ):
                _score(row, rec["reference"])
            continue
        for response in (rec["reference"], WRONG):
            got, want = _score(row, response), router.score(rec, response)
            assert tuple(got) == dv.SCORE_KEYS
            assert (got["score"], got["reward_source"], got["failure"]) == (
                want.score,
                want.source,
                str(want.info.get("failure") or ""),
            )
            assert _stable(json.loads(got["reward_info"])) == _stable(json.loads(json.dumps(want.info, default=str)))
            assert got["record_id"] == rec["id"] and got["task"] == rec["task"]
        assert _score(row, rec["reference"])["score"] == 1.0  # the suite's references pass their checks


def test_compute_score_reads_the_router_config(exported, suite, tmp_path, monkeypatch):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("reward:\n  router: {math: none}\n  sources:\n    rtv.ifeval: {mode: loose}\n")
    router = Router(
        RouterConfig.from_mapping({"router": {"math": "none"}, "sources": {"rtv.ifeval": {"mode": "loose"}}})
    )
    row, rec = next((r, s) for r, s in zip(exported[2].to_pylist(), suite) if s["task"] == "math")
    assert _score(row, rec["reference"])["score"] == 1.0
    got = _score(row, rec["reference"], datarl_config=str(cfg))
    assert (
        (got["score"], got["failure"])
        == (0.0, "no_source")
        == (router.score(rec, rec["reference"]).score, router.score(rec, rec["reference"]).failure)
    )
    for r, s in zip(exported[2].to_pylist(), suite):
        if s["task"] == "ifeval":
            loose = _score(r, s["reference"], datarl_config=str(cfg))
            assert json.loads(loose["reward_info"])["mode"] == router.score(s, s["reference"]).info["mode"] == "loose"
    monkeypatch.setenv(dv.CONFIG_ENV, str(cfg))
    assert _score(row, rec["reference"])["failure"] == "no_source"
    monkeypatch.setenv(dv.CONFIG_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(Exception, match="not found"):  # a broken config stops the run at once, it is not a 0
        _score(row, rec["reference"])


@pytest.mark.parametrize(
    "data_source, ground_truth, extra_info, fragment",
    [
        ("openai/gsm8k", "18", {"index": 0}, "not 'datarl/<task>'"),
        ("datarl/math", "18", {"record": "{not json"}, "not valid JSON"),
        ("datarl/math", "18", {"record": json.dumps({"task": "math", "prompt": "p"})}, "ground_truth"),
        ("datarl/code", "not json", None, "JSON text"),
        ("datarl/chess", "1", "not a dict", "unknown task"),
        (None, None, None, "data_source"),
    ],
)
def test_bad_rows_score_zero_with_an_error(data_source, ground_truth, extra_info, fragment):
    got = dv.compute_score(data_source, "#### 18", ground_truth, extra_info)
    assert tuple(got) == dv.SCORE_KEYS
    assert got["score"] == 0.0 and got["failure"] == "bad_row" and fragment in got["error"]


@pytest.mark.parametrize("response", [None, b"\xff\xfe", 18, "", "x" * 200_000, "\\boxed{" * 500])
def test_model_output_never_raises(exported, response):
    row = exported[2].to_pylist()[2]  # a math row
    got = _score(row, response)
    assert tuple(got) == dv.SCORE_KEYS and 0.0 <= got["score"] <= 1.0


def test_rows_without_a_record_are_rebuilt_from_ground_truth(exported, suite):
    router = Router()
    for row, rec in zip(exported[2].to_pylist(), suite):
        if rec["task"] == "general":
            continue
        info = {"id": rec["id"], "index": 0}  # extra_info as a hand-made verl dataset would have it
        got = dv.compute_score(row["data_source"], rec["reference"], row["reward_model"]["ground_truth"], info)
        assert got["score"] == router.score(rec, rec["reference"]).score == 1.0


def test_loaded_by_file_path_as_verl_does(exported, suite):
    # verl's load_extern_object: spec_from_file_location under a made-up name, not put in sys.modules
    spec = importlib.util.spec_from_file_location("custom_module_123", dv.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "custom_module_123" not in sys.modules
    row, rec = exported[2].to_pylist()[2], suite[2]
    assert (
        module.compute_score(
            row["data_source"], rec["reference"], row["reward_model"]["ground_truth"], row["extra_info"]
        )["score"]
        == 1.0
    )


def test_cli_export_with_run_config(suite, tmp_path, capsys):
    src = tmp_path / "train.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in suite))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "curriculum: {phases: [{until_step: 2, tasks: {math: 1}}, {tasks: natural}]}\n"
        "ppo: {steps: 4, prompts_per_step: 3}\nseed: 5\n"
    )
    out = tmp_path / "out.parquet"
    assert cli_main(["export-verl", str(src), "-o", str(out), "--config", str(cfg)]) == 0
    printed = capsys.readouterr().out
    assert "12 rows" in printed and "data.shuffle=False" in printed and "data.train_batch_size=3" in printed
    assert "reward.custom_reward_function.path=" in printed and "reward_kwargs.datarl_config=" in printed
    phases = [{"until_step": 2, "tasks": {"math": 1}}, {"tasks": "natural"}]
    curriculum = CurriculumConfig.from_value({"phases": phases}, 4)
    batches = CurriculumSampler([r["task"] for r in suite], curriculum, 3, seed=5).ordered(4)
    ids = [r["extra_info"]["id"] for r in pq.read_table(out).to_pylist()]
    assert ids == [suite[i]["id"] for b in batches for i in b]
    assert cli_main(["export-verl", str(src), "-o", str(out)]) == 0 and pq.read_table(out).num_rows == len(suite)


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--steps", "4"], "give both --steps and --prompts-per-step"),
        (["--steps", "4", "--prompts-per-step", "2", "--config", "BAD"], "unknown task"),
    ],
)
def test_cli_errors_are_one_line(suite, tmp_path, capsys, extra, fragment):
    src = tmp_path / "train.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in suite) + '{"task": "math", "prompt": "p"}\n')
    bad = tmp_path / "bad.yaml"
    bad.write_text("curriculum: {phases: [{tasks: {chess: 1}}]}\n")
    extra = [str(bad) if a == "BAD" else a for a in extra]
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in suite))
    assert cli_main(["export-verl", str(good), "-o", str(tmp_path / "o.parquet"), *extra]) == 2
    assert fragment in capsys.readouterr().err
    assert cli_main(["export-verl", str(src), "-o", str(tmp_path / "o.parquet")]) == 2
    assert "1 bad line(s), first:" in capsys.readouterr().err


# --- against verl's own code (its own venv) --------------------------------------------------------


@pytest.mark.integration
def test_verl_dataset_sampler_config_and_reward_loop(tmp_path, run_framework_check):
    res = run_framework_check("verl", "verl_check.py", RAY_USAGE_STATS_ENABLED="0")
    assert res["verl_version"].startswith("0.9")
    assert res["exported_ids"] and res["loader_ids"] == res["exported_ids"]  # verl's order is ours
    assert res["loader_batches"] == res["steps"] and res["batch_size"] == res["prompts_per_step"]
    assert res["legacy_key_custom_fn"] is None and res["custom_fn_loaded"] and res["pkg_path_loads"]
    assert res["total_training_steps"] == res["steps"]  # trainer.total_epochs=1: the curriculum is not replayed
    assert res["num_workers"] == 2
    assert res["styles"] == [["code", "rule"], ["general", "model"], ["ifeval", "rule"], ["math", "rule"]]
    router = Router(RouterConfig.from_mapping(res["router_config"]))
    for run in res["runs"]:  # the mixed batch in two orders
        assert run["reward_extra_keys"] == list(dv.SCORE_KEYS)
        assert all(n == len(run["rows"]) for n in run["extra_lengths"].values())  # no missing columns
        tasks = set()
        for row in run["rows"]:
            rec = json.loads(row["record"])
            tasks.add(rec["task"])
            want = router.score(rec, row["response"])
            assert row["decoded"] == row["response"]
            assert row["verl_score"] == pytest.approx(want.score, abs=1e-5)
            assert row["extra"]["reward_source"] == want.source and row["extra"]["record_id"] == rec["id"]
        assert tasks == {"math", "code", "ifeval", "general"}
        rule = [r["verl_score"] for r in run["rows"] if r["extra"]["reward_source"].startswith("rtv.")]
        model = [r["verl_score"] for r in run["rows"] if r["extra"]["reward_source"] == "bt"]
        assert set(rule) == {0.0, 1.0} and len(model) == 3 and all(0.0 < s < 1.0 for s in model)
    first, second = ({r["key"]: r["verl_score"] for r in run["rows"]} for run in res["runs"])
    assert first.keys() == second.keys() and all(first[k] == pytest.approx(second[k], abs=1e-6) for k in first)
