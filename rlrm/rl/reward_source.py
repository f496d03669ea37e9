"""Where a training run gets its rewards from: a worker it starts, a worker it connects to, or in-process.

* :func:`resolve_model_spec` - the model spec to load (``demo`` falls back to ``tiny`` with a
  warning when this build has no trained demo model).
* :func:`open_reward_source` - context manager yielding a scorer for the run's ``reward`` and
  ``transport`` configs, checked to answer before anything else starts, and stopping whatever it
  started on exit.
* :func:`probe_worker` - ping a worker and read its model info within seconds, or raise.
* :func:`reward_model_info` - provenance of the model behind a scorer (name, checkpoint, layout, dtype ...).
* :func:`record_reward_model` - write that provenance to ``reward_model.json`` in a run folder.
* :class:`RewardSourceError` - no worker answers at the configured URL (one line saying what to do).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlrm.config import CLIENT_TIMEOUT_MS
from rlrm.types import AsyncScorer, DescribedScorer, ModelInfo

if TYPE_CHECKING:
    from rlrm.transport import RewardClient

__all__ = [
    "resolve_model_spec",
    "open_reward_source",
    "probe_worker",
    "reward_model_info",
    "record_reward_model",
    "RewardSourceError",
    "PROBE_TIMEOUT_MS",
    "REWARD_MODEL_FILE",
]

log = logging.getLogger(__name__)

PROBE_TIMEOUT_MS = 5000.0
"""How long a worker may take to answer the start-up ping and info request, all retries together."""
REWARD_MODEL_FILE = "reward_model.json"
"""File name of the served model's provenance in a run folder."""

# ModelInfo read when each source opened, so provenance survives the scorer being closed
_OPENED_INFO: weakref.WeakKeyDictionary[Any, ModelInfo] = weakref.WeakKeyDictionary()


class RewardSourceError(RuntimeError):
    """The run's reward source does not serve: nothing answers at the worker URL, or it refused the ping."""


def resolve_model_spec(spec: str) -> str:
    """``spec``, except ``"demo"`` becomes ``"tiny"`` (with a warning) if this build has no demo weights.

    ``"auto"`` (the config default) is resolved against the env config by
    :func:`rlrm.rl.environment.resolve_env_defaults`; without an env it means ``"demo"``.
    """
    if spec == "auto":
        spec = "demo"
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
def open_reward_source(reward: Mapping[str, Any], transport: Mapping[str, Any],
                       watch: str | None = None) -> Iterator[AsyncScorer | None]:
    """Yield a scorer for a run, built from its ``reward`` and ``transport`` config groups.

    ``watch``: a versions folder (``reward.adapt``): the worker it starts (``rlrm worker --watch``) or the
    in-process scorer swaps in each version published there; a worker at ``reward.source`` must have been
    started with ``--watch`` on that folder itself.

    * ``reward.kind == "env"``: None (the env's own reward needs no model).
    * ``reward.source`` set (``tcp://gpu:5555``): connect a :class:`~rlrm.transport.RewardClient`.
    * ``transport.name == "worker"``: start ``rlrm worker`` for ``reward.model`` as a subprocess
      on loopback (:func:`~rlrm.transport.spawn_worker`), connect to it, stop it on exit.
    * ``transport.name == "local"``: load the model in this process (:class:`~rlrm.transport.LocalScorer`).
    * ``transport.name == "ray"``: a :class:`~rlrm.transport.RayRewardPool` of model replicas on a Ray
      cluster (``transport.address``; None starts a local one), shut down on exit.

    A worker is pinged and its :class:`~rlrm.types.ModelInfo` read before the scorer is yielded
    (:func:`probe_worker`): nothing answering raises :class:`RewardSourceError` within
    :data:`PROBE_TIMEOUT_MS`. The info is kept for :func:`reward_model_info` after the scorer closes.
    """
    if reward.get("kind") == "env":  # the env's own reward: no model, nothing to start
        yield None
        return
    with contextlib.ExitStack() as stack:
        scorer = _open_scorer(reward, transport, stack, watch)
        stack.callback(scorer.close)  # LIFO: the scorer closes before a spawned worker stops
        url = getattr(scorer, "url", None)
        # a dead or wrong worker fails here, in seconds, not after the policy is built and the first
        # reward times out; reading the info also records what the run was really scored with
        info = probe_worker(scorer, url) if url else _as_model_info(scorer.info())
        _remember(scorer, info)
        _check_served_model(reward, info, url)
        yield scorer


def _open_scorer(reward: Mapping[str, Any], transport: Mapping[str, Any], stack: contextlib.ExitStack,
                 watch: str | None = None) -> AsyncScorer:
    """Build the scorer :func:`open_reward_source` yields; anything it starts is closed by ``stack``."""
    from rlrm.transport import make_scorer, spawn_worker

    timeout_ms = int(transport.get("timeout_ms", CLIENT_TIMEOUT_MS))
    if reward.get("source"):
        log.info("reward source: worker at %s", reward["source"])
        if watch:
            log.warning("reward.adapt with reward.source: the worker at %s swaps versions only if it was started "
                        "with `rlrm worker --watch %s` (on a folder both machines see)", reward["source"], watch)
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
        if watch:
            worker_args["watch"] = str(watch)
        worker = stack.enter_context(spawn_worker(spec, bind=bind, env=env, **worker_args))
        log.info("reward source: model %r in worker pid %d at %s", spec, worker.pid, worker.url)
        return make_scorer(worker.url, timeout_ms=timeout_ms)
    if name == "local":
        from rlrm.models import make_reward_model

        log.info("reward source: model %r in this process", spec)
        scorer = make_scorer(make_reward_model(spec))
        if watch:
            scorer.watch(str(watch), load=lambda folder: make_reward_model(folder))
        return scorer
    if name == "ray":
        from rlrm.transport.ray import RayRewardPool

        if watch:
            raise ValueError("reward.adapt swaps model versions with transport=worker or local; Ray replicas do not "
                             "swap versions yet")
        num_actors = int(transport.get("num_actors", 2))
        log.info("reward source: model %r on %d Ray actors", spec, num_actors)
        return RayRewardPool(spec, num_actors=num_actors, num_cpus=float(transport.get("num_cpus", 1)),
                             num_gpus=float(transport.get("num_gpus", 0)), address=transport.get("address"),
                             **dict(transport.get("model_kwargs") or {}))
    raise ValueError(
        f"unknown transport {name!r}; expected 'worker', 'local' or 'ray' (or set reward.source=tcp://...)"
    )


def probe_worker(client: RewardClient, url: str, timeout_ms: float = PROBE_TIMEOUT_MS) -> ModelInfo:
    """Ping the worker behind ``client`` and return its model info; :class:`RewardSourceError` if it does not answer.

    ``timeout_ms`` bounds the whole probe, split over the client's attempts (``client.retries + 1``);
    no attempt waits longer than the client's own ``timeout_ms``.
    """
    from rlrm.transport import WorkerError

    attempts = int(getattr(client, "retries", 0)) + 1
    attempt_ms = max(50.0, min(timeout_ms / attempts, float(getattr(client, "timeout_ms", timeout_ms))))
    try:
        rtt_ms = client.wait_until_answering(timeout_ms)
        info = _as_model_info(client.info(timeout_ms=attempt_ms))
    except TimeoutError:
        raise RewardSourceError(
            f"no reward worker answered at {url} within {attempts * attempt_ms / 1000:g} s: start one there "
            f"(rlrm worker --model MODEL --bind {url}), fix reward.source, or set reward.curve_server_key "
            "if the worker runs with --curve-keys"
        ) from None
    except WorkerError as e:
        raise RewardSourceError(f"the reward worker at {url} refused a ping ({e.code}: {e.message}); "
                                "run a worker of this rlrm version there") from None
    log.info("reward worker at %s answers in %.1f ms, serving %r (%s, %s)", url, rtt_ms, info.name, info.dtype,
             info.device)
    return info


def reward_model_info(scorer: DescribedScorer | None) -> dict[str, Any] | None:
    """Provenance of the model behind ``scorer`` (None for no scorer): what a run was really scored with.

    Keys: ``name``; ``checkpoint`` (the checkpoint dir or hub id the weights came from, None for a
    registered name such as ``tiny`` (random weights) or ``demo`` (packaged)); ``layout``, ``dtype``,
    ``device``, ``parameters``, ``max_frames``; ``source`` (the worker URL, or the scorer class in
    process); ``info`` (the whole :class:`~rlrm.types.ModelInfo` as a dict). Works on a closed scorer
    opened by :func:`open_reward_source`.

    >>> from rlrm.models import make_reward_model                      # doctest: +SKIP
    >>> from rlrm.transport import make_scorer                         # doctest: +SKIP
    >>> reward_model_info(make_scorer(make_reward_model("tiny")))["name"]  # doctest: +SKIP
    'tiny'
    """
    if scorer is None:
        return None
    try:
        info = _OPENED_INFO.get(scorer)
    except TypeError:  # not weak-referenceable: never remembered
        info = None
    if info is None:
        info = _as_model_info(scorer.info())
    extra = dict(info.extra or {})
    name = str(info.name)
    checkpoint = extra.get("checkpoint") or extra.get("path")
    if checkpoint is None and ("/" in name or os.path.isdir(name)):  # how make_reward_model tells a checkpoint
        checkpoint = name
    return {
        "name": name,
        "checkpoint": checkpoint,
        "layout": extra.get("layout"),
        "dtype": info.dtype,
        "device": info.device,
        "parameters": extra.get("parameters"),
        "max_frames": info.max_frames,
        "source": getattr(scorer, "url", None) or type(scorer).__name__,
        "info": info.to_dict(),
    }


def record_reward_model(scorer: DescribedScorer | None, run_dir: str | Path) -> dict[str, Any] | None:
    """Write :func:`reward_model_info` of ``scorer`` to ``run_dir/reward_model.json`` and return it (None: no file)."""
    record = reward_model_info(scorer)
    if record is not None:
        path = Path(run_dir) / REWARD_MODEL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, default=str))
    return record


def _as_model_info(info: Any) -> ModelInfo:
    """``info`` as a :class:`ModelInfo` (scorers return one; some actors return its dict form)."""
    if isinstance(info, ModelInfo):
        return info
    if isinstance(info, Mapping):
        return ModelInfo.from_dict(dict(info))
    raise TypeError(f"scorer.info() must return a ModelInfo or its dict, got {type(info).__name__}")


def _remember(scorer: DescribedScorer, info: ModelInfo) -> None:
    with contextlib.suppress(TypeError):  # not weak-referenceable: reward_model_info asks it again
        _OPENED_INFO[scorer] = info


def _check_served_model(reward: Mapping[str, Any], info: ModelInfo, url: str | None) -> None:
    """Warn when a remote worker serves another model than ``reward.model`` names (the worker wins)."""
    wanted = reward.get("model")
    if reward.get("source") and wanted and str(wanted) != info.name:
        log.warning("reward.model=%r is ignored: the worker at %s serves %r (recorded in %s)", wanted, url,
                    info.name, REWARD_MODEL_FILE)
