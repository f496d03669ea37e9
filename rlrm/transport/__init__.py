"""How rewards get from a reward model to an RL process: in-process, or over ZeroMQ.

* :func:`make_scorer` - turn a source (worker URL, reward model, or scorer) into a scorer.
* :func:`is_scorer` - whether an object already is an :class:`~rlrm.types.AsyncScorer`.
* :class:`RewardClient` - scorer talking to a remote :class:`RewardWorker` (``tcp://``, ``ipc://``).
* :class:`LocalScorer` - scorer around a model in this process.
* :class:`RayRewardPool` - scorer over Ray actors, one model replica each (Ray imported when built).
* :class:`RewardWorker` - serves a model on a ROUTER socket with dynamic batching.
* :func:`spawn_worker` / :class:`WorkerProcess` - a worker as a real subprocess.
* :class:`WorkerError` - the worker answered with an error code.
* :data:`URL_SCHEMES` - the endpoint schemes a client reaches a worker on (``tcp://``, ``ipc://``).

Every scorer here is a :class:`rlrm.types.BaseScorer` and meets :class:`rlrm.types.AsyncScorer`:
``score(queries) -> results``, ``score_async(queries) -> Future``, ``info() -> ModelInfo`` and
``close()``; queries are validated and results checked once, in the base class
(:func:`rlrm.types.validate_queries`, :func:`rlrm.types.check_results`). Nothing in this package imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlrm.transport.client import RewardClient, WorkerError
from rlrm.transport.local import LocalScorer
from rlrm.transport.process import WorkerProcess, spawn_worker
from rlrm.transport.protocol import URL_SCHEMES, check_worker_url
from rlrm.transport.ray import RayRewardPool
from rlrm.transport.server import RewardWorker
from rlrm.types import AsyncScorer

if TYPE_CHECKING:
    from rlrm.models.base import RewardModel

__all__ = [
    "make_scorer",
    "is_scorer",
    "RewardClient",
    "LocalScorer",
    "RayRewardPool",
    "RewardWorker",
    "WorkerError",
    "WorkerProcess",
    "spawn_worker",
    "URL_SCHEMES",
]


def is_scorer(obj: Any) -> bool:
    """True if ``obj`` already is an :class:`~rlrm.types.AsyncScorer` (score, score_async, info, close)."""
    return isinstance(obj, AsyncScorer)


def make_scorer(source: str | RewardModel | AsyncScorer, **client_kwargs: Any) -> AsyncScorer:
    """Turn ``source`` into a scorer.

    Args:
        source: a worker URL (``"tcp://127.0.0.1:5555"``, ``"ipc://..."``) -> :class:`RewardClient`;
            a :class:`~rlrm.models.base.RewardModel` -> :class:`LocalScorer`; a scorer -> itself.
        **client_kwargs: for URLs, passed to :class:`RewardClient` (``timeout_ms``, ``retries``,
            ``curve_server_key``, ``enc``).

    >>> scorer = make_scorer("tcp://127.0.0.1:5555", timeout_ms=5000)   # doctest: +SKIP
    >>> scorer = make_scorer(make_reward_model("tiny"))                  # doctest: +SKIP
    """
    if isinstance(source, str):
        if "://" in source:  # a URL: a worker endpoint, or an error saying which schemes reach one
            return RewardClient(check_worker_url(source, name="reward source"), **client_kwargs)
        raise ValueError(
            f"reward source {source!r} is not a worker URL: expected one starting with {list(URL_SCHEMES)} "
            "('tcp://host:port', 'ipc:///path'), a RewardModel (make_reward_model(spec)), or a scorer"
        )
    if client_kwargs:
        raise TypeError(f"client options {sorted(client_kwargs)} only apply to worker URLs, got {type(source).__name__}")
    if is_scorer(source):
        return source
    if callable(getattr(source, "score", None)) and callable(getattr(source, "info", None)):
        return LocalScorer(source)
    raise TypeError(
        f"cannot make a scorer from {type(source).__name__}: expected a worker URL, a RewardModel "
        "(with score() and info()), or a scorer (with score, score_async, info, close)"
    )
