"""The reward worker: a reward model served on a ZeroMQ ROUTER socket with dynamic batching.

* :class:`RewardWorker` - binds a ROUTER, answers ``ping``/``info`` at once, queues ``score``
  requests from all clients, and a batcher thread runs the model on up to ``max_batch`` queries.
* :class:`WorkerStats` - the counters ``info`` returns (requests, items, batch sizes, queue and
  inference time, errors).
* :func:`is_loopback` - whether a bind address stays on this machine.

Threads: the socket thread owns the ROUTER and an inproc PAIR; the batcher thread owns the
other PAIR end and sends finished replies through it, so no socket is ever shared across
threads. The model runs only on the batcher thread, so while a batch computes the worker still
answers ``ping``/``info``, rejects bad input, and replies ``busy`` when the queue is full.
"""

from __future__ import annotations

import collections
import ipaddress
import itertools
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import zmq

from rlrm.transport.keys import load_server_keys
from rlrm.transport.protocol import (
    ErrorCode,
    Limits,
    ProtocolError,
    Request,
    decode_request,
    encode_error,
    encode_reply,
    encode_results,
)
from rlrm.types import RewardQuery

__all__ = ["RewardWorker", "WorkerStats", "is_loopback"]

log = logging.getLogger(__name__)

_instances = itertools.count()


def is_loopback(bind: str) -> bool:
    """True if ``bind`` (a ZeroMQ endpoint) is reachable only from this machine (loopback TCP, ipc, inproc)."""
    if bind.startswith(("ipc://", "inproc://")):
        return True
    m = re.fullmatch(r"tcp://\[?([^\]]+?)\]?:(\d+|\*)", bind)
    if m is None:
        return False
    host = m.group(1)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an interface name or "*": not loopback
        return False


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


@dataclass
class _Job:
    identity: bytes
    request: Request
    arrived: float  # time.monotonic()


class RewardWorker:
    """Serve a reward model to many clients over ZeroMQ, batching their queries.

    Args:
        model: anything with ``info() -> ModelInfo`` and ``score(list[RewardQuery]) -> list[RewardResult]``.
        bind: ZeroMQ endpoint; ``tcp://127.0.0.1:0`` lets the OS pick a free port (see :attr:`url`).
            Addresses other than loopback/ipc need ``curve_keys``.
        max_batch: run the model once this many queries are waiting (1 = no batching).
        max_wait_ms: or once the oldest waiting query has waited this long.
        max_queue: queries allowed to wait; a request past it gets ``busy`` at once.
        limits: size limits of one request (past them: ``too_large``).
        curve_keys: directory made by ``rlrm keys`` (or a ``(public, secret)`` z85 pair): enables
            CurveZMQ, and then only clients that hold the server public key get answers.

    >>> from rlrm.models import make_reward_model                      # doctest: +SKIP
    >>> with RewardWorker(make_reward_model("tiny"), bind="tcp://127.0.0.1:0") as worker:  # doctest: +SKIP
    ...     print(worker.url)                                              # tcp://127.0.0.1:40123
    """

    def __init__(
        self,
        model: Any,
        bind: str = "tcp://127.0.0.1:5555",
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        limits: Limits | None = None,
        curve_keys: Any = None,
    ) -> None:
        if not (hasattr(model, "score") and hasattr(model, "info")):
            raise TypeError(f"model must have score() and info() (a RewardModel), got {type(model).__name__}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.model = model
        self.bind = re.sub(r"^(tcp://.+):0$", r"\1:*", bind)
        if curve_keys is None and not is_loopback(self.bind):
            raise ValueError(
                f"refusing to bind {bind!r} without CurveZMQ keys: only loopback (127.0.0.1, ::1, localhost) "
                "and ipc:// are served unauthenticated. Make keys with `rlrm keys DIR` and pass curve_keys=DIR "
                "(`rlrm worker --curve-keys DIR`)"
            )
        self._curve = load_server_keys(curve_keys) if curve_keys is not None else None
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_ms) / 1000.0
        self.max_queue = int(max_queue)
        self.limits = limits or Limits()
        self._model_info = model.info().to_dict()
        self._ctx = zmq.Context()
        self._pair_addr = f"inproc://rlrm-worker-{next(_instances)}"
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued_items = 0
        self._cond = threading.Condition()
        self._stats = WorkerStats()
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._url: str | None = None
        self._started_at = time.monotonic()
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """The endpoint clients connect to (with the OS-chosen port when bound to port 0)."""
        if self._url is None:
            raise RuntimeError("worker is not started: call start() first")
        return self._url

    def start(self) -> RewardWorker:
        """Bind and start the socket and batcher threads; returns once the socket is bound."""
        if self._threads:
            raise RuntimeError("worker already started")
        sock_thread = threading.Thread(target=self._serve, name="rlrm-worker-socket", daemon=True)
        sock_thread.start()
        self._ready.wait()
        if self._start_error is not None:
            sock_thread.join()
            self._ctx.term()
            raise OSError(f"reward worker cannot bind {self.bind!r}: {self._start_error}") from self._start_error
        self._started_at = time.monotonic()
        batch_thread = threading.Thread(target=self._batch_loop, name="rlrm-worker-batcher", daemon=True)
        batch_thread.start()
        self._threads = [sock_thread, batch_thread]
        log.info(
            "reward worker %s serving %s (max_batch=%d, max_wait_ms=%.1f, curve=%s)",
            self._model_info.get("name"), self._url, self.max_batch, self.max_wait_s * 1000, self._curve is not None,
        )
        return self

    def serve_forever(self) -> None:
        """Start (if needed) and block until :meth:`stop` is called (e.g. from a signal handler)."""
        if not self._threads:
            self.start()
        while not self._stop.wait(0.2):
            pass
        self.stop()

    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to stop; safe to call from a signal handler."""
        self._stop.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving: finish the batch in progress, close the sockets. Safe to call twice."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if threading.current_thread() in self._threads:
            return
        for t in self._threads:
            t.join(timeout_s)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("reward worker threads %s still running after %.0f s; leaving them", alive, timeout_s)
        elif self._threads and not self._ctx.closed:
            self._ctx.term()

    def __enter__(self) -> RewardWorker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        """The counters (see :class:`WorkerStats`) plus queue depth and uptime."""
        with self._stats_lock:
            d = self._stats.to_dict()
        with self._cond:
            d["queued_items"] = self._queued_items
        d["uptime_s"] = time.monotonic() - self._started_at
        d["max_batch"], d["max_wait_ms"], d["max_queue"] = self.max_batch, self.max_wait_s * 1000, self.max_queue
        return d

    # ---------------------------------------------------------------- socket thread

    def _serve(self) -> None:
        router = pair = None
        try:
            router = self._ctx.socket(zmq.ROUTER)
            router.setsockopt(zmq.LINGER, 0)
            if self._curve is not None:
                router.curve_server = True
                router.curve_publickey, router.curve_secretkey = self._curve
            router.bind(self.bind)
            self._url = router.getsockopt_string(zmq.LAST_ENDPOINT)
            pair = self._ctx.socket(zmq.PAIR)
            pair.setsockopt(zmq.LINGER, 0)
            pair.bind(self._pair_addr)
        except zmq.ZMQError as e:
            self._start_error = e
            for sock in (router, pair):
                if sock is not None:
                    sock.close(0)
            self._ready.set()
            return
        self._ready.set()
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(pair, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(100))
                if pair in events:
                    self._forward_replies(pair, router)
                if router in events:
                    for _ in range(64):  # bounded so replies are not starved by a flood of requests
                        try:
                            parts = router.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._on_message(router, parts)
            # the batcher finishes its batch before exiting: deliver what it sends until it is gone
            deadline = time.monotonic() + 5.0
            while self._threads and self._threads[-1].is_alive() and time.monotonic() < deadline:
                if pair.poll(50):
                    self._forward_replies(pair, router)
            self._forward_replies(pair, router)
        finally:
            router.close(0)
            pair.close(0)

    @staticmethod
    def _forward_replies(pair: zmq.Socket, router: zmq.Socket) -> None:
        while True:
            try:
                parts = pair.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            router.send_multipart(parts, copy=False)

    def _count(self, op: str | None = None, error: str | None = None) -> None:
        with self._stats_lock:
            if op is not None:
                self._stats.requests[op] = self._stats.requests.get(op, 0) + 1
            if error is not None:
                self._stats.errors[error] = self._stats.errors.get(error, 0) + 1

    def _on_message(self, router: zmq.Socket, parts: list[zmq.Frame]) -> None:
        identity, body = parts[0].bytes, parts[1:]
        try:
            request = decode_request(body, self.limits)
        except ProtocolError as e:
            self._count(error=e.code)
            log.debug("rejected request %r: %s", e.request_id, e)
            router.send_multipart([identity, *encode_error(e.request_id, e.code, e.message)])
            return
        self._count(op=request.op)
        if request.op == "ping":
            router.send_multipart([identity, *encode_reply(request.id, pong=True)])
        elif request.op == "info":
            router.send_multipart([identity, *encode_reply(request.id, info=self._model_info, stats=self.stats())])
        else:
            n = len(request.queries)
            with self._cond:
                if self._queued_items + n > self.max_queue:
                    queued = self._queued_items
                    accepted = False
                else:
                    self._queue.append(_Job(identity, request, time.monotonic()))
                    self._queued_items += n
                    accepted = True
                    self._cond.notify()
            if not accepted:
                self._count(error=ErrorCode.BUSY)
                msg = f"queue full: {queued} queries waiting, max_queue={self.max_queue}; retry later"
                router.send_multipart([identity, *encode_error(request.id, ErrorCode.BUSY, msg)])

    # ---------------------------------------------------------------- batcher thread

    def _next_batch(self) -> list[_Job]:
        """Block until a batch is due (max_batch queries waiting or the oldest waited max_wait_ms)."""
        with self._cond:
            while not self._queue:
                if self._stop.is_set():
                    return []
                self._cond.wait(0.1)
            while self._queued_items < self.max_batch and not self._stop.is_set():
                remaining = self._queue[0].arrived + self.max_wait_s - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch: list[_Job] = []
            n = 0
            while self._queue and (not batch or n + len(self._queue[0].request.queries) <= self.max_batch):
                job = self._queue.popleft()
                batch.append(job)
                n += len(job.request.queries)
            self._queued_items -= n
            return batch

    def _batch_loop(self) -> None:
        pair = self._ctx.socket(zmq.PAIR)
        pair.setsockopt(zmq.LINGER, 1000)
        pair.connect(self._pair_addr)
        try:
            while True:
                batch = self._next_batch()
                if not batch:
                    if self._stop.is_set():
                        return
                    continue
                for identity, reply in self._run_batch(batch):
                    pair.send_multipart([identity, *reply])
        finally:
            pair.close()

    def _run_batch(self, batch: list[_Job]) -> list[tuple[bytes, list[bytes]]]:
        start = time.monotonic()
        live: list[_Job] = []
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
        try:
            results = self._score(queries)
            outcome: list[Any] = []
            k = 0
            for job in live:
                n = len(job.request.queries)
                outcome.append(results[k : k + n])
                k += n
        except Exception as e:
            log.exception("model failed on a batch of %d queries from %d requests", len(queries), len(live))
            if len(live) == 1:
                outcome = [e]
            else:
                # find which request breaks the model so the others still get their rewards
                outcome = []
                for job in live:
                    try:
                        outcome.append(self._score(job.request.queries))
                    except Exception as single:
                        outcome.append(single)
        infer_ms = (time.monotonic() - start) * 1000
        with self._stats_lock:
            self._stats.batches += 1
            self._stats.items += len(queries)
            self._stats.batch_sizes[len(queries)] = self._stats.batch_sizes.get(len(queries), 0) + 1
            self._stats.infer_ms_total += infer_ms
            for job in live:
                q_ms = (start - job.arrived) * 1000
                self._stats.queue_ms_total += q_ms * len(job.request.queries)
                self._stats.queue_ms_max = max(self._stats.queue_ms_max, q_ms)
        for job, out in zip(live, outcome, strict=True):
            rid = job.request.id
            if isinstance(out, Exception):
                with self._stats_lock:
                    self._stats.errors[ErrorCode.INTERNAL] += 1
                reply = encode_error(rid, ErrorCode.INTERNAL, f"model raised {type(out).__name__}: {out}")
            else:
                timing = {"queue_ms": (start - job.arrived) * 1000, "infer_ms": infer_ms, "batch_items": len(queries)}
                reply = encode_reply(rid, results=encode_results(out), timing=timing)
            replies.append((job.identity, reply))
        return replies

    def _score(self, queries: list[RewardQuery]) -> list[Any]:
        results = self.model.score(queries)
        if len(results) != len(queries):
            raise RuntimeError(f"model returned {len(results)} results for {len(queries)} queries")
        for i, (q, r) in enumerate(zip(queries, results, strict=True)):
            if len(r) != q.num_frames:
                raise RuntimeError(f"model returned {len(r)} values for query {i} of {q.num_frames} frames")
        return list(results)
