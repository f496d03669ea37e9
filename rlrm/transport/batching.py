"""Continuous batching for the reward worker: an idle model runs at once, arrivals meanwhile form the next batch.

* :class:`Job` - a score request admitted to the queue: who sent it, its queries' frames (arrays,
  decode Futures or stored frames) and vision-feature keys, its arrival time.
* :class:`QueryJob` - queries from this process answered through a Future (the shared Ray reward actor
  batches its runners' queries with this batcher).
* :class:`WorkerStats` - counters (requests, items, batch sizes, queue/decode/inference time, errors).
* :class:`ContinuousBatcher` - ``offer`` jobs (refused when the queue is full), ``next_batch``
  (the oldest job plus the others waiting that fit, without waiting unless ``max_wait_ms`` asks
  for it), ``run`` a batch through the model and get one encoded reply per job; ``swap`` a new
  model version in, taking effect between batches (every reply names the ``version`` that scored it).

Batches are grouped so padding stays bounded: a job joins the batch only if the padded work
(items x longest item) stays within ``1 + max_padding`` times the real work. The oldest job is
always taken, so nothing starves. No sockets here: :class:`~rlrm.transport.server.RewardWorker`
feeds the batcher from its socket thread and runs batches on its batcher thread; the shared Ray
reward actor (:mod:`rlrm.distributed.shared_reward`) feeds it :class:`QueryJob` s the same way.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlrm.transport.protocol import (
    ErrorCode,
    ProtocolError,
    Request,
    encode_error,
    encode_reply,
    encode_results,
    item_query,
)
from rlrm.types import RewardQuery, RewardResult, check_results

__all__ = ["Job", "QueryJob", "WorkerStats", "ContinuousBatcher"]

log = logging.getLogger(__name__)


@dataclass
class Job:
    """A score request in the queue.

    Args:
        identity: the ROUTER identity of the sender.
        request: the parsed request (id, version, deadline, items).
        arrived: ``time.monotonic()`` when it was received.
        sources: per item, its frames: an array, a list of Futures of one frame each (JPEGs
            decoding), or a list of :class:`~rlrm.transport.frame_store.StoredFrame` (a streamed item).
        lengths: per item, the work it brings to a batch (sum of frame pixels, clamped to the model's bounds).
    """

    identity: bytes
    request: Request
    arrived: float
    sources: list[Any] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    @property
    def num_items(self) -> int:
        """Queries in this job."""
        return len(self.request.items)

    @property
    def deadline_ms(self) -> float | None:
        """How long the sender waits for the answer (None: no limit)."""
        return self.request.deadline_ms

    def answer(self, results: list[RewardResult], timing: dict[str, Any], version: int = 0) -> tuple[bytes, list[bytes]]:
        """The ``ok`` reply to send back: ``(identity, message parts)``; ``version``: the model version that scored it."""
        reply = encode_reply(self.request.id, v=self.request.version, results=encode_results(results), timing=timing,
                             version=int(version))
        return self.identity, reply

    def fail(self, code: str, message: str, error: Exception | None = None) -> tuple[bytes, list[bytes]]:
        """The error reply to send back (``code`` from :class:`~rlrm.transport.protocol.ErrorCode`)."""
        return self.identity, encode_error(self.request.id, code, message, v=self.request.version)

    def ready(self) -> bool:
        """True when no frame of the job is still decoding."""
        for source in self.sources:
            if isinstance(source, list) and not all(s.done() if isinstance(s, Future) else s.ready for s in source):
                return False
        return True

    def materialize(self) -> tuple[list[RewardQuery], list[list[int] | None]]:
        """The job's queries and, per query, the vision-feature keys of its frames (None for full frames).

        Waits for pending decodes; a frame that does not decode raises ``bad_request``.
        """
        queries: list[RewardQuery] = []
        keys: list[list[int] | None] = []
        rid = self.request.id
        for i, (item, source) in enumerate(zip(self.request.items, self.sources, strict=True)):
            try:
                if isinstance(source, list) and source and isinstance(source[0], Future):
                    frames = np.stack([f.result() for f in source])
                    keys.append(None)
                elif isinstance(source, list):
                    frames = np.stack([s.array() for s in source])
                    keys.append([s.uid for s in source])
                else:
                    frames = source
                    keys.append(None)
            except ValueError as e:  # a JPEG that does not decode (codec.decode_jpeg)
                raise ProtocolError(ErrorCode.BAD_REQUEST, str(e), rid) from e
            queries.append(item_query(item, frames, rid, i))
        return queries, keys


class QueryJob:
    """Queries from this process (the shared Ray reward actor), answered through a Future instead of a socket.

    Args:
        queries: validated queries to score.
        future: receives the results, or the model's exception.

    >>> job = QueryJob([RewardQuery(frames, "reach")], Future())   # doctest: +SKIP
    >>> batcher.offer(job)                                          # doctest: +SKIP
    """

    def __init__(self, queries: list[RewardQuery], future: Future) -> None:
        self.queries = list(queries)
        self.future = future
        self.arrived = time.monotonic()
        self.lengths = [q.num_frames * q.frames.shape[1] * q.frames.shape[2] for q in self.queries]
        self.deadline_ms: float | None = None

    @property
    def num_items(self) -> int:
        """Queries in this job."""
        return len(self.queries)

    def ready(self) -> bool:
        """Always: the frames are arrays already."""
        return True

    def materialize(self) -> tuple[list[RewardQuery], list[list[int] | None]]:
        """The queries, with no vision-feature keys."""
        return self.queries, [None] * len(self.queries)

    def answer(self, results: list[RewardResult], timing: dict[str, Any], version: int = 0) -> None:
        """Hand the results, stamped with the model ``version`` that scored them, to the waiting caller."""
        for r in results:
            r.version = int(version)
        self.future.set_result(results)

    def fail(self, code: str, message: str, error: Exception | None = None) -> None:
        """Hand the model's exception (or a RuntimeError naming ``code``) to the waiting caller."""
        self.future.set_exception(error if error is not None else RuntimeError(f"{code}: {message}"))


@dataclass
class WorkerStats:
    """Counters of a running worker, returned by the ``info`` op under ``stats``."""

    requests: dict[str, int] = field(default_factory=lambda: {"score": 0, "info": 0, "ping": 0})
    items: int = 0
    batches: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)  # items per batch -> number of batches
    waited_batches: int = 0  # batches held back by the opt-in max_wait_ms
    queue_ms_total: float = 0.0
    queue_ms_max: float = 0.0
    decode_wait_ms_total: float = 0.0  # batcher time before the model call: JPEG decodes not done yet, stacking
    infer_ms_total: float = 0.0
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ErrorCode.ALL, 0))
    expired: int = 0
    swaps: int = 0  # model versions swapped in

    def to_dict(self) -> dict[str, Any]:
        """Msgpack-friendly form with derived means."""
        return {
            "requests": dict(self.requests),
            "items": self.items,
            "batches": self.batches,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "max_batch_size": max(self.batch_sizes, default=0),
            "mean_batch_size": self.items / self.batches if self.batches else 0.0,
            "waited_batches": self.waited_batches,
            "queue_ms_mean": self.queue_ms_total / self.items if self.items else 0.0,
            "queue_ms_max": self.queue_ms_max,
            "decode_wait_ms_total": self.decode_wait_ms_total,
            "infer_ms_total": self.infer_ms_total,
            "infer_ms_mean": self.infer_ms_total / self.batches if self.batches else 0.0,
            "errors": dict(self.errors),
            "expired": self.expired,
            "swaps": self.swaps,
        }


class ContinuousBatcher:
    """Gathers queries from many requests into model calls of up to ``max_batch`` queries.

    Args:
        model: has ``score(list[RewardQuery]) -> list[RewardResult]`` (a model or a scorer); if it also has
            ``forget_features``, streamed frames are scored with ``score(queries, feature_keys=...)``
            so their vision features are computed once.
        max_batch: queries per model call; a request larger than this is scored alone.
        max_wait_ms: opt-in extra wait: with > 0, a batch waits up to this long (from its oldest
            query's arrival) for ``max_batch`` queries. 0 (default): run whatever is waiting now.
        max_queue: queries allowed to wait; :meth:`offer` refuses past it.
        max_padding: a job joins a batch only while items x longest item <= (1 + max_padding) x the sum of lengths.

    Thread-safe: ``offer``/``count``/``stats`` from one thread, ``next_batch``/``run`` from another,
    ``swap`` from any (a version watcher's): the new model takes over at the start of the next ``run``,
    so a batch is scored by one version from start to end and no queued request is dropped.
    """

    def __init__(
        self, model: Any, max_batch: int, max_wait_ms: float = 0.0, max_queue: int = 256, max_padding: float = 0.5
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        if max_padding < 0:
            raise ValueError(f"max_padding must be >= 0, got {max_padding}")
        self.model = model
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_ms) / 1000.0
        self.max_queue = int(max_queue)
        self.max_padding = float(max_padding)
        self.uses_feature_keys = callable(getattr(model, "forget_features", None))
        self.version = 0  # the model version scoring batches now; swap() replaces model and version together
        self._pending_swap: tuple[Any, int] | None = None
        self._swap_lock = threading.Lock()
        self._queue: collections.deque[Job] = collections.deque()
        self._queued_items = 0
        self._cond = threading.Condition()
        self._stats = WorkerStats()
        self._stats_lock = threading.Lock()

    # ---------------------------------------------------------------- producer side

    def offer(self, job: Job) -> str | None:
        """Queue ``job``; returns None if accepted, else the ``busy`` message to reply with."""
        n = job.num_items
        with self._cond:
            if self._queued_items + n > self.max_queue:
                queued = self._queued_items
            else:
                self._queue.append(job)
                self._queued_items += n
                self._cond.notify()
                return None
        self.count(error=ErrorCode.BUSY)
        return f"queue full: {queued} queries waiting, max_queue={self.max_queue}; retry later"

    def count(self, op: str | None = None, error: str | None = None) -> None:
        """Count a request by op and/or an error reply by code."""
        with self._stats_lock:
            if op is not None:
                self._stats.requests[op] = self._stats.requests.get(op, 0) + 1
            if error is not None:
                self._stats.errors[error] = self._stats.errors.get(error, 0) + 1

    def stats(self) -> dict[str, Any]:
        """The counters, the current queue depth and the batching settings."""
        with self._stats_lock:
            d = self._stats.to_dict()
        with self._cond:
            d["queued_items"] = self._queued_items
        d["max_batch"], d["max_wait_ms"], d["max_queue"] = self.max_batch, self.max_wait_s * 1000, self.max_queue
        d["max_padding"] = self.max_padding
        d["version"] = self.version
        return d

    def swap(self, model: Any, version: int) -> None:
        """Serve ``model`` as ``version`` from the next batch on (the batch in progress finishes on the old one).

        Raises ``ValueError`` unless ``version`` is an int newer than the one served now, and
        ``TypeError`` if ``model`` has no ``score``.
        """
        if not callable(getattr(model, "score", None)):
            raise TypeError(f"model must have score() (a RewardModel), got {type(model).__name__}")
        if isinstance(version, bool) or not isinstance(version, int) or version <= self.version:
            raise ValueError(f"version must be an int newer than the served version {self.version}, got {version!r}")
        with self._swap_lock:
            self._pending_swap = (model, version)
        self.wake()

    def _apply_swap(self) -> None:
        """Between batches: take over a model handed to :meth:`swap`."""
        with self._swap_lock:
            pending, self._pending_swap = self._pending_swap, None
        if pending is None:
            return
        self.model, self.version = pending
        self.uses_feature_keys = callable(getattr(self.model, "forget_features", None))
        with self._stats_lock:
            self._stats.swaps += 1
        log.info("now serving reward model version %d", self.version)

    def forget_features(self, keys: Any) -> None:
        """Drop cached vision features of evicted frames from the model serving now (if it caches any)."""
        forget = getattr(self.model, "forget_features", None)
        if callable(forget):
            forget(keys)

    def wake(self) -> None:
        """Wake a thread blocked in :meth:`next_batch` (e.g. to let it see a stop request)."""
        with self._cond:
            self._cond.notify_all()

    # ---------------------------------------------------------------- consumer side

    def next_batch(self, stop: threading.Event) -> list[Job]:
        """Block until a job waits, then return the oldest job plus the waiting ones that fit.

        With ``max_wait_ms`` > 0 the batch first waits (up to that long since the oldest job's
        arrival) for ``max_batch`` queries. Jobs still decoding JPEGs join only as the oldest.
        Returns an empty list once ``stop`` is set and nothing is queued.
        """
        with self._cond:
            while not self._queue:
                if stop.is_set():
                    return []
                self._apply_swap()  # an idle worker takes a new version at once (this is between batches too)
                self._cond.wait(0.1)
            waited = False
            while self.max_wait_s > 0 and self._queued_items < self.max_batch and not stop.is_set():
                remaining = self._queue[0].arrived + self.max_wait_s - time.monotonic()
                if remaining <= 0:
                    break
                waited = True
                self._cond.wait(remaining)
            batch = [self._queue.popleft()]
            n, longest, total = batch[0].num_items, max(batch[0].lengths), sum(batch[0].lengths)
            kept: list[Job] = []
            while self._queue and n < self.max_batch:
                job = self._queue.popleft()
                j_longest, j_total = max(job.lengths), sum(job.lengths)
                fits = n + job.num_items <= self.max_batch and (n + job.num_items) * max(longest, j_longest) <= (
                    1 + self.max_padding
                ) * (total + j_total)
                if fits and job.ready():
                    batch.append(job)
                    n, longest, total = n + job.num_items, max(longest, j_longest), total + j_total
                else:
                    kept.append(job)
            self._queue.extendleft(reversed(kept))  # the rest keep their place, oldest first
            self._queued_items -= n
        if waited:
            with self._stats_lock:
                self._stats.waited_batches += 1
        return batch

    def run(self, batch: list[Any]) -> list[Any]:
        """Score a batch in one model call and answer every job; returns the jobs' replies
        (``(identity, reply parts)`` for a :class:`Job`; a :class:`QueryJob` answers its Future, no reply).

        Jobs that waited past their ``deadline_ms`` get ``busy`` without being computed; a job
        whose frames do not decode gets ``bad_request``. If the model raises on the batch, each
        request is retried alone so only the one that breaks it gets ``internal``.
        """
        self._apply_swap()  # between batches: this one is scored by one version from start to end
        version = self.version
        start = time.monotonic()
        live: list[tuple[Any, list[RewardQuery], list[Any]]] = []
        replies: list[Any] = []
        for job in batch:
            waited_ms = (start - job.arrived) * 1000
            if job.deadline_ms is not None and waited_ms > job.deadline_ms:
                # the client has given up on it; answering costs nothing, computing would
                msg = f"expired in the queue after {waited_ms:.0f} ms (deadline_ms={job.deadline_ms:g})"
                replies.append(job.fail(ErrorCode.BUSY, msg))
                with self._stats_lock:
                    self._stats.expired += 1
                    self._stats.errors[ErrorCode.BUSY] += 1
                continue
            try:
                queries, keys = job.materialize()
            except ProtocolError as e:
                self.count(error=e.code)
                replies.append(job.fail(e.code, e.message, e))
                continue
            live.append((job, queries, keys))
        model_start = time.monotonic()
        decode_ms = (model_start - start) * 1000
        if not live:
            return [r for r in replies if r is not None]
        queries = [q for _, qs, _ in live for q in qs]
        keys = [k for _, _, ks in live for k in ks]
        outcome: list[Any] = []
        try:
            results = self._score(queries, keys)
            k = 0
            for _, qs, _ in live:
                outcome.append(results[k : k + len(qs)])
                k += len(qs)
        except Exception as e:
            log.exception("model failed on a batch of %d queries from %d requests", len(queries), len(live))
            outcome = [e] if len(live) == 1 else [self._score_alone(qs, ks) for _, qs, ks in live]
        infer_ms = (time.monotonic() - model_start) * 1000
        self._record([job for job, _, _ in live], len(queries), start, decode_ms, infer_ms)
        for (job, _, _), out in zip(live, outcome, strict=True):
            if isinstance(out, Exception):
                self.count(error=ErrorCode.INTERNAL)
                replies.append(job.fail(ErrorCode.INTERNAL, f"model raised {type(out).__name__}: {out}", out))
            else:
                timing = {
                    "queue_ms": (start - job.arrived) * 1000,
                    "decode_ms": decode_ms,
                    "infer_ms": infer_ms,
                    "batch_items": len(queries),
                }
                replies.append(job.answer(out, timing, version))
        return [r for r in replies if r is not None]

    def _score_alone(self, queries: list[RewardQuery], keys: list[Any]) -> Any:
        try:
            return self._score(queries, keys)
        except Exception as e:  # becomes this request's `internal` reply
            return e

    def _record(self, live: list[Job], n_items: int, start: float, decode_ms: float, infer_ms: float) -> None:
        with self._stats_lock:
            self._stats.batches += 1
            self._stats.items += n_items
            self._stats.batch_sizes[n_items] = self._stats.batch_sizes.get(n_items, 0) + 1
            self._stats.infer_ms_total += infer_ms
            self._stats.decode_wait_ms_total += decode_ms
            for job in live:
                q_ms = (start - job.arrived) * 1000
                self._stats.queue_ms_total += q_ms * job.num_items
                self._stats.queue_ms_max = max(self._stats.queue_ms_max, q_ms)

    def _score(self, queries: list[RewardQuery], keys: list[Any]) -> list[Any]:
        if self.uses_feature_keys and any(k is not None for k in keys):
            results = self.model.score(queries, feature_keys=keys)
        else:
            results = self.model.score(queries)
        return check_results(queries, results, "model")
