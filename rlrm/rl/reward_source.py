"""Where a training run gets its rewards from: a worker it starts, a worker it connects to, or in-process.

* :func:`resolve_model_spec` - the model spec to load (``demo`` falls back to ``tiny`` with a
  warning when this build has no trained demo model).
* :func:`open_reward_source` - context manager yielding a scorer for the run's ``reward`` and
  ``transport`` configs, and stopping whatever it started on exit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["resolve_model_spec", "open_reward_source"]

log = logging.getLogger(__name__)


def resolve_model_spec(spec: str) -> str:
    """``spec``, except ``"demo"`` becomes ``"tiny"`` (with a warning) if this build has no demo weights."""
    if spec == "demo":
        from rlrm.models import registered_models

        available = "demo" in registered_models()
        if available:
            from rlrm.models.demo import DEMO_DIR

            available = (DEMO_DIR / "config.json").exists()
        if not available:
            log.warning("reward model 'demo' is not part of this build (no trained weights); "
                        "using the untrained 'tiny' model instead")
            return "tiny"
    return spec


@contextlib.contextmanager
def open_reward_source(reward: Mapping[str, Any], transport: Mapping[str, Any]) -> Iterator[Any]:
    """Yield a scorer for a run, built from its ``reward`` and ``transport`` config groups.

    * ``reward.kind == "env"``: None (the env's own reward needs no model).
    * ``reward.source`` set (``tcp://gpu:5555``): connect a :class:`~rlrm.transport.RewardClient`.
    * ``transport.name == "worker"``: start ``rlrm worker`` for ``reward.model`` as a subprocess
      on loopback (:func:`~rlrm.transport.spawn_worker`), connect to it, stop it on exit.
    * ``transport.name == "local"``: load the model in this process (:class:`~rlrm.transport.LocalScorer`).
    * ``transport.name == "ray"``: a :class:`~rlrm.distributed.RayRewardPool` of model replicas on a Ray
      cluster (``transport.address``; None starts a local one), shut down on exit.
    """
    if reward.get("kind") == "env":  # the env's own reward: no model, nothing to start
        yield None
        return
    with contextlib.ExitStack() as stack:
        scorer = _open_scorer(reward, transport, stack)
        stack.callback(scorer.close)  # LIFO: the scorer closes before a spawned worker stops
        yield scorer


def _open_scorer(reward: Mapping[str, Any], transport: Mapping[str, Any], stack: contextlib.ExitStack) -> Any:
    """Build the scorer :func:`open_reward_source` yields; anything it starts is closed by ``stack``."""
    from rlrm.transport import make_scorer, spawn_worker

    timeout_ms = int(transport.get("timeout_ms", 30000))
    if reward.get("source"):
        log.info("reward source: worker at %s", reward["source"])
        return make_scorer(str(reward["source"]), timeout_ms=timeout_ms,
                           curve_server_key=reward.get("curve_server_key") or None,
                           enc=reward.get("enc") or "raw")
    spec = resolve_model_spec(str(reward["model"]))
    name = transport.get("name")
    if name == "worker":
        worker_args = {k: v for k, v in transport.items() if k not in ("name", "timeout_ms", "bind", "threads")}
        threads = transport.get("threads")
        env = {"OMP_NUM_THREADS": str(int(threads)), "MKL_NUM_THREADS": str(int(threads))} if threads else None
        bind = transport.get("bind", "tcp://127.0.0.1:0")
        worker = stack.enter_context(spawn_worker(spec, bind=bind, env=env, **worker_args))
        log.info("reward source: model %r in worker pid %d at %s", spec, worker.pid, worker.url)
        return make_scorer(worker.url, timeout_ms=timeout_ms)
    if name == "local":
        from rlrm.models import make_reward_model

        log.info("reward source: model %r in this process", spec)
        return make_scorer(make_reward_model(spec))
    if name == "ray":
        from rlrm.distributed import RayRewardPool

        num_actors = int(transport.get("num_actors", 2))
        log.info("reward source: model %r on %d Ray actors", spec, num_actors)
        return RayRewardPool(spec, num_actors=num_actors, num_cpus=float(transport.get("num_cpus", 1)),
                             num_gpus=float(transport.get("num_gpus", 0)), address=transport.get("address"),
                             **dict(transport.get("model_kwargs") or {}))
    raise ValueError(
        f"unknown transport {name!r}; expected 'worker', 'local' or 'ray' (or set reward.source=tcp://...)"
    )
