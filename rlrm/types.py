"""Core data types shared by every layer of rlrm.

* :class:`RewardQuery` - frames of one episode (or a subsample) plus the task text to score.
* :class:`RewardResult` - per-frame progress and success probability for one query.
* :class:`ModelInfo` - what a reward model is and what input it expects.
* :class:`Scorer` - the contract every reward source meets: ``score(queries) -> results``, ``close()``.
* :class:`AsyncScorer` - a :class:`Scorer` that also scores in the background (``score_async``) and
  describes its model (``info``): what ``LocalScorer``, ``RewardClient`` and ``RayRewardPool`` offer.
* :func:`validate_queries` - the one check of a query list every scorer runs before scoring.
* :func:`validate_frames` - the check of one (T, H, W, 3) uint8 frame array.
* :func:`float_frames_hint` - how to turn float images into uint8, chosen by their value range.
* :class:`InvalidQueriesError` - what :func:`validate_queries` raises on a malformed list.

These types are plain numpy + dataclasses + typing protocols: they cross the wire
(``rlrm.transport``), so nothing here imports torch or gymnasium.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "RewardQuery",
    "RewardResult",
    "ModelInfo",
    "Scorer",
    "AsyncScorer",
    "validate_queries",
    "validate_frames",
    "float_frames_hint",
    "InvalidQueriesError",
]


def float_frames_hint(frames: np.ndarray, name: str = "frames") -> str:
    """The conversion to uint8 that fits float ``frames``' values: [0, 1] scaled by 255, 0..255 cast, else normalised.

    >>> float_frames_hint(np.full((2, 2, 3), 200.0))
    'float values in 0..255: use np.clip(frames, 0, 255).astype(np.uint8)'
    """
    finite = frames[np.isfinite(frames)] if frames.size else frames
    if finite.size == 0:
        return f"float {name} hold no finite value (NaN/inf): render real images"
    low, high = float(finite.min()), float(finite.max())
    if low >= 0.0 and high <= 1.0:
        return f"float values in [0, 1]: use (np.clip({name}, 0, 1) * 255).astype(np.uint8)"
    if low >= 0.0 and high <= 255.0:
        return f"float values in 0..255: use np.clip({name}, 0, 255).astype(np.uint8)"
    return (f"float values in [{low:.3g}, {high:.3g}], neither [0, 1] nor 0..255: undo the normalisation "
            f"that produced them, then convert to uint8")


def validate_frames(frames: Any, name: str = "frames") -> np.ndarray:
    """Check that ``frames`` is a non-empty uint8 array of shape (T, H, W, 3) and return it.

    Raises:
        ValueError: naming the bad dtype/shape and the expected one.
    """
    if not isinstance(frames, np.ndarray):
        raise ValueError(
            f"{name} must be a numpy uint8 array of shape (T,H,W,3), got {type(frames).__name__}"
        )
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        hint = ""
        if frames.ndim == 4 and frames.shape[1] == 3 and frames.shape[-1] != 3:
            hint = " (looks channel-first: use frames.transpose(0, 2, 3, 1))"
        elif frames.dtype.kind == "f":
            hint = f" ({float_frames_hint(frames)})"
        elif frames.ndim == 3:
            hint = " (a single image: use frames[None])"
        raise ValueError(
            f"{name} must be uint8 (T,H,W,3), got {frames.dtype} {tuple(frames.shape)}{hint}"
        )
    if frames.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one frame (T>=1), got T=0 {tuple(frames.shape)}")
    if frames.shape[1] == 0 or frames.shape[2] == 0:
        raise ValueError(f"{name} must have H,W >= 1, got {tuple(frames.shape)}")
    return frames


def _validate_task(task: Any, name: str = "task") -> None:
    if not isinstance(task, str) or not task.strip():
        raise ValueError(f"{name} must be a non-empty instruction string, got {task!r}")


@dataclass
class RewardQuery:
    """Frames of one episode to score against a task sentence.

    Args:
        frames: (T, H, W, 3) uint8, oldest first. Frame i's scores depend only on frames <= i.
        task: the instruction, e.g. ``"put the cube in the bowl"``; must not be empty.
        episode_id: optional id for logging / routing.
        frame_index: optional (T,) int, the step index of each sent frame within the episode.
    """

    frames: np.ndarray
    task: str
    episode_id: str | None = None
    frame_index: np.ndarray | None = None

    def __post_init__(self) -> None:
        validate_frames(self.frames)
        _validate_task(self.task)
        if self.frame_index is not None:
            self.frame_index = np.asarray(self.frame_index, dtype=np.int64)
            if self.frame_index.shape != (self.frames.shape[0],):
                raise ValueError(
                    f"frame_index must have shape ({self.frames.shape[0]},) to match frames, "
                    f"got {self.frame_index.shape}"
                )

    @property
    def num_frames(self) -> int:
        """T, the number of frames in this query."""
        return int(self.frames.shape[0])


@dataclass
class RewardResult:
    """Per-frame model outputs for one :class:`RewardQuery`.

    Args:
        progress: (T,) float32 in [0, 1], expected task progress at each sent frame.
        success: (T,) float32 in [0, 1], probability the task is done at each sent frame.
    """

    progress: np.ndarray
    success: np.ndarray

    def __post_init__(self) -> None:
        self.progress = np.asarray(self.progress, dtype=np.float32).reshape(-1)
        self.success = np.asarray(self.success, dtype=np.float32).reshape(-1)
        if self.progress.shape != self.success.shape:
            raise ValueError(
                f"progress and success must have the same length, got {self.progress.shape} "
                f"and {self.success.shape}"
            )

    def __len__(self) -> int:
        return int(self.progress.shape[0])


@dataclass
class ModelInfo:
    """Static description of a reward model.

    Args:
        name: model spec or checkpoint id, e.g. ``"tiny"`` or ``"robometer/Robometer-4B"``.
        max_frames: frames per query the model was trained with (the dense reward sends <= this).
        image_size: nominal (H, W) frames are resized towards; None when any size works.
        progress_bins: number of progress bins of the progress head.
        device / dtype: where and how the model runs.
        extra: anything else worth reporting (parameter count, layout, ...).
    """

    name: str
    max_frames: int = 8
    image_size: tuple[int, int] | None = None
    progress_bins: int = 10
    device: str = "cpu"
    dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (msgpack/JSON friendly)."""
        d = asdict(self)
        if d["image_size"] is not None:
            d["image_size"] = list(d["image_size"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        if d.get("image_size") is not None:
            d["image_size"] = tuple(d["image_size"])
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


class InvalidQueriesError(TypeError, ValueError):
    """A query list that is not a list of :class:`RewardQuery`.

    A ``TypeError`` (the container or an item has the wrong type) that is also a ``ValueError``,
    so callers that catch either keep working.
    """


def validate_queries(queries: Any) -> list[RewardQuery]:
    """Check that ``queries`` is a sequence of valid :class:`RewardQuery` and return it as a list.

    Every scorer (in-process, ZeroMQ client, Ray pool) calls this before scoring, so a bad call
    fails the same way, on the caller's thread, wherever the model runs. Each query's frames and
    task are re-checked, since fields may have been reassigned after construction.

    Raises:
        InvalidQueriesError: ``queries`` is a single query, not a sequence, or holds a non-query;
            the message names the bad type and the expected one.
        ValueError: a query's frames or task are malformed (see :func:`validate_frames`).

    >>> validate_queries([])
    []
    >>> validate_queries(RewardQuery(np.zeros((1, 4, 4, 3), np.uint8), "reach"))
    Traceback (most recent call last):
    ...
    rlrm.types.InvalidQueriesError: queries must be a list of RewardQuery, got a single RewardQuery; wrap it in a list: [query]
    """
    if isinstance(queries, RewardQuery):
        raise InvalidQueriesError(
            "queries must be a list of RewardQuery, got a single RewardQuery; wrap it in a list: [query]"
        )
    if isinstance(queries, (str, bytes)) or not isinstance(queries, Sequence):
        raise InvalidQueriesError(f"queries must be a list of RewardQuery, got {type(queries).__name__}")
    for i, q in enumerate(queries):
        if not isinstance(q, RewardQuery):
            hint = " (wrap frames in RewardQuery(frames, task))" if isinstance(q, np.ndarray) else ""
            raise InvalidQueriesError(f"queries[{i}] must be a RewardQuery, got {type(q).__name__}{hint}")
        validate_frames(q.frames, name=f"queries[{i}].frames")
        _validate_task(q.task, name=f"queries[{i}].task")
    return list(queries)


@runtime_checkable
class Scorer(Protocol):
    """Anything that turns queries into results: the contract the reward wrappers and tools rely on.

    ``score`` returns one :class:`RewardResult` per query, in order, one value per sent frame;
    ``close`` releases what the scorer holds (sockets, threads, actors). ``isinstance(x, Scorer)``
    checks that both methods exist.
    """

    def score(self, queries: Sequence[RewardQuery]) -> list[RewardResult]:
        """Score each query; results are in the order of ``queries``."""
        ...

    def close(self) -> None:
        """Release sockets, threads or actors; the scorer is unusable afterwards."""
        ...


@runtime_checkable
class AsyncScorer(Scorer, Protocol):
    """A :class:`Scorer` that can also score in the background and describe its model.

    What :class:`~rlrm.transport.LocalScorer`, :class:`~rlrm.transport.RewardClient` and
    :class:`~rlrm.distributed.RayRewardPool` offer, and what the asynchronous reward needs.
    """

    def score_async(self, queries: Sequence[RewardQuery]) -> Future:
        """Start scoring and return a Future of ``list[RewardResult]`` (one per query, in order)."""
        ...

    def info(self) -> ModelInfo:
        """The :class:`ModelInfo` of the model behind this scorer."""
        ...
