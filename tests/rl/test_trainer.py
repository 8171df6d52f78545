"""``datarl train`` on a micro policy: it trains, logs, evaluates, checkpoints, refuses bad configs,
and a run killed with SIGKILL resumes to the same parameters as an uninterrupted one."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")

from datarl.config import ConfigError  # noqa: E402
from datarl.models.tiny import MICRO, build_tiny_policy  # noqa: E402
from datarl.rl.config import TrainConfig  # noqa: E402
from datarl.rl.trainer import train  # noqa: E402
from datarl.synth import SynthConfig, build_suite  # noqa: E402
from datarl_testing import read_jsonl  # noqa: E402

PPO = {
    "steps": 3,
    "prompts_per_step": 4,
    "samples_per_prompt": 2,
    "minibatch_size": 4,
    "ppo_epochs": 2,
    "max_new_tokens": 12,
    "actor_lr": 1e-3,
    "reward_shift": -0.5,
    "cutoff_invalid": False,  # an untrained micro policy never ends a response: score what it wrote
}  # a micro policy scores 0: shift for signal
EVAL = {"every": 2, "per_task": 2, "diversity_prompts": 1, "diversity_samples": 2, "max_new_tokens": 12}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ppo")
    suite = build_suite(
        SynthConfig(train_per_task=6, pool_per_task=0, eval_per_task=2, tasks=("math", "code", "ifeval"))
    )
    for split in ("train", "eval"):
        with open(root / f"{split}.jsonl", "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in suite[split])
    with open(root / "general.jsonl", "w") as fh:
        general = build_suite(SynthConfig(train_per_task=2, pool_per_task=0, eval_per_task=0, tasks=("general",)))
        fh.writelines(json.dumps(r) + "\n" for r in general["train"] + suite["train"])
    texts = [str(r["prompt"]) + " " + str(r["reference"]) for r in suite["train"]]
    policy = build_tiny_policy(texts, MICRO, seed=0)
    policy.model.save_pretrained(root / "policy")
    policy.tokenizer.save_pretrained(root / "policy")
    return root


def config(world, run_dir, **changes):
    data = {
        "policy": str(world / "policy"),
        "data": {"train": str(world / "train.jsonl"), "eval": str(world / "eval.jsonl")},
        "ppo": dict(PPO),
        "eval": dict(EVAL),
        "run_dir": str(run_dir),
        "save_every": 1,
        "workers": 1,
        "threads": 1,
        "curriculum": "paper",
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def params(directory):
    from safetensors.torch import load_file

    return load_file(os.path.join(directory, "model.safetensors"))


def test_train_changes_the_policy_and_writes_the_run_directory(world, tmp_path):
    run = tmp_path / "run"
    before = params(world / "policy")
    result = train(TrainConfig.from_mapping(config(world, run)), log=lambda m: None)
    assert result.steps == 3
    after = params(run / "checkpoints" / "step-000003" / "policy")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2, "PPO updated too few tensors"
    metrics = read_jsonl(run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1, 2]
    for key in (
        "reward/mean",
        "ppo/kl",
        "ppo/kl_coef",
        "ppo/entropy",
        "ppo/clipfrac",
        "ppo/value_loss",
        "ppo/policy_loss",
        "response/length",
        "response/cut_off",
        "curriculum/phase",
        "perf/step_s",
        "perf/tokens_per_s",
    ):
        assert all(key in m for m in metrics), key
    assert metrics[0]["curriculum/realised/code"] == 1.0  # the paper's curriculum starts with code only
    assert any(k.startswith("reward/source/rtv.code") for k in metrics[0])
    evals = read_jsonl(run / "eval.jsonl")
    assert [e["step"] for e in evals] == [0, 2, 3]
    for task in ("math", "code", "ifeval"):
        assert 0.0 <= evals[0][f"gold/{task}"] <= 1.0 and evals[0][f"gold/{task}/n"] == 2
        assert f"diversity/{task}/max_edit" in evals[-1]
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["before"]) == {"math", "code", "ifeval"} and summary["steps"] == 3
    # Every evaluated response is kept with its gold score, and the gains are paired over the same prompts.
    first, last = (read_jsonl(run / "eval" / f"step_{s:06d}.jsonl") for s in (0, 3))
    assert [it["index"] for it in first] == list(range(6)) and all(isinstance(it["response"], str) for it in last)
    for task in ("math", "code", "ifeval"):
        diffs = [b["gold"] - a["gold"] for a, b in zip(first, last) if a["task"] == task]
        assert evals[-1][f"gain/{task}"] == pytest.approx(sum(diffs) / len(diffs))
        assert evals[-1][f"gain/{task}"] == pytest.approx(evals[-1][f"gold/{task}"] - evals[0][f"gold/{task}"])
        assert summary["gain_after"][task]["diff"] == evals[-1][f"gain/{task}"]
        assert f"gain/{task}" not in evals[0]
    assert (run / "best" / "config.json").exists()
    saved = json.loads((run / "config.json").read_text())
    assert saved["ppo"]["steps"] == 3 and saved["resolved"]["router"]["code"] == "rtv.code"


def test_general_on_a_learned_reward_logs_proxy_and_gap(world, tmp_path):
    from datarl.models.bt_train import BTTrainConfig, train_bt

    pairs = [
        {"id": f"p{i}", "prompt": f"Describe topic {i}.", "chosen": "A calm answer. It is good.", "rejected": "no"}
        for i in range(6)
    ]
    bt_dir = tmp_path / "bt"
    train_bt(pairs, str(world / "policy"), str(bt_dir), BTTrainConfig(steps=2, pairs_per_step=2, eval_fraction=0))
    cfg = config(
        world,
        tmp_path / "run",
        data={"train": str(world / "general.jsonl"), "eval": str(world / "general.jsonl")},
        reward={"router": {"general": "bt"}, "sources": {"bt": {"model": str(bt_dir)}}},
        curriculum="none",
        ppo={"steps": 2},
        eval={"every": 1, "per_task": 1},
    )
    train(TrainConfig.from_mapping(cfg), log=lambda m: None)
    evals = read_jsonl(tmp_path / "run" / "eval.jsonl")
    assert "hacking/gap/general" in evals[-1] and isinstance(evals[-1]["hacking/alarm/general"], bool)
    assert evals[-1]["hacking/gap/general"] == pytest.approx(evals[-1]["proxy/general"] - evals[-1]["gold/general"])
    assert "proxy/math" not in evals[-1]  # verifier-trained tasks: the proxy is the gold check itself
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert "reward/source/bt" in metrics[0]


@pytest.mark.parametrize(
    "changes, fragment",
    [
        (
            {"curriculum": {"phases": [{"until_step": 2, "tasks": {"poetry": 1}}, {"tasks": "natural"}]}},
            "unknown task 'poetry'",
        ),
        (
            {
                "curriculum": {
                    "phases": [
                        {"until_step": 4, "tasks": {"code": 1}},
                        {"until_step": 2, "tasks": {"math": 1}},
                        {"tasks": "natural"},
                    ]
                }
            },
            "must be greater than the previous",
        ),
        (
            {"curriculum": {"phases": [{"until_step": 2, "tasks": {"general": 1}}, {"tasks": "natural"}]}},
            r"names task\(s\) \['general'\]",
        ),
        ({"ppo": {"minibatch_size": 3}}, "not divisible by minibatch_size 3"),
        ({"ppo": {"micro_batch_size": 3}}, "must divide minibatch_size"),
        ({"ppo": {"learning_rate": 1.0}}, "unknown option"),
        ({"reward": {"router": {"math": "rtv.nope"}}}, "unknown source"),
        ({"reward": {"router": {"math": "bt"}}}, "needs a model: set sources.bt.model"),
        (
            {"reward": {"router": {"math": "genrm.gt"}, "sources": {"genrm.gt": {"judge": "/no/such/judge"}}}},
            "no such model directory",
        ),
        ({"policy": "/no/such/policy"}, "no such model directory"),
        ({"data": {"train": "/no/such/train.jsonl"}}, "no such file"),
        ({"ppo": {"value_init": "/no/such/bt"}}, "no such BT model directory"),
        ({"eval": {"gold": "vibes"}}, "gold must be"),
        ({"ppo": {"advantage": "gpro"}}, r"'gpro' is not an estimator \(did you mean 'grpo' for 'gpro'\?\)"),
        ({"ppo": {"advantage": "rloo", "samples_per_prompt": 1}}, "samples_per_prompt is 1; set samples_per_prompt"),
        ({"ppo": {"advantage": "grpo", "value_init": "shared"}}, "value_init: shared asks for a critic"),
        ({"ppo": {"advantage": "grpo", "critic_warmup_steps": 1}}, "would train a critic alone"),
        ({"ppo": {"grpo_std": False}}, "grpo_std: False is for advantage: grpo only"),
        ({"ppo": {"advantage": "rloo", "grpo_std": False}}, "grpo_std: False is for advantage: grpo only"),
    ],
)
def test_bad_configs_fail_before_training(world, tmp_path, changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        train(TrainConfig.from_mapping(config(world, tmp_path / "run", **changes)), log=lambda m: None)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize(
    "reward, fragment",
    [
        ({"router": {"general": None}}, "no reward source is configured for task 'general'"),
        ({}, "routed to genrm.bon, which needs a model: set sources.genrm.bon.judge"),
        ({"sources": {"genrm.bon": {"judge": "/tmp"}}}, r"reference: missing; genrm.bon compares"),
    ],
)
def test_records_the_router_cannot_score_fail_before_training(world, tmp_path, reward, fragment):
    rows = [{k: v for k, v in json.loads(line).items() if k != "reference"} for line in open(world / "general.jsonl")]
    (tmp_path / "noref.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config(world, tmp_path / "run", data={"train": str(tmp_path / "noref.jsonl")}, reward=reward)
    with pytest.raises(ConfigError, match=fragment):
        train(TrainConfig.from_mapping(cfg), log=lambda m: None)


def test_a_finished_run_directory_is_not_overwritten(world, tmp_path):
    cfg = TrainConfig.from_mapping(config(world, tmp_path / "run", ppo={"steps": 1}, eval={"every": 0}))
    train(cfg, log=lambda m: None)
    with pytest.raises(ConfigError, match="already holds a run; continue it with --resume"):
        train(cfg, log=lambda m: None)


def _cli(config_path, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    return subprocess.Popen(
        [sys.executable, "-m", "datarl", "train", str(config_path), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# GRESO's skipping and ScaleRL's dropping on: the micro policy fails most groups, so prompts are passed over
SKIPPING = {"skip": True, "window": 1, "readmit": 0.3, "drop_pass_rate": 0.5, "drop_min_rollouts": 2}


@pytest.mark.parametrize("difficulty", [None, SKIPPING], ids=["default", "skipping"])
def test_sigkill_at_a_random_step_then_resume_matches_an_uninterrupted_run(world, tmp_path, difficulty):
    steps = 4
    extra = {"difficulty": difficulty} if difficulty else {}
    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(
            json.dumps(config(world, tmp_path / name, ppo={"steps": steps}, eval={"every": 2}, **extra))
        )
    full = _cli(tmp_path / "a.json")
    assert full.wait(timeout=300) == 0, full.stderr.read()
    kill_after = random.Random().randint(1, steps - 1)  # a different step each run of the suite
    victim = _cli(tmp_path / "b.json")
    metrics = tmp_path / "b" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and victim.poll() is None:
        if metrics.exists() and len(read_jsonl(metrics)) >= kill_after:
            break
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    resumed = _cli(tmp_path / "b.json", "--resume", str(tmp_path / "b"))
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    final_a = params(tmp_path / "a" / "checkpoints" / f"step-{steps:06d}" / "policy")
    final_b = params(tmp_path / "b" / "checkpoints" / f"step-{steps:06d}" / "policy")
    for key in final_a:
        assert torch.allclose(final_a[key], final_b[key], atol=1e-6), (key, kill_after)
    a_steps, b_steps = read_jsonl(tmp_path / "a" / "metrics.jsonl"), read_jsonl(metrics)
    assert [m["step"] for m in b_steps] == list(range(steps))  # no lost or repeated step
    for ma, mb in zip(a_steps, b_steps):
        assert ma["reward/mean"] == pytest.approx(mb["reward/mean"]) and ma["ppo/kl"] == pytest.approx(mb["ppo/kl"])
    assert [e["step"] for e in read_jsonl(tmp_path / "b" / "eval.jsonl")] == [0, 2, 4]
    # The resumed run read step 0's responses back: its paired gains equal the uninterrupted run's.
    last_a, last_b = read_jsonl(tmp_path / "a" / "eval.jsonl")[-1], read_jsonl(tmp_path / "b" / "eval.jsonl")[-1]
    gains = [k for k in last_a if k.startswith("gain/")]
    assert gains and all(last_a[k] == pytest.approx(last_b[k]) for k in gains)
    # The difficulty state (saved in each checkpoint) ends the same, and so does what the sampler passed over.
    assert read_jsonl(tmp_path / "a" / "difficulty.jsonl") == read_jsonl(tmp_path / "b" / "difficulty.jsonl")
    assert [m["curriculum/passed_over"] for m in a_steps] == [m["curriculum/passed_over"] for m in b_steps]
    if difficulty:
        assert a_steps[-1]["curriculum/passed_over"] > 0, "the test's skipping never skipped"
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())["difficulty"]
    assert summary["rollouts"] == b_steps[-1]["difficulty/rollouts"] == steps * 4 * 2  # prompts x samples


@pytest.mark.parametrize("value_init", ["policy", "shared"])
def test_one_forward_critic_matches_gradient_accumulation(world, tmp_path, value_init):
    """One epoch, one minibatch, one micro-batch: the critic's values and its loss share one forward (the
    fused path). It must update the policy and the critic exactly as the same minibatch in two accumulated
    micro-batches does (the unfused path: a no-grad pass for the values, then a forward per micro-batch).
    With a shared critic the one body pass also serves the policy loss."""
    (tmp_path / "short.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _short_answer_rows(8)))
    ppo = {
        "steps": 1,
        "ppo_epochs": 1,
        "minibatch_size": 8,
        "critic_lr": 1e-2,
        "reward_shift": 0.0,
        "max_new_tokens": 8,
        "value_init": value_init,
        "adam_eps": 1e-5,
    }  # with 1e-8 Adam blows the float noise of near-zero gradients up to step size
    finals = {}
    for name, micro in (("fused", 8), ("accumulated", 4)):
        _train_on(world, tmp_path / name, tmp_path / "short.jsonl", {**ppo, "micro_batch_size": micro})
        rewards = read_jsonl(tmp_path / name / "metrics.jsonl")[0]
        assert 0 < rewards["reward/mean"] < 1  # rows differ, so a value matched to the wrong row would show
        step = tmp_path / name / "checkpoints" / "step-000001"
        finals[name] = (params(step / "policy"), torch.load(step / "state.pt")["critic"])
    (pol_f, crit_f), (pol_a, crit_a) = finals["fused"], finals["accumulated"]
    init = params(world / "policy")
    assert any(not torch.equal(init[k], pol_f[k]) for k in init)  # the step did train
    for key in pol_f:
        assert torch.allclose(pol_f[key], pol_a[key], atol=1e-6), (key, float((pol_f[key] - pol_a[key]).abs().max()))
    assert crit_f["head.weight"].abs().sum() > 0  # the zero-initialised value head was trained
    for key in crit_f:
        assert torch.allclose(crit_f[key], crit_a[key], atol=1e-6), key
    if value_init == "shared":  # the checkpoint holds the head only: the body is the policy's
        assert set(crit_f) == {"head.weight", "head.bias"}


@pytest.mark.parametrize(
    "ppo_changes",
    [
        {"value_init": "policy", "ppo_epochs": 1, "minibatch_size": 8},  # the critic's passes run ahead
        {"value_init": "policy", "ppo_epochs": 2, "minibatch_size": 4, "micro_batch_size": 2},
        {"value_init": "shared", "ppo_epochs": 1, "minibatch_size": 8},
        {"advantage": "grpo", "ppo_epochs": 2, "minibatch_size": 4},
    ],
    ids=["gae-fused", "gae-accumulated", "shared-fused", "grpo"],
)
def test_micro_batches_by_length_give_the_same_update(world, tmp_path, monkeypatch, ppo_changes):
    """Rows of similar length in one micro-batch (fewer pad tokens) train the policy and the critic as the
    micro-batches in the shuffled order do: gradients are weighted by tokens either way. The grouping's
    per-pass overhead is set to 0 so that these short prompts of different lengths really are cut apart."""
    from datarl.rl import rollout

    cut, passes = rollout.length_groups, []

    def without_overhead(lengths, max_rows):
        groups = cut(lengths, max_rows, overhead_tokens=0)
        passes.append(len(groups))
        return groups

    monkeypatch.setattr(rollout, "length_groups", without_overhead)
    rows = [{**r, "prompt": r["prompt"] + " Please answer now." * (3 * i)} for i, r in enumerate(_short_answer_rows(4))]
    (tmp_path / "varied.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ppo = {"steps": 2, "critic_lr": 1e-2, "max_new_tokens": 8, "adam_eps": 1e-5, **ppo_changes}
    finals, logged = {}, {}
    for by_length in (True, False):
        name = f"by_length_{by_length}"
        _train_on(world, tmp_path / name, tmp_path / "varied.jsonl", {**ppo, "group_by_length": by_length})
        step = tmp_path / name / "checkpoints" / "step-000002"
        critic = torch.load(step / "state.pt")["critic"] if "advantage" not in ppo_changes else {}
        finals[by_length] = (params(step / "policy"), critic)
        logged[by_length] = read_jsonl(tmp_path / name / "metrics.jsonl")
        if by_length:
            assert max(passes) > 1  # rows of different lengths were cut apart
    init = params(world / "policy")
    assert any(not torch.equal(init[k], finals[True][0][k]) for k in init)  # it did train
    for key in init:
        assert torch.allclose(finals[True][0][key], finals[False][0][key], atol=1e-5), key
    for key in finals[True][1]:
        assert torch.allclose(finals[True][1][key], finals[False][1][key], atol=1e-5), key
    for a, b in zip(logged[True], logged[False]):
        assert a["ppo/policy_loss"] == pytest.approx(b["ppo/policy_loss"], abs=1e-5)
        assert a["ppo/entropy"] == pytest.approx(b["ppo/entropy"], abs=1e-4)
        assert a["ppo/grad_norm"] == pytest.approx(b["ppo/grad_norm"], rel=1e-4)  # Adam's step hides a scale


def test_a_shared_critic_warm_up_trains_the_head_and_leaves_the_policy(world, tmp_path):
    (tmp_path / "short.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _short_answer_rows(8)))
    ppo = {
        "steps": 2,
        "ppo_epochs": 1,
        "minibatch_size": 8,
        "critic_lr": 1e-2,
        "max_new_tokens": 8,
        "value_init": "shared",
        "critic_warmup_steps": 1,
        "reward_shift": 0.0,
    }
    train(
        TrainConfig.from_mapping(
            config(
                world,
                tmp_path / "run",
                ppo=ppo,
                curriculum="none",
                data={"train": str(tmp_path / "short.jsonl"), "eval": ""},
            )
        ),
        log=lambda m: None,
    )
    step = tmp_path / "run" / "checkpoints" / "step-000001"
    init, after = params(world / "policy"), params(step / "policy")
    assert all(torch.equal(init[k], after[k]) for k in init)  # warm-up: the policy (and its body) waits
    assert torch.load(step / "state.pt")["critic"]["head.weight"].abs().sum() > 0
    trained = params(tmp_path / "run" / "checkpoints" / "step-000002" / "policy")
    assert any(not torch.equal(init[k], trained[k]) for k in init)  # after the warm-up it trains


def test_cli_reports_a_bad_config_in_one_line(world, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps(config(world, tmp_path / "run", ppo={"minibatch_size": 3})))
    proc = _cli(bad)
    assert proc.wait(timeout=120) == 2
    err = proc.stderr.read()
    assert err.startswith("datarl: error:") and "minibatch_size" in err and "Traceback" not in err


@pytest.mark.parametrize("advantage", ["gae", "grpo"])
def test_ppo_raises_a_reward_the_policy_can_reach(world, tmp_path, advantage):
    # "Answer in fewer than 3 words": a micro policy starts near a third and only has to shift
    # its token choices (fewer spaces, or an earlier EOS), so PPO must raise the reward in 20 steps,
    # with the critic (gae) and with the group baseline in its place (grpo).
    (tmp_path / "short.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _short_answer_rows(16)))
    cfg = config(
        world,
        tmp_path / "run",
        data={"train": str(tmp_path / "short.jsonl"), "eval": ""},
        curriculum="none",
        ppo={
            "steps": 20,
            "prompts_per_step": 8,
            "samples_per_prompt": 4,
            "minibatch_size": 16,
            "actor_lr": 3e-3,
            "reward_shift": 0.0,
            "max_new_tokens": 8,
            "advantage": advantage,
        },
    )
    train(TrainConfig.from_mapping(cfg), log=lambda m: None)
    rewards = [m["reward/mean"] for m in read_jsonl(tmp_path / "run" / "metrics.jsonl")]
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.15, rewards


def _train_on(world, run_dir, prompts, ppo):
    """One run on a prompts file alone: no evaluation split, no curriculum."""
    train(
        TrainConfig.from_mapping(
            config(world, run_dir, ppo=ppo, data={"train": str(prompts), "eval": ""}, curriculum="none")
        ),
        log=lambda m: None,
    )


def _short_answer_rows(n):
    return [
        {
            "id": f"short-{i}",
            "task": "ifeval",
            "prompt": f"Say something about item {i}.",
            "instruction_id_list": ["length_constraints:number_words"],
            "kwargs": [{"relation": "less than", "num_words": 3}],
        }
        for i in range(n)
    ]


def test_a_cut_off_rollout_is_invalid_for_every_source_by_default(world, tmp_path):
    (tmp_path / "short.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _short_answer_rows(4)))
    cfg = config(
        world,
        tmp_path / "run",
        ppo={"steps": 1, "max_new_tokens": 4, "cutoff_invalid": True},
        data={"train": str(tmp_path / "short.jsonl"), "eval": ""},
        curriculum="none",
    )
    train(TrainConfig.from_mapping(cfg), log=lambda m: None)
    row = read_jsonl(tmp_path / "run" / "metrics.jsonl")[0]
    assert row["response/cut_off"] == 1.0  # four tokens: nothing ends
    assert row["reward/mean"] == 0.0  # ifeval's "fewer than 3 words" would pass some; cut off, none counts


def _critic_free(world, run_dir, advantage, **ppo):
    """A critic-free run on prompts whose rewards differ within a group (an untrained micro policy scores 0 on
    the suite's tasks: every group would be flat and teach nothing)."""
    rows = run_dir.parent / "short.jsonl"
    rows.parent.mkdir(parents=True, exist_ok=True)
    rows.write_text("".join(json.dumps(r) + "\n" for r in _short_answer_rows(8)))
    changes = {"steps": 3, "samples_per_prompt": 4, "max_new_tokens": 8, "reward_shift": 0.0, "advantage": advantage}
    return TrainConfig.from_mapping(
        config(
            world,
            run_dir,
            ppo={**changes, **ppo},
            data={"train": str(rows), "eval": ""},
            curriculum="none",
        )
    )


@pytest.mark.parametrize("advantage, grpo_std", [("grpo", None), ("grpo", False), ("rloo", None)])
def test_a_critic_free_run_loads_and_trains_no_critic(world, tmp_path, monkeypatch, advantage, grpo_std):
    import datarl.rl.trainer as trainer_mod

    def no_critic(*args, **kwargs):
        raise AssertionError("a critic-free run loaded a critic")

    monkeypatch.setattr(trainer_mod, "load_critic", no_critic)
    run = tmp_path / "run"
    cfg = _critic_free(world, run, advantage, **({} if grpo_std is None else {"grpo_std": grpo_std}))
    assert train(cfg, log=lambda m: None).steps == 3
    metrics = read_jsonl(run / "metrics.jsonl")
    assert any(0 < m["reward/mean"] < 1 for m in metrics)  # some groups were mixed: there was signal
    for m in metrics:
        assert "ppo/policy_loss" in m and "ppo/entropy" in m and "ppo/grad_norm" in m
        assert "ppo/value_loss" not in m and "ppo/value_clipfrac" not in m
    state = torch.load(run / "checkpoints" / "step-000003" / "state.pt", weights_only=False)
    assert state["critic"] is None and state["critic_opt"] is None and state["actor_opt"]["state"]
    init, after = params(world / "policy"), params(run / "checkpoints" / "step-000003" / "policy")
    assert any(not torch.equal(init[k], after[k]) for k in init)
    saved = json.loads((run / "config.json").read_text())["ppo"]
    assert saved["advantage"] == advantage and saved["grpo_std"] == (
        None if advantage == "rloo" else grpo_std is not False
    )


def test_a_critic_free_run_resumes_to_the_same_parameters(world, tmp_path):
    full, cut = tmp_path / "full" / "run", tmp_path / "cut" / "run"
    train(_critic_free(world, full, "grpo", ppo_epochs=1), log=lambda m: None)
    train(_critic_free(world, cut, "grpo", ppo_epochs=1), log=lambda m: None, stop_after=1)
    train(_critic_free(world, cut, "grpo", ppo_epochs=1), resume=True, log=lambda m: None)
    final_full, final_cut = (params(r / "checkpoints" / "step-000003" / "policy") for r in (full, cut))
    for key in final_full:
        assert torch.equal(final_full[key], final_cut[key]), key
    a, b = read_jsonl(full / "metrics.jsonl"), read_jsonl(cut / "metrics.jsonl")
    assert [m["step"] for m in b] == [0, 1, 2]
    assert [m["ppo/policy_loss"] for m in a] == [m["ppo/policy_loss"] for m in b]
    # the critic cannot appear on resume: a run trained without one refuses to continue with gae
    with pytest.raises(ConfigError, match="trained with ppo.advantage: grpo, this config says gae"):
        train(_critic_free(world, cut, "gae"), resume=True, log=lambda m: None)


def test_dynamic_sampling_fills_the_step_with_groups_that_have_a_spread(world, tmp_path):
    cfg = _critic_free(world, tmp_path / "run", "grpo", prompts_per_step=4, minibatch_size=16)
    cfg = TrainConfig.from_mapping({**cfg.to_dict(), "difficulty": {"dynamic_sampling": True, "max_rounds": 2}})
    train(cfg, log=lambda m: None)
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    for m in metrics:
        kept, filled = m["dynamic/kept_with_spread"], m["dynamic/filled_without_spread"]
        assert kept + filled == 4  # the batch keeps its size
        assert m["dynamic/groups_drawn"] >= 4 and m["dynamic/rounds"] <= 2
        assert filled == 0 or m["dynamic/rounds"] == 2  # set-aside groups fill only after the last round
    assert any(m["dynamic/rounds"] > 0 for m in metrics), "no step drew more prompts"
    rows = read_jsonl(tmp_path / "run" / "difficulty.jsonl")
    assert (
        sum(r["rollouts"] for r in rows)
        == metrics[-1]["difficulty/rollouts"]
        == 4 * sum(m["dynamic/groups_drawn"] for m in metrics)
    )  # every group drawn, kept or not, is in the state


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"difficulty": {"dynamic_sampling": True}}, "needs ppo.advantage: grpo or rloo \\(not gae\\)"),
        ({"difficulty": {"drop_pass_rate": 2}}, "difficulty: drop_pass_rate must be a number in \\[0, 1\\]"),
        ({"difficulty": {"readmit": 1.01}}, "difficulty: readmit must be a number in \\[0, 1\\]"),
        (
            {"difficulty": {"dynamic_sampling": True}, "ppo": {"advantage": "rloo", "samples_per_prompt": 1}},
            "compares the samples of one prompt, but samples_per_prompt is 1",
        ),
    ],
)
def test_bad_difficulty_configs_fail_before_training(world, tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_mapping(config(world, tmp_path / "run", **changes))


def test_a_scores_file_of_another_pool_is_refused_before_any_model_loads(world, tmp_path):
    scores = tmp_path / "other.scores.jsonl"
    header = {"datarl_prepo_scores": 1, "policy": "p", "fingerprint": {}}
    scores.write_text(json.dumps(header) + "\n" + json.dumps({"id": "elsewhere-1", "rewards": [1.0]}) + "\n")
    cfg = TrainConfig.from_mapping(config(world, tmp_path / "run", difficulty={"seed_from": str(scores)}))
    with pytest.raises(ConfigError, match="none of its 1 prompt ids is a training prompt"):
        train(cfg, log=lambda m: None)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_relative_seed_file_is_relative_to_the_config(world, tmp_path):
    cfg = TrainConfig.from_mapping(
        config(world, tmp_path / "run", difficulty={"seed_from": "runs/last/difficulty.jsonl"}), base_dir=str(tmp_path)
    )
    assert cfg.difficulty.seed_from == str(tmp_path / "runs" / "last" / "difficulty.jsonl")
    assert TrainConfig.from_mapping(config(world, tmp_path / "run")).difficulty.seed_from == "auto"
