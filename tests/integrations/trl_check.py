"""Run inside .venv-trl by test_trl.py: TRL's own GRPOTrainer for 2 steps with datarl's reward callables.

    python trl_check.py WORK_DIR RESULT.json

Trains a micro policy (saved to WORK_DIR/policy) on the embedded suite (chat prompts, 2 per task) with
rtv_math, rtv_code, rtv_ifeval, datarl_reward and an async genrm_bon (a deterministic in-process judge).
Each callable is wrapped to record what TRL passed it and what it returned. Writes the result as JSON and
the scored completions as WORK_DIR/completions.jsonl for `datarl score` (test_trl.py runs it and compares).
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path


class LengthJudge:
    """A deterministic judge backend (datarl's JudgeBackend protocol): P("A") grows with answer A's length."""

    name, gt_format = "length", "#### {ground_truth}"

    def verdict_probs(self, prompts):
        answers_a = [p.split("[Answer A]\n", 1)[1].split("\n[Answer B]\n", 1)[0] for p in prompts]
        return [(min(0.95, 0.05 + len(a) / 200), {}) for a in answers_a]


def recording(fn, calls: list):
    from datarl.integrations.trl import RECORD_COLUMN, completion_text

    def note(completions, columns, values, is_async):
        calls.append(
            {
                "index": len(calls),
                "name": fn.__name__,
                "async": is_async,
                "columns": sorted(columns),
                "tasks": list(columns["task"]),
                "values": list(values),
                "chat_completions": all(isinstance(c, list) for c in completions),
                "texts": [completion_text(c) for c in completions],
                "records": list(columns[RECORD_COLUMN]),
            }
        )

    if inspect.iscoroutinefunction(fn.__call__):

        async def wrapped(prompts, completions, completion_ids=None, **columns):
            values = await fn(prompts, completions, completion_ids, **columns)
            note(completions, columns, values, True)
            return values
    else:

        def wrapped(prompts, completions, completion_ids=None, **columns):
            values = fn(prompts, completions, completion_ids, **columns)
            note(completions, columns, values, False)
            return values

    wrapped.__name__ = fn.__name__  # TRL logs rewards/<name>/mean
    return wrapped


def main() -> None:
    work, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    import torch
    import trl
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from datarl.integrations import trl as dt
    from datarl.models.tiny import MICRO, build_tiny_policy
    from datarl.models.train_lm import LMTrainConfig, train_lm
    from datarl.rewards.router import Router, RouterConfig
    from datarl.synth import SynthConfig, build_suite

    torch.manual_seed(0)
    suite = build_suite(SynthConfig(train_per_task=2, pool_per_task=0, eval_per_task=0))["train"]
    policy = build_tiny_policy([str(r["prompt"]) + " " + str(r["reference"]) for r in suite], MICRO)
    # a little SFT on the references, so that some samples pass their verifier (non-zero rewards)
    train_lm(policy, [(r["prompt"], r["reference"]) for r in suite], LMTrainConfig(steps=80, batch_size=8, lr=1e-2))
    model_dir = work / "policy"
    policy.model.save_pretrained(model_dir)
    policy.tokenizer.save_pretrained(model_dir)

    judge = LengthJudge()
    calls: list[dict] = []
    # the routed table (default: general -> genrm.bon) with the judge given in the config
    routed = dt.reward_func(None, config={"sources": {"genrm.bon": {"judge": judge}}}, name="datarl_reward")
    funcs = [
        dt.rtv_math,
        dt.rtv_code,
        dt.rtv_ifeval,
        routed,
        dt.reward_func("genrm.bon", options={"judge": judge}, asynchronous=True),
    ]
    args = GRPOConfig(
        output_dir=str(work / "out"),
        max_steps=2,
        per_device_train_batch_size=16,
        num_generations=4,
        max_completion_length=48,
        learning_rate=5e-3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=[recording(f, calls) for f in funcs],
        train_dataset=Dataset.from_list(dt.trl_rows(suite)),
        args=args,
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())

    # what the router gives the genrm rows with the same judge, and the rest for `datarl score`
    bon = Router(RouterConfig(table={"general": "genrm.bon"}, options={"genrm.bon": {"judge": judge}}))
    expected_judge: dict[str, dict[str, float]] = {}
    with open(work / "completions.jsonl", "w") as fh:
        for call in calls:
            recs = [json.loads(r) for r in call["records"]]
            rows = [i for i, r in enumerate(recs) if r["task"] == "general"]
            scores = bon.score_many([recs[i] for i in rows], [call["texts"][i] for i in rows])
            expected_judge[str(call["index"])] = {str(i): s.score for i, s in zip(rows, scores)}
            for i, rec in enumerate(recs):
                if rec["task"] != "general":
                    fh.write(json.dumps({**rec, "response": call["texts"][i], "call": call["index"], "row": i}) + "\n")
    logged = sorted({k for entry in trainer.state.log_history for k in entry})
    result_path.write_text(
        json.dumps(
            {
                "trl_version": trl.__version__,
                "global_step": trainer.state.global_step,
                "params_changed": changed,
                "calls": calls,
                "judge": expected_judge,
                "logged_keys": logged,
            }
        )
    )


if __name__ == "__main__":
    main()
