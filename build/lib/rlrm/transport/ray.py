"""A pool of Ray actors that each hold a reward model, behind the scorer interface.

* :class:`RayRewardPool` - a :class:`~rlrm.types.BaseScorer` (``score`` / ``score_async`` / ``info`` /
  ``close``) like :class:`~rlrm.transport.RewardClient`, but spread over ``num_actors`` model replicas
  (on one machine or a Ray cluster, one GPU each if asked).

A batch of queries is cut into contiguous chunks, one per actor, scored in parallel and put
back in order; concurrent calls rotate over the actors. Ray is imported only here; install it
with ``pip install 'rlrm[ray]'``.
"""

from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import Future
from typing import Any

from rlrm.types import BaseScorer, ModelInfo, RewardQuery, RewardResult

__all__ = ["RayRewardPool"]

log = logging.getLogger(__name__)


def _import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError as e:
        raise ImportError("RayRewardPool needs Ray: pip install 'rlrm[ray]'") from e
    return ray


class _RewardActor:
    """Ray actor body: builds the model once, then scores chunks of queries."""

    def __init__(self, model_spec: str, model_kwargs: dict[str, Any]) -> None:
        from rlrm.models.base import make_reward_model

        self.model = make_reward_model(model_spec, **model_kwargs)

    def info(self) -> dict[str, Any]:
        """The model's ModelInfo as a plain dict."""
        return self.model.info().to_dict()

    def score(self, queries: list[RewardQuery]) -> list[RewardResult]:
        """Score one chunk of queries (the pool checks the results it puts together)."""
        return list(self.model.score(queries))


class RayRewardPool(BaseScorer):
    """Score queries on ``num_actors`` Ray actors, each holding its own copy of the reward model.

    Args:
        model_spec: passed to ``make_reward_model`` inside each actor (``"tiny"``, a checkpoint dir, a hub id).
        num_actors: model replicas.
        num_cpus / num_gpus: Ray resources reserved per actor (``num_gpus=1`` puts each on its own GPU).
        address: Ray cluster to join (``"auto"``, ``"ray://head:10001"``); None starts or reuses a local one.
        **model_kwargs: passed to ``make_reward_model`` (``seed``, ``device``, ``dtype``).

    >>> pool = RayRewardPool("tiny", num_actors=2, seed=0)          # doctest: +SKIP
    >>> pool.score([RewardQuery(frames, "open the drawer")])         # doctest: +SKIP
    >>> pool.close()                                                 # doctest: +SKIP
    """

    def __init__(
        self,
        model_spec: str,
        num_actors: int = 2,
        num_cpus: float = 1,
        num_gpus: float = 0,
        address: str | None = None,
        **model_kwargs: Any,
    ) -> None:
        if num_actors < 1:
            raise ValueError(f"num_actors must be >= 1, got {num_actors}")
        ray = _import_ray()
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self._ray = ray
        self.model_spec = model_spec
        actor_cls = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(_RewardActor)
        self._actors = [actor_cls.remote(model_spec, model_kwargs) for _ in range(num_actors)]
        self._next = itertools.cycle(range(num_actors))
        self._lock = threading.Lock()
        self._info: ModelInfo | None = None

    @property
    def num_actors(self) -> int:
        """Number of model replicas."""
        return len(self._actors)

    def info(self) -> ModelInfo:
        """The model's :class:`ModelInfo` (from the first actor; all hold the same model)."""
        if self._info is None:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
            self._info = ModelInfo.from_dict(self._ray.get(self._actors[0].info.remote()))
            self._info.extra = {**self._info.extra, "ray_actors": self.num_actors}
        return self._info

    def _score_async(self, queries: list[RewardQuery], timeout_ms: float | None) -> Future:
        """Split ``queries`` over the actors; a Future of their results in the order given
        (``timeout_ms`` bounds the wait: ``TimeoutError`` past it)."""
        out: Future = Future()
        n_chunks = min(len(queries), self.num_actors)
        bounds = [round(i * len(queries) / n_chunks) for i in range(n_chunks + 1)]
        with self._lock:
            actors = [self._actors[next(self._next)] for _ in range(n_chunks)]
        refs = [a.score.remote(queries[lo:hi]) for a, lo, hi in zip(actors, bounds, bounds[1:], strict=False)]
        out.set_running_or_notify_cancel()

        def gather() -> None:
            try:
                chunks = self._ray.get(refs, timeout=None if timeout_ms is None else timeout_ms / 1000)
                out.set_result([r for chunk in chunks for r in chunk])
            except self._ray.exceptions.GetTimeoutError as e:
                out.set_exception(TimeoutError(f"Ray reward pool ({self.model_spec}) gave no results in {timeout_ms} ms"))
                log.debug("ray get timed out: %s", e)
            except BaseException as e:  # handed to the caller through the Future
                out.set_exception(e)

        threading.Thread(target=gather, name="rlrm-ray-gather", daemon=True).start()
        return out

    def _close(self) -> None:
        """Kill the actors (the Ray runtime itself is left running for other users)."""
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []

    def __repr__(self) -> str:
        return f"RayRewardPool({self.model_spec!r}, num_actors={len(self._actors)})"
