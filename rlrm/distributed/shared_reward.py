"""One reward source for all env runners of a distributed run, so their queries batch together.

* :class:`RewardEndpoint` - how a runner reaches the run's reward source (picklable, sent to every
  runner): nothing (the env's own reward), a worker URL, or the name of the shared reward actor.
* :class:`SharedRewardActor` - Ray actor body holding the run's scorer (a
  :class:`~rlrm.distributed.RayRewardPool` for ``transport=ray``, the model itself for
  ``transport=local``); requests arriving while a batch is scored form the next batch.
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
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from rlrm.types import ModelInfo, RewardQuery, RewardResult

__all__ = ["RewardEndpoint", "SharedRewardActor", "SharedRewardClient", "open_shared_reward"]

log = logging.getLogger(__name__)

ENDPOINT_KINDS = ("none", "worker", "actor")


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

    def connect(self) -> Any:
        """A scorer for this endpoint in the calling process (None for the env's own reward)."""
        if self.kind == "none":
            return None
        if self.kind == "worker":
            from rlrm.transport import make_scorer

            return make_scorer(self.url, **self.client_kwargs)
        return SharedRewardClient(self.actor_name, self.namespace)


class SharedRewardActor:
    """Ray actor body: open the run's reward source once and score every runner's queries on it.

    Args:
        reward / transport: the run's ``reward`` and ``transport`` config groups (plain dicts), as
            :func:`rlrm.rl.reward_source.open_reward_source` takes them.
    """

    def __init__(self, reward: Mapping[str, Any], transport: Mapping[str, Any]) -> None:
        from rlrm.rl.reward_source import open_reward_source

        self._stack = contextlib.ExitStack()
        self.scorer = self._stack.enter_context(open_reward_source(dict(reward), dict(transport)))
        self._waiting: list[tuple[list[RewardQuery], asyncio.Future]] = []
        self._busy = False
        self.batches = 0
        self.queries = 0

    async def score(self, queries: list[RewardQuery]) -> list[RewardResult]:
        """Score ``queries`` together with whatever other runners sent meanwhile; results in order."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((list(queries), done))
        if not self._busy:
            self._busy = True
            asyncio.get_running_loop().create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        """Score waiting requests as one batch, again and again until none wait."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                flat = [q for queries, _ in batch for q in queries]
                self.batches += 1
                self.queries += len(flat)
                try:
                    results = await asyncio.wrap_future(self.scorer.score_async(flat))
                except Exception as e:  # every caller of this batch gets the error
                    for _, done in batch:
                        done.set_exception(e)
                    continue
                start = 0
                for queries, done in batch:
                    done.set_result(results[start:start + len(queries)])
                    start += len(queries)
        finally:
            self._busy = False

    async def info(self) -> dict[str, Any]:
        """The scorer's :class:`ModelInfo` as a dict."""
        info = self.scorer.info()
        return info.to_dict() if isinstance(info, ModelInfo) else dict(info)

    async def provenance(self) -> dict[str, Any] | None:
        """What the shared scorer really serves (:func:`rlrm.rl.reward_source.reward_model_info`)."""
        from rlrm.rl.reward_source import reward_model_info

        return reward_model_info(self.scorer)

    async def stats(self) -> dict[str, int]:
        """Batches scored and queries in them (how well runners' queries batched together)."""
        return {"batches": self.batches, "queries": self.queries}

    async def close(self) -> None:
        """Close the scorer (and the Ray pool or model behind it)."""
        self._stack.close()


class SharedRewardClient:
    """Scorer interface over the named :class:`SharedRewardActor` (what a runner's reward wrapper calls).

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

    def score_async(self, queries: Sequence[RewardQuery], timeout_ms: float | None = None) -> Future:
        """A Future of ``list[RewardResult]`` for ``queries`` (validated by the scorer inside the actor)."""
        return self._actor.score.remote(list(queries)).future()

    def score(self, queries: Sequence[RewardQuery], timeout_ms: float | None = None) -> list[RewardResult]:
        """Score ``queries`` and wait (``timeout_ms``: ``TimeoutError`` past it)."""
        return self.score_async(queries).result(timeout=None if timeout_ms is None else timeout_ms / 1000)

    def info(self) -> ModelInfo:
        """The shared scorer's :class:`ModelInfo`."""
        return ModelInfo.from_dict(self._ray.get(self._actor.info.remote()))

    def close(self) -> None:
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
            kwargs: dict[str, Any] = {"timeout_ms": int(transport.get("timeout_ms", 30000))}
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
