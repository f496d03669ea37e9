"""Dynamic batching for the reward worker: one bounded queue for all clients, one model call per batch.

* :class:`Job` - a decoded score request waiting in the queue, with its sender and arrival time.
* :class:`WorkerStats` - counters (requests, items, batch sizes, queue and inference time, errors).
* :class:`DynamicBatcher` - ``offer`` jobs (refused when the queue is full), ``next_batch``
  (blocks until ``max_batch`` queries wait or the oldest waited ``max_wait_ms``), ``run`` a
  batch through the model and get one encoded reply per job.

No sockets here: :class:`~rlrm.transport.server.RewardWorker` feeds the batcher from its socket
thread and runs batches on its batcher thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from rlrm.transport.protocol import ErrorCode, Request, encode_error, encode_reply, encode_results
from rlrm.types import RewardQuery

__all__ = ["Job", "WorkerStats", "DynamicBatcher"]

log = logging.getLogger(__name__)


@dataclass
class Job:
    """A score request in the queue: who sent it (ROUTER identity), what it asks, when it arrived."""

    identity: bytes
    request: Request
    arrived: float  # time.monotonic()


@dataclass
class WorkerStats:
    """Counters of a running worker, returned by the ``info`` op under ``stats``."""

    requests: dict[str, int] = field(default_factory=lambda: {"score": 0, "info": 0, "ping": 0})
    items: int = 0
    batches: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)  # items per batch -> number of batches
    queue_ms_total: float = 0.0
    queue_ms_max: float = 0.0
    infer_ms_total: float = 0.0
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ErrorCode.ALL, 0))
    expired: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Msgpack-friendly form with derived means."""
        return {
            "requests": dict(self.requests),
            "items": self.items,
            "batches": self.batches,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "max_batch_size": max(self.batch_sizes, default=0),
            "mean_batch_size": self.items / self.batches if self.batches else 0.0,
            "queue_ms_mean": self.queue_ms_total / self.items if self.items else 0.0,
            "queue_ms_max": self.queue_ms_max,
            "infer_ms_total": self.infer_ms_total,
            "infer_ms_mean": self.infer_ms_total / self.batches if self.batches else 0.0,
            "errors": dict(self.errors),
            "expired": self.expired,
        }


class DynamicBatcher:
    """Gathers queries from many requests into model calls of up to ``max_batch`` queries.

    Args:
        model: has ``score(list[RewardQuery]) -> list[RewardResult]``.
        max_batch: queries per model call; a request larger than this is scored alone.
        max_wait_ms: the longest the oldest waiting query waits for a batch to fill.
        max_queue: queries allowed to wait; :meth:`offer` refuses past it.

    Thread-safe: ``offer``/``count``/``stats`` from one thread, ``next_batch``/``run`` from another.
    """

    def __init__(self, model: Any, max_batch: int, max_wait_ms: float, max_queue: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.model = model
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_ms) / 1000.0
        self.max_queue = int(max_queue)
        self._queue: collections.deque[Job] = collections.deque()
        self._queued_items = 0
        self._cond = threading.Condition()
        self._stats = WorkerStats()
        self._stats_lock = threading.Lock()

    # ---------------------------------------------------------------- producer side

    def offer(self, job: Job) -> str | None:
        """Queue ``job``; returns None if accepted, else the ``busy`` message to reply with."""
        n = len(job.request.queries)
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
        return d

    def wake(self) -> None:
        """Wake a thread blocked in :meth:`next_batch` (e.g. to let it see a stop request)."""
        with self._cond:
            self._cond.notify_all()

    # ---------------------------------------------------------------- consumer side

    def next_batch(self, stop: threading.Event) -> list[Job]:
        """Block until a batch is due (max_batch queries waiting or the oldest waited max_wait_ms).

        Returns an empty list once ``stop`` is set and nothing is queued.
        """
        with self._cond:
            while not self._queue:
                if stop.is_set():
                    return []
                self._cond.wait(0.1)
            while self._queued_items < self.max_batch and not stop.is_set():
                remaining = self._queue[0].arrived + self.max_wait_s - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch: list[Job] = []
            n = 0
            while self._queue and (not batch or n + len(self._queue[0].request.queries) <= self.max_batch):
                job = self._queue.popleft()
                batch.append(job)
                n += len(job.request.queries)
            self._queued_items -= n
            return batch

    def run(self, batch: list[Job]) -> list[tuple[bytes, list[bytes]]]:
        """Score a batch in one model call; returns ``(identity, reply parts)`` for every job.

        Jobs that waited past their ``deadline_ms`` get ``busy`` without being computed. If the
        model raises on the batch, each request is retried alone so only the one that breaks it
        gets ``internal``.
        """
        start = time.monotonic()
        live: list[Job] = []
        replies: list[tuple[bytes, list[bytes]]] = []
        for job in batch:
            waited_ms = (start - job.arrived) * 1000
            if job.request.deadline_ms is not None and waited_ms > job.request.deadline_ms:
                # the client has given up on it; answering costs nothing, computing would
                msg = f"expired in the queue after {waited_ms:.0f} ms (deadline_ms={job.request.deadline_ms:g})"
                replies.append((job.identity, encode_error(job.request.id, ErrorCode.BUSY, msg)))
                with self._stats_lock:
                    self._stats.expired += 1
                    self._stats.errors[ErrorCode.BUSY] += 1
            else:
                live.append(job)
        if not live:
            return replies
        queries = [q for job in live for q in job.request.queries]
        outcome: list[Any] = []
        try:
            results = self._score(queries)
            k = 0
            for job in live:
                outcome.append(results[k : k + len(job.request.queries)])
                k += len(job.request.queries)
        except Exception as e:
            log.exception("model failed on a batch of %d queries from %d requests", len(queries), len(live))
            outcome = [e] if len(live) == 1 else [self._score_alone(job) for job in live]
        infer_ms = (time.monotonic() - start) * 1000
        self._record(live, len(queries), start, infer_ms)
        for job, out in zip(live, outcome, strict=True):
            rid = job.request.id
            if isinstance(out, Exception):
                self.count(error=ErrorCode.INTERNAL)
                reply = encode_error(rid, ErrorCode.INTERNAL, f"model raised {type(out).__name__}: {out}")
            else:
                timing = {"queue_ms": (start - job.arrived) * 1000, "infer_ms": infer_ms, "batch_items": len(queries)}
                reply = encode_reply(rid, results=encode_results(out), timing=timing)
            replies.append((job.identity, reply))
        return replies

    def _score_alone(self, job: Job) -> Any:
        try:
            return self._score(job.request.queries)
        except Exception as e:  # becomes this request's `internal` reply
            return e

    def _record(self, live: list[Job], n_items: int, start: float, infer_ms: float) -> None:
        with self._stats_lock:
            self._stats.batches += 1
            self._stats.items += n_items
            self._stats.batch_sizes[n_items] = self._stats.batch_sizes.get(n_items, 0) + 1
            self._stats.infer_ms_total += infer_ms
            for job in live:
                q_ms = (start - job.arrived) * 1000
                self._stats.queue_ms_total += q_ms * len(job.request.queries)
                self._stats.queue_ms_max = max(self._stats.queue_ms_max, q_ms)

    def _score(self, queries: list[RewardQuery]) -> list[Any]:
        results = self.model.score(queries)
        if len(results) != len(queries):
            raise RuntimeError(f"model returned {len(results)} results for {len(queries)} queries")
        for i, (q, r) in enumerate(zip(queries, results, strict=True)):
            if len(r) != q.num_frames:
                raise RuntimeError(f"model returned {len(r)} values for query {i} of {q.num_frames} frames")
        return list(results)
