"""``datarl pipeline``: the paper's system end to end (see :mod:`datarl.pipeline.run` for the stages)."""

from datarl.pipeline.config import PipelineConfig, load_pipeline_config, router_mapping
from datarl.pipeline.run import run_pipeline
from datarl.pipeline.stages import STAGES

__all__ = ["PipelineConfig", "load_pipeline_config", "router_mapping", "run_pipeline", "STAGES"]
