"""Several camera views per step, for a reward model that scores one video at a time.

* :data:`VIEW_MODES` - ``"tile"`` (views side by side in one frame, one query) or ``"mean"``
  (one query per view; progress averaged, success probability soft-voted).
* :func:`tile_views` - (H, W_i, 3) views -> one (H, sum W_i, 3) frame.
* :func:`split_views` - the inverse, on a (T, H, W, 3) clip of tiled frames.
* :class:`ViewMeanScorer` - a scorer that splits every query of tiled frames into one query per
  view, scores them in one batch and merges the results (``views="mean"``).

Frames are always *stored* tiled (episode buffer, videos, relabelling), so one code path serves both
modes; only scoring differs. Nothing here knows about gymnasium or torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import numpy as np

from rlrm.types import AsyncScorer, ModelInfo, RewardQuery, RewardResult

__all__ = ["VIEW_MODES", "check_views", "tile_views", "split_views", "merge_view_results", "ViewMeanScorer"]

VIEW_MODES = ("tile", "mean")


def check_views(views: str) -> str:
    """``views`` if it is one of :data:`VIEW_MODES`, else a ValueError naming them."""
    if views not in VIEW_MODES:
        raise ValueError(f"views must be one of {VIEW_MODES}, got {views!r}")
    return views


def tile_views(views: Sequence[np.ndarray], names: Sequence[str] | None = None) -> np.ndarray:
    """Put (H, W_i, 3) uint8 views side by side: (H, sum W_i, 3). All views must share H."""
    if len(views) == 0:
        raise ValueError("tile_views needs at least one view, got none")
    if len(views) == 1:
        return views[0]
    heights = {v.shape[0] for v in views}
    if len(heights) != 1:
        shapes = {n: tuple(v.shape) for n, v in zip(names or range(len(views)), views, strict=False)}
        raise ValueError(f"views to tile must share their height, got shapes {shapes}; render them at one size")
    return np.concatenate(views, axis=1)


def split_views(frames: np.ndarray, widths: Sequence[int]) -> list[np.ndarray]:
    """(T, H, sum W_i, 3) tiled clip -> one contiguous (T, H, W_i, 3) clip per view."""
    if frames.ndim != 4 or frames.shape[2] != sum(widths):
        raise ValueError(
            f"tiled frames must be (T, H, {sum(widths)}, 3) for view widths {list(widths)}, got {tuple(frames.shape)}"
        )
    edges = np.cumsum([0, *widths])
    return [np.ascontiguousarray(frames[:, :, a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def merge_view_results(results: Sequence[RewardResult]) -> RewardResult:
    """One result from the per-view results of one query: mean progress, mean (soft-vote) success."""
    progress = np.mean(np.stack([r.progress for r in results]), axis=0).astype(np.float32)
    success = np.mean(np.stack([r.success for r in results]), axis=0).astype(np.float32)
    versions = [r.version for r in results if r.version is not None]
    return RewardResult(progress=progress, success=success, version=min(versions) if versions else None)


class ViewMeanScorer:
    """Scores each query of tiled frames as one query per view and averages (``views="mean"``).

    Args:
        scorer: the scorer that does the work (local model, ``RewardClient``, Ray pool).
        widths: the view widths in pixels, or a callable returning them (a frame source that learns
            them from its first frame).
        owns: close ``scorer`` on :meth:`close`.
    """

    def __init__(self, scorer: AsyncScorer, widths: Sequence[int] | Callable[[], Sequence[int]], owns: bool = False) -> None:
        self.scorer = scorer
        self._widths = widths
        self.owns = owns

    @property
    def widths(self) -> list[int]:
        """Current view widths (pixels)."""
        w = self._widths() if callable(self._widths) else self._widths
        if not w:
            raise RuntimeError("ViewMeanScorer does not know the view widths yet (no frame was read)")
        return [int(x) for x in w]

    def score(self, queries: Sequence[RewardQuery]) -> list[RewardResult]:
        """One merged result per query; all views of all queries go to the inner scorer in one call."""
        results = self.scorer.score(self._split(queries))
        n = len(self.widths)
        return [merge_view_results(results[i * n : (i + 1) * n]) for i in range(len(queries))]

    def _split(self, queries: Sequence[RewardQuery]) -> list[RewardQuery]:
        # each view is its own episode for a streaming worker (frames uploaded once per view, not re-sent)
        widths = self.widths
        return [
            replace(q, frames=clip, episode_id=None if q.episode_id is None else f"{q.episode_id}#view{k}")
            for q in queries
            for k, clip in enumerate(split_views(q.frames, widths))
        ]

    def _merged(self, inner: Future) -> Future:
        """A future of the merged results of ``inner`` (a future of per-view results)."""
        outer: Future = Future()
        n = len(self.widths)

        def _done(f: Future) -> None:
            try:
                results = f.result()
                outer.set_result([merge_view_results(results[i : i + n]) for i in range(0, len(results), n)])
            except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
                outer.set_exception(e)

        inner.add_done_callback(_done)
        return outer

    def score_async(self, queries: Sequence[RewardQuery]) -> Future:
        """Like :meth:`score`, returning a ``concurrent.futures.Future`` (the inner scorer's ``score_async``)."""
        return self._merged(self.scorer.score_async(self._split(queries)))

    def score_deferred(self, build: Callable[[], Sequence[RewardQuery]], timeout_ms: float | None = None) -> Future:
        """Like :meth:`score_async` with the queries built (and split) on the inner client's I/O thread."""
        inner = getattr(self.scorer, "score_deferred", None)
        if inner is None:
            return self.score_async(build())
        return self._merged(inner(lambda: self._split(build()), timeout_ms))

    def info(self) -> ModelInfo:
        """The inner scorer's model info."""
        return self.scorer.info()

    def close(self) -> None:
        """Close the inner scorer if this object owns it."""
        if self.owns and hasattr(self.scorer, "close"):
            self.scorer.close()

    def __getattr__(self, name: str) -> Any:
        # statistics, timeouts, etc. of the inner scorer stay reachable; scoring never bypasses the split
        if name == "scorer" or name.startswith("score"):
            raise AttributeError(name)
        return getattr(self.scorer, name)
