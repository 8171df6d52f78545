"""What the judge benches share: a pipeline run that has finished its ``pairs`` stage.

Imported by ``bench/judge_budget.py`` and ``bench/pairs_ceiling.py`` (both put ``src`` on the path first).
"""

from __future__ import annotations

from typing import Any


def pairs_run(config_path: str) -> tuple[Any, str] | None:
    """The pipeline config at ``config_path`` and the policy its stages start from (the run's SFT policy), if
    the run has its ``pairs`` (and, for the tiny policy, ``sft``) stage done; else prints why and gives None."""
    from datarl.pipeline.config import load_pipeline_config
    from datarl.pipeline.ledger import Ledger
    from datarl.pipeline.stages import policy_dir

    cfg = load_pipeline_config(config_path)
    ledger = Ledger(cfg.path("stages.json"))
    if "pairs" not in ledger.done or (cfg.policy == "tiny" and "sft" not in ledger.done):
        print(f"{config_path}: run {cfg.run_dir} has no pairs yet; run the pipeline to its pairs stage first")
        return None
    return cfg, policy_dir(cfg, ledger)
