"""One reward source for all env runners of a distributed run, so their queries batch together.

* :class:`RewardEndpoint` - how a runner reaches the run's reward source (picklable, sent to every
  runner): nothing (the env's own reward), a worker URL, or the name of the shared reward actor.
* :class:`SharedRewardActor` - Ray actor body holding the run's scorer (a
  :class:`~rlrm.transport.RayRewardPool` for ``transport=ray``, the model itself for
  ``transport=local``) behind the worker's batcher: requests arriving while a batch is scored form the next batch.
* :class:`SharedRewardClient` - the scorer interface (``score``, ``score_async``, ``info``, ``close``)
  over that named actor, used inside runners.
* :func:`open_shared_reward` - context manager in the driver: start what the run's ``reward`` and
  ``transport`` configs ask for and yield its :class:`RewardEndpoint`.

A ``rlrm worker`` (``transport=worker`` or ``reward.source``) already batches requests from many
clients, so runners connect to it directly; the model and the Ray pool are wrapped in a named
actor that batches across runners the same way (continuous batching: an idle scorer runs a
request at once, requests that arrive while it is busy go together next).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from rlrm.config import CLIENT_TIMEOUT_MS
from rlrm.transport.batching import ContinuousBatcher, QueryJob
from rlrm.types import AsyncScorer, BaseScorer, ModelInfo, RewardQuery, RewardResult

__all__ = ["RewardEndpoint", "SharedRewardActor", "SharedRewardClient", "open_shared_reward"]

log = logging.getLogger(__name__)

ENDPOINT_KINDS = ("none", "worker", "actor")
_MAX_BATCH = 16  # queries per scorer call, as a worker's default --max-batch
_MAX_QUEUE = 4096  # queries waiting: every runner's in-flight queries fit


@dataclass
class RewardEndpoint:
    """Where runners get rewards from.

    Args:
        kind: ``"none"`` (the env's own reward), ``"worker"`` (a ZMQ worker at ``url``) or ``"actor"``
            (the named :class:`SharedRewardActor` ``actor_name`` in Ray ``namespace``).
        url / client_kwargs: the worker and the :class:`~rlrm.transport.RewardClient` options.
        model: provenance of the served model (:func:`rlrm.rl.reward_source.reward_model_info`), None without one.
    """

    kind: str
    url: str | None = None
    client_kwargs: dict[str, Any] = field(default_factory=dict)
    actor_name: str | None = None
    namespace: str | None = None
    model: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ENDPOINT_KINDS:
            raise ValueError(f"RewardEndpoint kind must be one of {list(ENDPOINT_KINDS)}, got {self.kind!r}")

    def connect(self) -> AsyncScorer | None:
        """A scorer for this endpoint in the calling process (None for the env's own reward)."""
        if self.kind == "none":
            return None
        if self.kind == "worker":
            from rlrm.transport import make_scorer

            return make_scorer(self.url, **self.client_kwargs)
        return SharedRewardClient(self.actor_name, self.namespace)


class SharedRewardActor:
    """Ray actor body: open the run's reward source once and score every runner's queries on it.

    Queries go through the worker's :class:`~rlrm.transport.batching.ContinuousBatcher` (as
    :class:`~rlrm.transport.batching.QueryJob` s), run on one thread of this actor: an idle scorer runs
    a request at once, requests that arrive meanwhile form the next batch (up to ``max_batch`` queries).

    Args:
        reward / transport: the run's ``reward`` and ``transport`` config groups (plain dicts), as
            :func:`rlrm.rl.reward_source.open_reward_source` takes them; ``transport.max_batch`` and
            ``transport.max_wait_ms`` (if set) tune the batcher as they tune a worker.
    """

    def __init__(self, reward: Mapping[str, Any], transport: Mapping[str, Any]) -> None:
        from rlrm.rl.reward_source import open_reward_source

        self._stack = contextlib.ExitStack()
        self.scorer = self._stack.enter_context(open_reward_source(dict(reward), dict(transport)))
        self.batcher = ContinuousBatcher(self.scorer, max_batch=int(transport.get("max_batch", _MAX_BATCH)),
                                         max_wait_ms=float(transport.get("max_wait_ms", 0.0)), max_queue=_MAX_QUEUE)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="rlrm-shared-reward", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        """The batcher thread: take the next batch, score it, answer its callers; until closed."""
        while not self._stop.is_set():
            batch = self.batcher.next_batch(self._stop)
            if batch:
                self.batcher.run(batch)

    async def score(self, queries: list[RewardQuery]) -> list[RewardResult]:
        """Score ``queries`` together with whatever other runners sent meanwhile; results in order."""
        done: Future = Future()
        busy = self.batcher.offer(QueryJob(list(queries), done))
        if busy is not None:
            raise RuntimeError(f"shared reward actor: {busy}")
        return await asyncio.wrap_future(done)

    async def info(self) -> dict[str, Any]:
        """The scorer's :class:`ModelInfo` as a dict."""
        info = self.scorer.info()
        return info.to_dict() if isinstance(info, ModelInfo) else dict(info)

    async def provenance(self) -> dict[str, Any] | None:
        """What the shared scorer really serves (:func:`rlrm.rl.reward_source.reward_model_info`)."""
        from rlrm.rl.reward_source import reward_model_info

        return reward_model_info(self.scorer)

    async def stats(self) -> dict[str, Any]:
        """The batcher's counters (batches, items, batch sizes, queue and inference time): how well
        runners' queries batched together."""
        return self.batcher.stats()

    async def close(self) -> None:
        """Stop the batcher thread (the batch in progress finishes), then close the scorer."""
        self._stop.set()
        self.batcher.wake()
        self._thread.join(timeout=60)
        self._stack.close()


class SharedRewardClient(BaseScorer):
    """Scorer over the named :class:`SharedRewardActor` (what a runner's reward wrapper calls); queries and
    results are checked by :class:`~rlrm.types.BaseScorer`, here in the runner.

    Args:
        actor_name / namespace: the shared actor's Ray name and namespace.

    >>> client = SharedRewardClient("rlrm-reward-1a2b", "rlrm")         # doctest: +SKIP
    >>> client.score([RewardQuery(frames, "open the drawer")])          # doctest: +SKIP
    """

    def __init__(self, actor_name: str, namespace: str | None = None) -> None:
        import ray

        self._ray = ray
        self.actor_name = actor_name
        self._actor = ray.get_actor(actor_name, namespace=namespace)

    def _score_async(self, queries: list[RewardQuery], timeout_ms: float | None) -> Future:
        return self._actor.score.remote(queries).future()

    def _score(self, queries: list[RewardQuery], timeout_ms: float | None) -> list[RewardResult]:
        """Wait for the actor (``timeout_ms``: ``TimeoutError`` past it)."""
        return self._score_async(queries, timeout_ms).result(timeout=None if timeout_ms is None else timeout_ms / 1000)

    def info(self) -> ModelInfo:
        """The shared scorer's :class:`ModelInfo`."""
        return ModelInfo.from_dict(self._ray.get(self._actor.info.remote()))

    def _close(self) -> None:
        """Nothing to release here: the driver owns the shared actor."""

    def __repr__(self) -> str:
        return f"SharedRewardClient({self.actor_name!r})"


@contextlib.contextmanager
def open_shared_reward(cfg: Mapping[str, Any], name: str) -> Iterator[RewardEndpoint]:
    """Start the run's reward source for many runners and yield how they reach it; stop it on exit.

    * ``reward.kind=env``: nothing.
    * ``reward.source`` or ``transport=worker``: the worker (connected to, or spawned here as in a
      single-process run); runners connect to its URL.
    * ``transport=local`` / ``transport=ray``: a named :class:`SharedRewardActor` ``name`` holding the
      model or the Ray pool.
    """
    reward, transport = dict(cfg["reward"]), dict(cfg["transport"])
    if reward.get("kind") == "env":
        yield RewardEndpoint("none")
        return
    if reward.get("source") or transport.get("name") == "worker":
        from rlrm.rl.reward_source import open_reward_source, reward_model_info

        with open_reward_source(reward, transport) as scorer:
            kwargs: dict[str, Any] = {"timeout_ms": int(transport.get("timeout_ms", CLIENT_TIMEOUT_MS))}
            if reward.get("source"):
                kwargs.update(curve_server_key=reward.get("curve_server_key") or None, enc=reward.get("enc") or "raw")
            log.info("runners share the reward worker at %s", scorer.url)
            yield RewardEndpoint("worker", url=scorer.url, client_kwargs=kwargs, model=reward_model_info(scorer))
        return
    import ray

    namespace = ray.get_runtime_context().namespace
    actor = ray.remote(SharedRewardActor).options(name=name, namespace=namespace, num_cpus=0,
                                                  max_concurrency=1000).remote(reward, transport)
    try:
        info = ModelInfo.from_dict(ray.get(actor.info.remote()))  # waits for the model (or pool) to load
        log.info("runners share reward actor %r (%s, transport=%s)", name, info.name, transport.get("name"))
        yield RewardEndpoint("actor", actor_name=name, namespace=namespace,
                             model=ray.get(actor.provenance.remote()))
    finally:
        with contextlib.suppress(Exception):  # a dead actor has nothing left to close
            ray.get(actor.close.remote(), timeout=30)
        ray.kill(actor)
