"""In-process transport: the scorer interface around a reward model living in this process.

* :class:`LocalScorer` - an :class:`~rlrm.types.AsyncScorer` (``score`` / ``score_async`` / ``info`` /
  ``close``) on a local :class:`~rlrm.models.base.RewardModel`, so code written against a remote
  worker runs unchanged on one machine and in tests.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from rlrm.types import ModelInfo, RewardQuery, RewardResult, validate_queries

__all__ = ["LocalScorer"]

log = logging.getLogger(__name__)


class LocalScorer:
    """Score queries with a reward model in this process.

    ``score_async`` runs on one background thread, so the model sees one batch at a time
    (models are not assumed thread-safe) while the caller keeps stepping its env.

    Args:
        model: anything with ``info() -> ModelInfo`` and ``score(list[RewardQuery]) -> list[RewardResult]``.

    >>> from rlrm.models import make_reward_model          # doctest: +SKIP
    >>> scorer = LocalScorer(make_reward_model("tiny"))     # doctest: +SKIP
    >>> scorer.score([RewardQuery(frames, "open the drawer")])[0].success  # doctest: +SKIP
    """

    def __init__(self, model: Any) -> None:
        if not (hasattr(model, "score") and hasattr(model, "info")):
            raise TypeError(f"model must have score() and info() (a RewardModel), got {type(model).__name__}")
        self.model = model
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    def score(self, queries: Sequence[RewardQuery], timeout_ms: float | None = None) -> list[RewardResult]:
        """Score queries now, on the calling thread (``timeout_ms`` is accepted for interface parity)."""
        queries = self._check(queries)
        if not queries:
            return []
        results = list(self.model.score(queries))
        if len(results) != len(queries):
            raise RuntimeError(f"model returned {len(results)} results for {len(queries)} queries")
        return results

    def score_async(self, queries: Sequence[RewardQuery], timeout_ms: float | None = None) -> Future:
        """Score queries on the background thread; returns a Future of ``list[RewardResult]``."""
        queries = self._check(queries)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rlrm-local-scorer")
        return self._executor.submit(self.score, queries)

    def info(self) -> ModelInfo:
        """The model's :class:`ModelInfo`."""
        return self.model.info()

    def ping(self, timeout_ms: float | None = None) -> float:
        """Always reachable: 0.0 ms."""
        return 0.0

    def close(self) -> None:
        """Wait for pending async calls and stop the background thread."""
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> LocalScorer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalScorer({type(self.model).__name__})"

    def _check(self, queries: Sequence[RewardQuery]) -> list[RewardQuery]:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        return validate_queries(queries)
