"""``datarl pipeline`` with micro models: every stage runs, finished stages are skipped on a rerun,
an interrupted stage is redone (not the ones before it), and bad configs fail before any work."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("torch")

from datarl.errors import ConfigError  # noqa: E402
from datarl.pipeline import STAGES, PipelineConfig, load_pipeline_config, run_pipeline  # noqa: E402
from datarl_testing import micro_pipeline_mapping, micro_suite_policy  # noqa: E402


@pytest.fixture(scope="module")
def micro_policy(tmp_path_factory):
    return micro_suite_policy(tmp_path_factory.mktemp("micro"))


def config(micro_policy, run_dir, **changes):
    return PipelineConfig(**micro_pipeline_mapping(micro_policy, run_dir, **changes))


def test_all_stages_then_a_rerun_skips_them_all(micro_policy, tmp_path):
    logs: list[str] = []
    cfg = config(micro_policy, tmp_path / "run")
    ledger = run_pipeline(cfg, log=logs.append)
    assert set(ledger) == set(STAGES) - {"sft"}  # a given policy: no SFT stage
    for path in (
        "suite/pool.jsonl",
        "pairs.jsonl",
        "bt/datarl_bt.json",
        "judge/datarl_genrm.json",
        "data/selected.jsonl",
        "train/summary.json",
        "train/final_eval.json",
        "train/report.html",
        "train/report.png",
        "train/selection/report.json",
    ):
        assert (tmp_path / "run" / path).exists(), path
    judge_meta = json.load(open(tmp_path / "run" / "judge" / "datarl_genrm.json"))
    assert judge_meta["heldout"]["gt"]["items"] == 4  # the judge's held-out table, from eval prompts
    assert "SFT responses to eval math prompts vs rtv.math" in (tmp_path / "run" / "train" / "report.html").read_text()
    general_refs = [
        json.loads(line)
        for line in open(tmp_path / "run" / "data" / "eval.jsonl")
        if json.loads(line)["task"] == "general"
    ]
    assert general_refs and all("reference_info" in r for r in general_refs)
    selected = [json.loads(line) for line in open(tmp_path / "run" / "data" / "selected.jsonl")]
    assert sum("prepo" in r for r in selected) > 0 and len(selected) > sum("prepo" in r for r in selected)
    logs.clear()
    run_pipeline(cfg, log=logs.append)
    assert [m for m in logs if m.endswith("running")] == []
    assert sum(m.endswith("up to date, skipped") for m in logs) == len(STAGES) - 1


def test_an_interrupted_stage_resumes_there_without_redoing_earlier_ones(micro_policy, tmp_path, monkeypatch):
    import datarl.pipeline.stages as stages

    cfg = config(micro_policy, tmp_path / "run")
    real = stages.stage_references

    def interrupted(cfg_, ledger):
        fn, section, inputs = real(cfg_, ledger)

        def boom():
            raise KeyboardInterrupt  # as if Ctrl-C arrived in the middle of the stage

        return boom, section, inputs

    monkeypatch.setitem(stages.STAGES, "references", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg, log=lambda m: None)
    monkeypatch.setitem(stages.STAGES, "references", real)
    logs: list[str] = []
    run_pipeline(cfg, log=logs.append)
    ran = [m.split("]")[0][1:] for m in logs if m.endswith("running")]
    skipped = [m.split("]")[0][1:] for m in logs if m.endswith("skipped")]
    assert skipped == ["synth", "pairs", "bt", "genrm"]
    assert ran == ["references", "pool_scores", "select", "train", "eval", "report"]


def test_changing_a_stage_config_redoes_it_and_what_follows(micro_policy, tmp_path):
    cfg = config(micro_policy, tmp_path / "run")
    run_pipeline(cfg, log=lambda m: None, stop_before="train")
    logs: list[str] = []
    changed = config(
        micro_policy, tmp_path / "run", select={"fraction": 1.0, "samples_per_prompt": 2, "max_new_tokens": 12}
    )
    run_pipeline(changed, log=logs.append, stop_before="eval")
    ran = [m.split("]")[0][1:] for m in logs if m.endswith("running")]
    assert ran == ["select", "train"]


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"select": {"domains": ["poetry"]}}, "no prompts of domain 'poetry'"),
        ({"select": {"fraction": 0.01}}, "the selection is empty"),
        ({"policy": "/no/such/model"}, "no such model directory"),
        ({"select": {"strategy": "best"}}, "strategy"),
        (
            {"train": {"ppo": {"minibatch_size": 3, "prompts_per_step": 4, "samples_per_prompt": 2}}},
            "not divisible by minibatch_size",
        ),
        ({"pairs": {"per_prompt": 3}}, "unknown option"),
        ({"genrm": {"stepz": 3}}, "genrm .besides gt_samples, heldout and base.: unknown option"),
        ({"genrm": {"gt_share": 1.5}}, "gt_share must be in .0, 1."),
        ({"genrm": {"order_consistency": 1.0}}, "order_consistency > 0 needs paired_orders"),
        ({"genrm": {"heldout": {"samples_per_prompt": 1}}}, "samples_per_prompt"),
        ({"genrm": {"gt_samples": -1}}, "genrm.gt_samples"),
        ({"genrm": {"base": ""}}, "genrm.base: a model"),
        ({"genrm": {"base": "/no/such/judge"}}, "genrm.base: /no/such/judge: no such model directory"),
        ({"reward": {"router": {"math": "nope"}}}, "unknown source"),
    ],
)
def test_bad_configs_fail_before_any_stage(micro_policy, tmp_path, changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        run_pipeline(config(micro_policy, tmp_path / "run", **changes), log=lambda m: None)
    assert not (tmp_path / "run" / "stages.json").exists() and not (tmp_path / "run" / "suite").exists()


def test_user_data_needs_a_policy_and_pairs(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(json.dumps({"data": {"train": "t.jsonl", "pool": "p.jsonl", "eval": "e.jsonl"}}))
    with pytest.raises(ConfigError, match="set policy:"):
        load_pipeline_config(str(path))
    path.write_text(json.dumps({"unknown": 1}))
    with pytest.raises(ConfigError, match="unknown key"):
        load_pipeline_config(str(path))


def test_shipped_configs_load(tmp_path):
    here = os.path.join(os.path.dirname(__file__), "..", "examples")
    demo = load_pipeline_config(os.path.join(here, "demo.yaml"), str(tmp_path / "demo"))
    assert demo.embedded and demo.policy == "tiny"
    user = load_pipeline_config(os.path.join(here, "pipeline_user.yaml"), str(tmp_path / "user"))
    assert not user.embedded and user.policy == "smollm2-135m"
    # The pre-trained judge's recipe is a genrm: section the pipeline's checks accept in place of the demo's.
    from datarl.config import load_config
    from datarl.pipeline.checks import check
    from datarl.pipeline.config import pipeline_config_from_mapping

    recipe = load_config(os.path.join(here, "genrm_smollm2.yaml"))
    mapping = {**load_config(os.path.join(here, "demo.yaml")), "genrm": recipe["genrm"]}
    cfg = pipeline_config_from_mapping(mapping, base_dir=here, where="demo + recipe", run_dir=str(tmp_path / "r"))
    check(cfg)
    assert cfg.genrm["base"] == "smollm2-135m" and cfg.genrm["paired_orders"] is True


def test_select_none_trains_on_the_original_prompts_only(micro_policy, tmp_path):
    cfg = config(micro_policy, tmp_path / "run", select={"strategy": "none"})
    run_pipeline(cfg, log=lambda m: None, stop_before="train")
    selected = (tmp_path / "run" / "data" / "selected.jsonl").read_text()
    assert selected == (tmp_path / "run" / "data" / "train.jsonl").read_text()
    assert not (tmp_path / "run" / "data" / "selected.jsonl.scores.jsonl").exists()  # the pool was not sampled


def test_genrm_base_is_the_judge_s_own_model_not_a_training_option(micro_policy, tmp_path):
    from datarl.pipeline.stages import judge_base, judge_options

    cfg = config(micro_policy, tmp_path / "run", genrm={"steps": 3, "base": micro_policy, "gt_samples": 2})
    opts, _, gt_samples = judge_options(cfg)
    assert "base" not in opts and opts["steps"] == 3 and gt_samples == 2
    assert judge_base(cfg) == micro_policy
    assert judge_base(config(micro_policy, tmp_path / "run", genrm={"steps": 3})) is None


def test_the_genrm_stage_trains_the_judge_from_genrm_base(micro_policy, tmp_path):
    import shutil

    other = str(tmp_path / "judge_base")
    shutil.copytree(micro_policy, other)  # another directory: the judge's meta must name it, not the policy
    cfg = config(micro_policy, tmp_path / "run", genrm={**config(micro_policy, tmp_path / "x").genrm, "base": other})
    run_pipeline(cfg, log=lambda m: None, stop_before="references")
    meta = json.loads((tmp_path / "run" / "judge" / "datarl_genrm.json").read_text())
    assert meta["base"] == other and os.path.samefile(meta["sampled_from"], micro_policy)
