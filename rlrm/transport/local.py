"""In-process transport: the scorer interface around a reward model living in this process.

* :class:`LocalScorer` - an :class:`~rlrm.types.AsyncScorer` (``score`` / ``score_async`` / ``info`` /
  ``close``) on a local :class:`~rlrm.models.base.RewardModel`, so code written against a remote
  worker runs unchanged on one machine and in tests. Like the worker it serves model versions:
  ``swap`` (or ``watch`` a versions folder) replaces the model between calls, and every result names
  the ``version`` that scored it.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from rlrm.transport.versions import VersionWatcher
from rlrm.types import BaseScorer, ModelInfo, RewardQuery, RewardResult

__all__ = ["LocalScorer"]

log = logging.getLogger(__name__)


class LocalScorer(BaseScorer):
    """Score queries with a reward model in this process.

    ``score`` runs on the calling thread; ``score_async`` on one background thread, so the model sees
    one batch at a time (models are not assumed thread-safe) while the caller keeps stepping its env.
    Queries and results are checked by :class:`~rlrm.types.BaseScorer`.

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
        self.version = 0
        self._executor: ThreadPoolExecutor | None = None
        self._model_lock = threading.Lock()  # a swap waits for the call in progress: one version per call
        self._watcher: VersionWatcher | None = None

    def _score(self, queries: list[RewardQuery], timeout_ms: float | None) -> list[RewardResult]:
        with self._model_lock:
            results = list(self.model.score(queries))  # timeout_ms is accepted for interface parity
            for r in results:
                r.version = self.version
        return results

    def swap(self, model: Any, version: int) -> None:
        """Score with ``model`` as ``version`` from the next call on (a call in progress finishes first)."""
        if not callable(getattr(model, "score", None)):
            raise TypeError(f"model must have score() (a RewardModel), got {type(model).__name__}")
        if isinstance(version, bool) or not isinstance(version, int) or version <= self.version:
            raise ValueError(f"version must be an int newer than the served version {self.version}, got {version!r}")
        with self._model_lock:
            self.model, self.version = model, version
        log.info("in-process reward model now at version %d", version)

    def watch(self, root: str, load: Any, poll_s: float = 0.5) -> VersionWatcher:
        """Poll the versions folder ``root`` and swap in each new version, loaded with ``load(folder) -> model``."""
        if self._watcher is not None:
            raise RuntimeError(f"already watching {self._watcher.root}")
        self._watcher = VersionWatcher(root, lambda v, folder: self.swap(load(str(folder)), v), start_after=self.version,
                                       poll_s=poll_s).start()
        return self._watcher

    def _score_async(self, queries: list[RewardQuery], timeout_ms: float | None) -> Future:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rlrm-local-scorer")
        return self._executor.submit(self._score, queries, timeout_ms)

    def info(self) -> ModelInfo:
        """The model's :class:`ModelInfo`."""
        return self.model.info()

    def ping(self, timeout_ms: float | None = None) -> float:
        """Always reachable: 0.0 ms."""
        return 0.0

    def _close(self) -> None:
        """Wait for pending async calls and stop the background thread (and the version watcher)."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __repr__(self) -> str:
        return f"LocalScorer({type(self.model).__name__})"
