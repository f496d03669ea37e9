"""Core data types shared by every layer of rlrm.

* :class:`RewardQuery` - frames of one episode (or a subsample) plus the task text to score.
* :class:`RewardResult` - per-frame progress and success probability for one query.
* :class:`ModelInfo` - what a reward model is and what input it expects.
* :class:`Scorer` - the contract every reward source meets: ``score(queries) -> results``, ``close()``.
* Optional abilities, each a named protocol: :class:`DescribedScorer` (``info``), :class:`AsyncScorer`
  (+ ``score_async``: what ``LocalScorer``, ``RewardClient`` and ``RayRewardPool`` offer) and
  :class:`DeferredScorer` (+ ``score_deferred``: builds queries on its own thread, ``RewardClient``).
* :class:`BaseScorer` - the base class of every scorer: validates queries and checks results once.
* :func:`validate_queries` - the one check of a query list every scorer runs before scoring.
* :func:`check_results` / :func:`checked_future` / :class:`ResultsMismatchError` - the one check of a
  scorer's answer (one result per query, one value per sent frame).
* :func:`validate_frames` - the check of one (T, H, W, 3) uint8 frame array.
* :func:`float_frames_hint` - how to turn float images into uint8, chosen by their value range.
* :class:`InvalidQueriesError` - what :func:`validate_queries` raises on a malformed list.

These types are plain numpy + dataclasses + typing protocols: they cross the wire
(``rlrm.transport``), so nothing here imports torch or gymnasium.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "RewardQuery",
    "RewardResult",
    "ModelInfo",
    "Scorer",
    "DescribedScorer",
    "AsyncScorer",
    "DeferredScorer",
    "BaseScorer",
    "validate_queries",
    "check_results",
    "checked_future",
    "ResultsMismatchError",
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
        version: the reward-model version that scored it (0: the model a server started with; each
            version a reward trainer publishes counts up), or None when the source does not say.
    """

    progress: np.ndarray
    success: np.ndarray
    version: int | None = None

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


class ResultsMismatchError(RuntimeError):
    """A scorer's answer does not fit its queries: not one :class:`RewardResult` per query, or not one value
    per sent frame. Raised by :func:`check_results`, wherever the model runs."""


def check_results(queries: Sequence[RewardQuery], results: Any, source: str = "scorer") -> list[RewardResult]:
    """Check that ``results`` holds one :class:`RewardResult` per query with one value per sent frame; return it as a list.

    The one check of a scorer's answer: :class:`BaseScorer` runs it on every result it returns, the
    worker on its model's output, the client on a worker's reply.

    Raises:
        ResultsMismatchError: naming ``source``, what it returned and what was expected.

    >>> q = RewardQuery(np.zeros((2, 4, 4, 3), np.uint8), "reach")
    >>> check_results([q], [RewardResult([0.1], [0.0])], "model")
    Traceback (most recent call last):
    ...
    rlrm.types.ResultsMismatchError: model returned 1 values for query 0 of 2 frames; expected one per sent frame
    """
    if not isinstance(results, (list, tuple)) or len(results) != len(queries):
        got = len(results) if isinstance(results, (list, tuple)) else type(results).__name__
        raise ResultsMismatchError(f"{source} returned {got} results for {len(queries)} queries; "
                                   "expected one RewardResult per query")
    for i, (q, r) in enumerate(zip(queries, results, strict=True)):
        if not isinstance(r, RewardResult):
            raise ResultsMismatchError(f"{source} returned a {type(r).__name__} for query {i}; expected a RewardResult")
        if len(r) != q.num_frames:
            raise ResultsMismatchError(f"{source} returned {len(r)} values for query {i} of {q.num_frames} frames; "
                                       "expected one per sent frame")
    return list(results)


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
class DescribedScorer(Scorer, Protocol):
    """A :class:`Scorer` that describes the model behind it (``info``): runs record it, wrappers read ``max_frames``."""

    def info(self) -> ModelInfo:
        """The :class:`ModelInfo` of the model behind this scorer."""
        ...


@runtime_checkable
class AsyncScorer(DescribedScorer, Protocol):
    """A :class:`DescribedScorer` that can also score in the background (``score_async``).

    What :class:`BaseScorer` subclasses (:class:`~rlrm.transport.LocalScorer`,
    :class:`~rlrm.transport.RewardClient`, :class:`~rlrm.transport.RayRewardPool`) offer, and what the
    asynchronous reward needs.
    """

    def score_async(self, queries: Sequence[RewardQuery]) -> Future:
        """Start scoring and return a Future of ``list[RewardResult]`` (one per query, in order)."""
        ...


@runtime_checkable
class DeferredScorer(AsyncScorer, Protocol):
    """An :class:`AsyncScorer` that can build the queries itself, off the caller's thread (``score_deferred``).

    :class:`~rlrm.transport.RewardClient` does (on its I/O thread), so an env loop only hands over a callable.
    """

    def score_deferred(self, build: Callable[[], Sequence[RewardQuery]]) -> Future:
        """Call ``build()`` on the scorer's own thread and score what it returns; a Future of the results."""
        ...


class BaseScorer:
    """The shared half of every scorer: queries validated and results checked once, here.

    ``score`` and ``score_async`` refuse a closed scorer, run :func:`validate_queries`, answer an empty
    list at once, and check what comes back with :func:`check_results`. A subclass implements
    ``_score_async(queries, timeout_ms) -> Future`` (and ``_score`` when it scores on the calling
    thread), ``info()`` and ``_close()``; it is a context manager that closes on exit.

    >>> class Constant(BaseScorer):
    ...     def _score(self, queries, timeout_ms):
    ...         return [RewardResult(np.full(q.num_frames, 0.5), np.zeros(q.num_frames)) for q in queries]
    ...     def info(self):
    ...         return ModelInfo("constant")
    >>> Constant().score([RewardQuery(np.zeros((3, 4, 4, 3), np.uint8), "reach")])[0].progress
    array([0.5, 0.5, 0.5], dtype=float32)
    """

    _closed: bool = False

    def score(self, queries: Sequence[RewardQuery], timeout_ms: float | None = None) -> list[RewardResult]:
        """Score ``queries`` and wait; one :class:`RewardResult` per query, in order (``TimeoutError`` past ``timeout_ms``)."""
        queries = self._validated(queries)
        if not queries:
            return []
        return check_results(queries, self._score(queries, timeout_ms), repr(self))

    def score_async(self, queries: Sequence[RewardQuery], timeout_ms: float | None = None) -> Future:
        """Start scoring ``queries``; a Future of ``list[RewardResult]``, checked like :meth:`score`'s."""
        queries = self._validated(queries)
        if not queries:
            done: Future = Future()
            done.set_result([])
            return done
        return checked_future(self._score_async(queries, timeout_ms), queries, repr(self))

    def _score(self, queries: list[RewardQuery], timeout_ms: float | None) -> list[RewardResult]:
        return self._score_async(queries, timeout_ms).result()

    def _score_async(self, queries: list[RewardQuery], timeout_ms: float | None) -> Future:
        raise NotImplementedError(f"{type(self).__name__} implements neither _score_async nor score_async")

    def info(self) -> ModelInfo:
        """The :class:`ModelInfo` of the model behind this scorer."""
        raise NotImplementedError(f"{type(self).__name__} does not implement info()")

    def close(self) -> None:
        """Release what the scorer holds (once); it refuses queries afterwards."""
        if self._closed:
            return
        self._closed = True
        self._close()

    def _close(self) -> None:
        """What :meth:`close` releases (sockets, threads, actors); nothing by default."""

    def _validated(self, queries: Sequence[RewardQuery]) -> list[RewardQuery]:
        """The validated query list, or an error if this scorer is closed."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        return validate_queries(queries)

    def __enter__(self) -> BaseScorer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def checked_future(inner: Future, queries: Sequence[RewardQuery], source: str) -> Future:
    """A Future resolving to ``inner``'s results checked by :func:`check_results` (or to ``inner``'s error)."""
    outer: Future = Future()

    def done(f: Future) -> None:
        try:
            outer.set_result(check_results(queries, f.result(), source))
        except BaseException as e:  # handed to the caller through the Future
            outer.set_exception(e)

    inner.add_done_callback(done)
    return outer
