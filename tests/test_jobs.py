"""`datarl synth`, `generate` and `eval` end to end with a micro model built in seconds."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from datarl.cli import main  # noqa: E402
from datarl.jobs import summarise_scores
from datarl.models.tiny import MICRO, build_tiny_policy  # noqa: E402
from datarl.records import load_records  # noqa: E402


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    assert (
        main(
            [
                "synth",
                str(out),
                "--train-per-task",
                "20",
                "--pool-per-task",
                "10",
                "--eval-per-task",
                "5",
                "--eval-by-task",
                "math=5",
            ]
        )
        == 0
    )  # math would get 7x eval_per_task by default
    return out


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory, suite_dir):
    rows = [json.loads(line) for line in (suite_dir / "train.jsonl").read_text().splitlines()]
    policy = build_tiny_policy([str(r["prompt"]) + " " + r["reference"] for r in rows], MICRO)
    out = tmp_path_factory.mktemp("micro")
    policy.model.save_pretrained(out)
    policy.tokenizer.save_pretrained(out)
    return out


def test_synth_writes_valid_splits(suite_dir):
    for split, n in (("train", 80), ("pool", 40), ("eval", 20)):
        loaded = load_records(str(suite_dir / f"{split}.jsonl"))
        assert loaded.errors == [] and len(loaded.records) == n
    manifest = json.loads((suite_dir / "manifest.json").read_text())
    assert manifest["config"]["eval_by_task"] == {"math": 5}
    assert manifest["counts"]["eval"]["task"] == {"code": 5, "general": 5, "ifeval": 5, "math": 5}


def test_generate_then_score(suite_dir, micro_dir, tmp_path, capsys):
    out = tmp_path / "gen.jsonl"
    assert (
        main(
            [
                "generate",
                str(suite_dir / "eval.jsonl"),
                "-o",
                str(out),
                "--policy",
                str(micro_dir),
                "--n",
                "2",
                "--max-new-tokens",
                "8",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 40 and rows[0]["id"].endswith("#0") and rows[1]["id"].endswith("#1")
    assert all(isinstance(r["response"], str) for r in rows)
    assert "generated 40 responses for 20 prompts" in capsys.readouterr().out
    scored = tmp_path / "scored.jsonl"
    router = tmp_path / "router.yaml"
    router.write_text("router:\n  general: none\n")
    assert main(["score", str(out), "-o", str(scored), "--config", str(router), "--workers", "1"]) == 0
    assert len(scored.read_text().splitlines()) == 30  # general records have no source yet: side file
    assert len((tmp_path / "scored.jsonl.errors.jsonl").read_text().splitlines()) == 10


def test_eval_prints_table_and_writes_summary(suite_dir, micro_dir, tmp_path, capsys):
    summary = tmp_path / "s.json"
    assert (
        main(
            [
                "eval",
                str(suite_dir / "eval.jsonl"),
                "--policy",
                str(micro_dir),
                "--max-new-tokens",
                "8",
                "--summary",
                str(summary),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "95% CI" in table and "math" in table
    data = json.loads(summary.read_text())
    assert set(data["by_task"]) == {"math", "code", "ifeval", "general"}
    assert all(s["n"] == 5 for s in data["by_task"].values())


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["generate", "{suite}/eval.jsonl", "-o", "{tmp}/o.jsonl", "--policy", "/nonexistent/model"], "no such model"),
        (["generate", "{tmp}/empty.jsonl", "-o", "{tmp}/o.jsonl", "--policy", "{micro}"], "no records"),
        (["generate", "{tmp}/long.jsonl", "-o", "{tmp}/o.jsonl", "--policy", "{micro}"], "exceeds the model's context"),
    ],
)
def test_bad_generate_input_is_a_one_line_error(argv, fragment, suite_dir, micro_dir, tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "long.jsonl").write_text(json.dumps({"task": "general", "prompt": "word " * 600}) + "\n")
    args = [a.format(suite=suite_dir, tmp=tmp_path, micro=micro_dir) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_summarise_scores_groups_by_task():
    s = summarise_scores(["a", "a", "b"], [1.0, 0.0, 0.5])
    assert s["a"]["mean"] == 0.5 and s["b"]["n"] == 1


def test_make_pairs_passes_min_gold_gap_on_and_refuses_a_bad_gap(suite_dir, micro_dir, tmp_path, capsys, monkeypatch):
    import datarl.preferences as preferences

    real, seen = preferences.make_pairs, []

    def spy(*a, **kw):  # the real function, with the gap it was given noted
        seen.append(kw.get("min_gold_gap"))
        return real(*a, **kw)

    monkeypatch.setattr(preferences, "make_pairs", spy)
    args = ["make-pairs", str(suite_dir / "train.jsonl"), "--policy", str(micro_dir), "--n", "2"]
    args += ["--max-new-tokens", "8", "--limit", "6", "-o", str(tmp_path / "pairs.jsonl")]
    assert main(args) == 0 and main([*args, "--min-gold-gap", "0.2"]) == 0
    assert seen == [0.0, 0.2]  # the default keeps any difference, as make_pairs does; the flag reaches it
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert rows and all(abs(r["chosen_gold"] - r["rejected_gold"]) > 0.2 for r in rows)
    for bad in ("-0.1", "1.5", "wide"):
        with pytest.raises(SystemExit) as exc:
            main([*args, "--min-gold-gap", bad])
        assert exc.value.code == 2
        assert "--min-gold-gap" in capsys.readouterr().err


def test_pairs_bt_and_references_chain_through_the_cli(suite_dir, micro_dir, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    assert (
        main(
            [
                "make-pairs",
                str(suite_dir / "train.jsonl"),
                "-o",
                str(pairs),
                "--policy",
                str(micro_dir),
                "--n",
                "2",
                "--max-new-tokens",
                "8",
                "--limit",
                "12",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert rows and all(r["chosen"] != r["rejected"] for r in rows)
    bt = tmp_path / "bt"
    assert main(["train-bt", str(pairs), "-o", str(bt), "--base", str(micro_dir), "--steps", "3"]) == 0
    assert (bt / "datarl_bt.json").exists()
    refs = tmp_path / "refs.jsonl"
    assert (
        main(
            [
                "build-references",
                str(suite_dir / "eval.jsonl"),
                "-o",
                str(refs),
                "--policy",
                str(micro_dir),
                "--bt",
                str(bt),
                "--n",
                "2",
                "--max-new-tokens",
                "8",
            ]
        )
        == 0
    )
    out = [json.loads(line) for line in refs.read_text().splitlines()]
    general = [r for r in out if r["task"] == "general"]
    assert general and all(r["reference_info"]["n"] == 2 for r in general)
    assert all("reference_info" not in r for r in out if r["task"] != "general")
    judge = tmp_path / "judge"
    args = ["train-genrm", str(pairs), "-o", str(judge), "--base", str(micro_dir), "--steps", "2"]
    assert main([*args, "--gt-verdict", "match", "--precision", "bfloat16"]) == 0
    config = json.loads((judge / "datarl_genrm.json").read_text())["config"]
    assert config["gt_verdict"] == "match" and config["precision"] == "bfloat16"
    # --config: the recipe's options reach the trainer; the flags given override it; --base wins over genrm.base.
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("genrm: {base: smollm2-135m, lr: 2.0e-4, batch_size: 4, paired_orders: true, steps: 50}\n")
    assert main([*args, "--config", str(recipe)]) == 0
    config = json.loads((judge / "datarl_genrm.json").read_text())["config"]
    assert (config["lr"], config["batch_size"], config["paired_orders"], config["steps"]) == (2.0e-4, 4, True, 2)
    gen = tmp_path / "gen.jsonl"
    assert main(["generate", str(refs), "-o", str(gen), "--policy", str(micro_dir), "--max-new-tokens", "8"]) == 0
    # The default router: general -> genrm.bon against the best-of-N references; only the judge is configured.
    for name, text, general_source in (
        ("default", f"sources:\n  genrm.bon: {{judge: {judge}}}\n", "genrm.bon"),
        ("bt", f"router:\n  general: bt\nsources:\n  bt: {{model: {bt}}}\n", "bt"),
    ):
        cfg, scored = tmp_path / f"{name}.yaml", tmp_path / f"scored_{name}.jsonl"
        cfg.write_text(text)
        assert main(["score", str(gen), "-o", str(scored), "--config", str(cfg), "--workers", "1"]) == 0
        got = [json.loads(line) for line in scored.read_text().splitlines()]
        assert len(got) == len(out) and not (tmp_path / f"scored_{name}.jsonl.errors.jsonl").exists()
        assert {r["task"]: r["reward_source"] for r in got} == {
            "math": "rtv.math",
            "code": "rtv.code",
            "ifeval": "rtv.ifeval",
            "general": general_source,
        }
        assert all(0.0 <= r["reward"] <= 1.0 and "routed_by" in r["reward_info"] for r in got)
        general_info = [r["reward_info"] for r in got if r["task"] == "general"]
        assert all(i.get("failure") not in ("judge_error", "no_reference", "model_unavailable") for i in general_info)


def _genrm_options(*argv: str):
    from datarl.cli import build_parser
    from datarl.cli.rewards import genrm_options

    return genrm_options(build_parser().parse_args(["train-genrm", "pairs.jsonl", "-o", "judge", *argv]))


def test_train_genrm_reads_a_recipe_and_says_what_it_ignores(tmp_path, capsys):
    from pathlib import Path

    from datarl.models.genrm_train import GenRMTrainConfig

    assert _genrm_options() == (GenRMTrainConfig(), None)  # no config, no flags: the trainer's own defaults
    assert "learning rate" not in capsys.readouterr().err  # the tiny policy: no note
    example = Path(__file__).resolve().parents[1] / "examples" / "genrm_smollm2.yaml"
    cfg, base = _genrm_options("--config", str(example), "--seed", "3")
    assert base == "smollm2-135m" and (cfg.lr, cfg.paired_orders, cfg.gt_verdict, cfg.seed) == (5e-5, True, "match", 3)
    err = capsys.readouterr().err
    assert "genrm.gt_samples" in err and "pipeline" in err and "learning rate" not in err
    cfg, base = _genrm_options("--config", str(example), "--base", "other", "--precision", "float32")
    assert base == "other" and cfg.precision == "float32"
    # a section given alone works as well as a whole pipeline config
    alone = tmp_path / "alone.json"
    alone.write_text(json.dumps({"steps": 7, "order_consistency": 1.0, "paired_orders": True}))
    assert _genrm_options("--config", str(alone))[0].order_consistency == 1.0
    # a pre-trained base at the tiny judge's learning rate: a note that points at the recipe
    _genrm_options("--base", "smollm2-135m")
    assert "examples/genrm_smollm2.yaml" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("genrm: {stpes: 3}\n", "unknown option(s) ['stpes'] (did you mean 'steps'"),
        ("genrm: {lr: -1}\n", "lr > 0"),
        ("genrm: [1, 2]\n", "genrm: must be a mapping"),
        ("genrm: {base: ''}\n", "genrm.base"),
        ("genrm: {steps: 3\n", "cannot parse"),
    ],
)
def test_a_bad_train_genrm_recipe_is_a_one_line_error_naming_the_file(text, fragment, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    assert main(["train-genrm", str(tmp_path / "pairs.jsonl"), "-o", str(tmp_path / "j"), "--config", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and str(recipe) in err and "Traceback" not in err


def test_train_bt_refuses_identical_pairs(tmp_path, micro_dir, capsys):
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(
        json.dumps({"id": "p1", "task": "general", "prompt": "x", "chosen": "same", "rejected": "same"}) + "\n"
    )
    assert main(["train-bt", str(pairs), "-o", str(tmp_path / "bt"), "--base", str(micro_dir)]) == 2
    err = capsys.readouterr().err
    assert "identical" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--eval-by-task", "math=x"], "expected TASK=N"),
        (["--eval-by-task", "poetry=3"], "unknown task 'poetry'"),
        (["--eval-per-task", "-1"], "eval_per_task must be an integer >= 0"),
    ],
)
def test_bad_synth_counts_are_a_one_line_error(argv, fragment, tmp_path, capsys):
    assert main(["synth", str(tmp_path / "s"), *argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()
