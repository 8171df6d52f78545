"""OpenRLHF's ``reward_func`` file hook: score in the rollout process, no server.

Use it with ``--reward.remote_url $(python -c "import datarl.integrations.openrlhf_reward as m; print(m.__file__)")``
(OpenRLHF takes a ``remote_url`` ending in ``.py`` as a file to load). OpenRLHF 0.11 loads the file by path
and calls ``reward_func(queries, prompts, labels)`` from a thread per sample (``asyncio.to_thread``, one
query per call), then reads ``rewards``, ``scores`` and ``extra_logs`` from the returned dict as it does
for an HTTP reply. So this hook keeps one process-wide :class:`datarl.server.RewardService`: concurrent
calls are batched exactly as ``datarl serve`` batches concurrent requests, and the reply is the same dict
(lists, one entry per sample; labels as in :func:`datarl.integrations.openrlhf.make_label`).

Configuration, read on the first call (OpenRLHF passes no options to the hook):

- ``DATARL_CONFIG``: a YAML/JSON file with ``router:``/``sources:`` (or a run config with a ``reward:``
  section), as for ``datarl score --config``;
- ``DATARL_WORKERS``: scoring worker processes (default 1: rollout workers already fill the cores);
- ``DATARL_TIMEOUT``: seconds per sample (default 30).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Sequence
from typing import Any

from datarl.server import RewardService, ServeConfig

_SERVICE: RewardService | None = None
_LOCK = threading.Lock()


def load_router_config(path: str | None):  # -> RouterConfig
    """The router config of ``path`` (``router:``/``sources:`` at the top or under ``reward:``)."""
    from datarl.config import load_config
    from datarl.rewards.router import RouterConfig

    data = load_config(path)
    reward = data.get("reward", data)
    config = RouterConfig.from_mapping({k: reward[k] for k in ("router", "sources") if k in reward})
    config.check_batch_use()  # OpenRLHF asks for rewards a batch at a time
    return config


def _service() -> RewardService:
    global _SERVICE
    with _LOCK:
        if _SERVICE is None:
            cfg = ServeConfig(
                workers=int(os.environ.get("DATARL_WORKERS", "1")),
                timeout_s=float(os.environ.get("DATARL_TIMEOUT", "30")),
                router=load_router_config(os.environ.get("DATARL_CONFIG") or None),
            )
            _SERVICE = RewardService(cfg)
            atexit.register(_SERVICE.close)
        return _SERVICE


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any) -> dict[str, Any]:
    """Score ``queries[i]`` (prompt + response) against ``labels[i]``; never raises on model output.

    Returns ``{"rewards", "scores", "extra_logs", ...}`` as :func:`datarl.integrations.openrlhf.build_reply` does.
    """
    return _service().handle({"query": list(queries), "prompts": list(prompts), "labels": list(labels)})
