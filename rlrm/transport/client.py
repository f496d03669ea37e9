"""The reward client: talks to a :class:`~rlrm.transport.server.RewardWorker` over a ZeroMQ DEALER socket.

* :class:`RewardClient` - ``score`` / ``score_async`` / ``score_deferred`` / ``info`` / ``ping`` with
  timeouts, retries and socket re-creation (the lazy-pirate pattern), safe to share between threads.
* :class:`WorkerError` - the worker answered ``ok: false``; ``code`` says why.

One background I/O thread owns the socket; callers hand it requests through a queue and get
``concurrent.futures.Future`` objects back, so many requests can be in flight at once (the
worker batches them). A request without a reply within ``timeout_ms`` is resent on a fresh
socket up to ``retries`` times; replies whose id is no longer awaited are dropped.

Streaming (protocol v2, on by default): a query with ``episode_id`` and ``frame_index`` names its
frames; each frame of an episode is uploaded once and later queries name it by index. The I/O
thread decides what to upload (:class:`~rlrm.transport.uploads.EpisodeUploads`) in send order;
a worker that lost the episode answers ``unknown_episode`` and the request goes again with all
its frames, so no query is lost; a v1-only worker makes the client fall back to full frames.
Where work happens: ``score``/``score_async`` fingerprint frames and JPEG-encode on the caller's
thread; ``score_deferred`` builds the queries, fingerprints and encodes on the I/O thread.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import zmq

from rlrm.config import CLIENT_TIMEOUT_MS
from rlrm.transport.codec import encode_jpeg, frame_digest
from rlrm.transport.keys import load_server_public_key
from rlrm.transport.protocol import (
    ENCODINGS,
    ErrorCode,
    ProtocolError,
    check_worker_url,
    decode_reply,
    encode_request,
    results_from_reply,
)
from rlrm.transport.uploads import EpisodeUploads
from rlrm.types import (
    BaseScorer,
    ModelInfo,
    ResultsMismatchError,
    RewardQuery,
    RewardResult,
    validate_queries,
)

__all__ = ["RewardClient", "WorkerError"]

log = logging.getLogger(__name__)

_MAX_FULL_RESENDS = 2  # after one resend with every frame attached, unknown_episode cannot recur
_TICK_S = 0.002  # while deferred requests come in, the I/O thread looks for them this often...
_TICK_IDLE_S = 0.2  # ...until none came for this long


class WorkerError(RuntimeError):
    """The worker rejected or failed a request; ``code`` is one of ``rlrm.transport.protocol.ErrorCode``."""

    def __init__(self, url: str, code: str, message: str) -> None:
        super().__init__(f"reward worker at {url} replied {code}: {message}")
        self.url = url
        self.code = code
        self.message = message


@dataclass
class _Pending:
    id: int
    op: str
    future: Future
    timeout_s: float
    queries: Sequence[RewardQuery] = ()
    build: Callable[[], Sequence[RewardQuery]] | None = None  # score_deferred: run on the I/O thread
    parts: list[Any] | None = None  # the message; None until built (streamed requests: on the I/O thread)
    keys: list[str | None] | None = None  # per query, its episode key in the worker's frame store
    digests: list[list[Any] | None] | None = None
    jpegs: dict[tuple[int, int], bytes] | None = None
    with_timing: bool = False
    first_sent: float = 0.0
    sent_at: float = 0.0
    attempts: int = 0
    sends: int = 0  # every send, including resends that use up no retry (heap entries carry it)
    full_resends: int = 0


class RewardClient(BaseScorer):
    """Score queries on a remote reward worker.

    Args:
        url: worker endpoint, e.g. ``"tcp://127.0.0.1:5555"`` or ``"ipc:///tmp/rlrm.sock"``.
        timeout_ms: how long to wait for each attempt's reply.
        retries: resends (each on a fresh socket) after a timeout before raising ``TimeoutError``.
        curve_server_key: the worker's public key (z85 text, ``server.key`` file, or the key
            directory) when the worker runs with ``--curve-keys``.
        enc: ``"raw"`` (default, zero-copy) or ``"jpeg"`` (smaller on slow links, lossy).
        jpeg_quality: 0-100, for ``enc="jpeg"``.
        stream: upload each frame of an episode once (queries with ``episode_id`` and
            ``frame_index``); False sends every query's frames in full (protocol v1).

    >>> client = RewardClient("tcp://127.0.0.1:5555", timeout_ms=2000)       # doctest: +SKIP
    >>> results = client.score([RewardQuery(frames, "open the drawer")])      # doctest: +SKIP
    >>> results[0].progress                                                   # doctest: +SKIP
    array([0.02, 0.31, 0.77], dtype=float32)
    """

    def __init__(
        self,
        url: str,
        timeout_ms: float = CLIENT_TIMEOUT_MS,
        retries: int = 3,
        curve_server_key: Any = None,
        enc: str = "raw",
        jpeg_quality: int = 90,
        stream: bool = True,
    ) -> None:
        check_worker_url(url)
        if timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be > 0, got {timeout_ms}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if enc not in ENCODINGS:
            raise ValueError(f"enc must be one of {ENCODINGS}, got {enc!r}")
        self.url = url
        self.version: int | None = None  # the newest model version a score reply named (None: none yet)
        self.timeout_ms = float(timeout_ms)
        self.retries = int(retries)
        self.enc = enc
        self.jpeg_quality = int(jpeg_quality)
        self.stream = bool(stream)
        self._server_key = load_server_public_key(curve_server_key) if curve_server_key is not None else None
        self._client_keys = zmq.curve_keypair() if self._server_key is not None else None
        self.stale_replies = 0  # replies dropped because their request had already timed out
        # episode keys are this client's own: two processes that both call their episode "env:1" never meet
        self._session = uuid.uuid4().hex[:12]
        self._uploads = EpisodeUploads()
        self._transfer = {"requests": 0, "bytes_sent": 0, "frames_uploaded": 0, "unknown_episode_resends": 0}
        self._ids = itertools.count(1)
        self._commands: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._wake_pending = False  # a wake-up byte is in the pipe and the I/O thread has not drained yet
        self._ticking = False  # the I/O thread polls the queue every _TICK_S: deferred requests need no wake-up
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._ctx = zmq.Context()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._io_loop, name=f"rlrm-client {url}", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- public API

    def score_async(self, queries: Sequence[RewardQuery], timeout_ms: float | None = None) -> Future:
        """Send queries and return a Future of ``list[RewardResult]`` (one per query, in order).

        Queries are validated here (:class:`~rlrm.types.BaseScorer`); the reply is checked against them
        on the I/O thread (:func:`~rlrm.transport.protocol.results_from_reply`), as for every request kind.
        """
        queries = self._validated(queries)
        if not queries:
            done: Future = Future()
            done.set_result([])
            return done
        p = self._pending("score", timeout_ms, queries=queries)
        self._prepare(p)
        return self._enqueue(p)

    def score_deferred(self, build: Callable[[], Sequence[RewardQuery]], timeout_ms: float | None = None) -> Future:
        """Like :meth:`score_async`, but ``build()`` makes the queries on the client's I/O thread.

        For callers that must not spend time on a request (an env loop): gathering frames,
        fingerprinting, JPEG encoding and sending all happen on the I/O thread, which, while such
        requests keep coming, looks for them every ~2 ms instead of being woken. ``build`` must
        only read data that stays unchanged until it runs; its errors end up in the Future.
        """
        if not callable(build):
            raise TypeError(f"build must be a callable returning a list of RewardQuery, got {type(build).__name__}")
        p = self._pending("score", timeout_ms, build=build)
        self._commands.put(p)
        # no system call on the caller's thread while the I/O thread is ticking: a pipe write would
        # hand the CPU and the GIL to the I/O thread in the middle of an env step
        if not self._ticking:
            self._wake()
        return p.future

    def score(self, queries: Sequence[RewardQuery], timeout_ms: float | None = None) -> list[RewardResult]:
        """Score queries on the worker and wait for the results (``TimeoutError`` after all retries)."""
        return self.score_async(queries, timeout_ms).result()

    def score_timed(
        self, queries: Sequence[RewardQuery], timeout_ms: float | None = None
    ) -> tuple[list[RewardResult], dict[str, Any]]:
        """Score and also return the worker's timing of the request (``queue_ms``, ``decode_ms``, ``infer_ms``, ...)."""
        queries = self._validated(queries)
        if not queries:
            return [], {}
        p = self._pending("score", timeout_ms, queries=queries)
        p.with_timing = True
        self._prepare(p)
        return self._enqueue(p).result()

    def info(self, timeout_ms: float | None = None) -> ModelInfo:
        """The worker's :class:`ModelInfo`."""
        return ModelInfo.from_dict(self._enqueue(self._pending("info", timeout_ms)).result()["info"])

    def model_version(self, timeout_ms: float | None = None) -> int:
        """The model version the worker serves now (asked with an ``info`` request; 0 from an older worker)."""
        return int(self._enqueue(self._pending("info", timeout_ms)).result().get("version") or 0)

    def stats(self, timeout_ms: float | None = None) -> dict[str, Any]:
        """The worker's counters (requests, items, batch sizes, queue/inference ms, errors, frame store)."""
        return self._enqueue(self._pending("info", timeout_ms)).result()["stats"]

    def transfer_stats(self) -> dict[str, Any]:
        """What this client sent: requests, bytes (all message parts, resends included), frames uploaded
        by streaming, resends after ``unknown_episode``, and whether streaming is on."""
        return {**self._transfer, "stream": self.stream}

    def ping(self, timeout_ms: float | None = None) -> float:
        """Round trip to the worker in ms (raises ``TimeoutError`` if it does not answer)."""
        t0 = time.perf_counter()
        self._enqueue(self._pending("ping", timeout_ms)).result()
        return (time.perf_counter() - t0) * 1000

    def wait_until_answering(self, timeout_ms: float = 5000.0) -> float:
        """Ping within ``timeout_ms`` in all (split over this client's attempts); the round trip in ms.

        What a wrapper or a run does before its first query, so a dead or wrong URL fails in seconds
        instead of ``(retries + 1) x timeout_ms`` into the first ``step()``. Raises ``TimeoutError``
        naming the URL and how to start a worker there.
        """
        attempts = self.retries + 1
        attempt_ms = max(50.0, min(float(timeout_ms) / attempts, self.timeout_ms))
        try:
            return self.ping(timeout_ms=attempt_ms)
        except TimeoutError:
            raise TimeoutError(
                f"no reward worker answered at {self.url} within {attempts * attempt_ms / 1000:g} s: start one "
                f"there (rlrm worker --model MODEL --bind {self.url}), or pass the URL of a running one (a worker "
                "started with --curve-keys also needs curve_server_key)"
            ) from None

    def close(self) -> None:
        """Stop the I/O thread and close the socket; pending calls fail with ``RuntimeError``."""
        if self._stopped.is_set():
            return
        self._closed = True
        self._stopped.set()
        self._commands.put(None)
        self._wake()
        self._thread.join(5.0)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._ctx.term()

    def __repr__(self) -> str:
        return f"RewardClient({self.url!r}, timeout_ms={self.timeout_ms:g}, retries={self.retries})"

    # ---------------------------------------------------------------- caller side

    def _pending(self, op: str, timeout_ms: float | None, **fields: Any) -> _Pending:
        if self._stopped.is_set():
            raise RuntimeError(f"{self!r} is closed")
        timeout_ms = self.timeout_ms if timeout_ms is None else float(timeout_ms)
        fut: Future = Future()
        fut.set_running_or_notify_cancel()
        return _Pending(next(self._ids), op, fut, timeout_ms / 1000.0, **fields)

    def _enqueue(self, p: _Pending) -> Future:
        if p.op != "score":
            # deadline_ms lets the worker skip work the client has already given up on
            p.parts = encode_request(p.id, p.op, deadline_ms=p.timeout_s * 1000)
        self._commands.put(p)
        self._wake()
        return p.future

    def _stream_key(self, q: RewardQuery) -> str | None:
        """The frame-store key of a query's episode, or None to send its frames in full."""
        if not self.stream or q.episode_id is None or q.frame_index is None:
            return None
        index = q.frame_index.tolist()  # a few ints: Python sets beat numpy's per-call overhead here
        if min(index) < 0 or len(set(index)) != len(index):
            return None
        return f"{self._session}/{q.episode_id}"

    def _prepare(self, p: _Pending) -> None:
        """Fingerprint streamed frames and JPEG-encode what will likely be sent; plain requests are encoded whole."""
        keys = [self._stream_key(q) for q in p.queries]
        deadline_ms = p.timeout_s * 1000
        if all(k is None for k in keys):
            p.parts = encode_request(
                p.id, "score", p.queries, enc=self.enc, jpeg_quality=self.jpeg_quality, deadline_ms=deadline_ms
            )
            return
        p.keys = keys
        p.digests = [[frame_digest(f) for f in q.frames] if k else None for q, k in zip(p.queries, keys, strict=True)]
        if self.enc == "jpeg":
            p.jpegs = {}
            for i, (q, key) in enumerate(zip(p.queries, keys, strict=True)):
                # a hint read from the I/O thread's record: a wrong guess only moves an encode there
                likely = range(q.num_frames) if key is None else self._uploads.predict(key, q.frame_index, p.digests[i])
                p.jpegs.update(((i, t), encode_jpeg(q.frames[t], self.jpeg_quality)) for t in likely)

    def _wake(self) -> None:
        # one byte per drain is enough (a write is a syscall that can preempt the caller, e.g. an env
        # loop): the I/O thread clears the flag before it drains the queue, so nothing put after
        # that point is missed; a full pipe means wake-ups are pending already
        if self._wake_pending:
            return
        self._wake_pending = True
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    # ---------------------------------------------------------------- I/O thread

    def _new_socket(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if self._server_key is not None:
            sock.curve_serverkey = self._server_key
            sock.curve_publickey, sock.curve_secretkey = self._client_keys
        sock.connect(self.url)
        return sock

    def _build(self, p: _Pending) -> None:
        """Decide a streamed request's uploads (in send order) and encode it."""
        streamed: list[tuple[str, list[int]] | None] = []
        for i, (q, key) in enumerate(zip(p.queries, p.keys, strict=True)):
            if key is None:
                streamed.append(None)
                continue
            positions = self._uploads.plan(key, q.frame_index, p.digests[i])
            self._transfer["frames_uploaded"] += len(positions)
            streamed.append((key, positions))
        p.parts = encode_request(
            p.id, "score", p.queries, enc=self.enc, jpeg_quality=self.jpeg_quality,
            deadline_ms=p.timeout_s * 1000, streamed=streamed, jpegs=p.jpegs,
        )

    def _send(self, sock: zmq.Socket, p: _Pending, now: float, pending: dict[int, _Pending], deadlines: list) -> None:
        if p.parts is None:
            try:
                self._build(p)
            except Exception as e:  # this request cannot be encoded: its Future says why, the others go on
                pending.pop(p.id, None)
                p.future.set_exception(e)
                return
        p.attempts += 1
        p.sends += 1
        p.sent_at = now
        if not p.first_sent:
            p.first_sent = now
        heapq.heappush(deadlines, (now + p.timeout_s, p.id, p.sends))
        self._transfer["requests"] += 1
        self._transfer["bytes_sent"] += sum(getattr(part, "nbytes", None) or len(part) for part in p.parts)
        try:
            sock.send_multipart(p.parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:  # high-water mark reached: counts as a lost attempt, the timeout retries it
            log.debug("send of request %d to %s would block; will retry", p.id, self.url)

    def _admit(self, sock: zmq.Socket, p: _Pending, pending: dict[int, _Pending], deadlines: list) -> None:
        """Take a new request from the queue: build deferred queries, then send."""
        if p.build is not None:
            try:
                p.queries = validate_queries(p.build())
                if p.queries:
                    self._prepare(p)
            except Exception as e:  # the caller's build() failed: its Future carries the error
                p.future.set_exception(e)
                return
            if not p.queries:
                p.future.set_result([])
                return
        pending[p.id] = p
        self._send(sock, p, time.monotonic(), pending, deadlines)

    def _drain(self, sock: zmq.Socket, pending: dict[int, _Pending], deadlines: list) -> tuple[bool, bool]:
        """Take every queued request; returns (close was asked, a deferred request was among them)."""
        deferred = False
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return False, deferred
            if cmd is None:
                return True, deferred
            deferred |= cmd.build is not None
            self._admit(sock, cmd, pending, deadlines)

    def _io_loop(self) -> None:
        pending: dict[int, _Pending] = {}
        deadlines: list[tuple[float, int, int]] = []  # (when, request id, send number): a min-heap
        sock = self._new_socket()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        last_deferred = 0.0
        try:
            while True:
                # drop heap entries of answered requests or superseded sends
                while deadlines and (
                    deadlines[0][1] not in pending or pending[deadlines[0][1]].sends != deadlines[0][2]
                ):
                    heapq.heappop(deadlines)
                wait = deadlines[0][0] - time.monotonic() if deadlines else 1.0
                if self._ticking:
                    wait = min(wait, _TICK_S)
                events = dict(poller.poll(max(0.0, wait) * 1000))
                if self._wake_r in events:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._wake_r, 4096):
                            pass
                    self._wake_pending = False
                closed, deferred = self._drain(sock, pending, deadlines)
                if closed:
                    return
                now = time.monotonic()
                if deferred:
                    last_deferred, self._ticking = now, True
                elif self._ticking and now - last_deferred > _TICK_IDLE_S:
                    self._ticking = False
                    # a caller that still saw the flag set has put its request already: take it now
                    closed, _ = self._drain(sock, pending, deadlines)
                    if closed:
                        return
                if sock in events:
                    self._receive(sock, pending, deadlines)
                now = time.monotonic()
                expired = []
                while deadlines and deadlines[0][0] <= now:
                    _, rid, sends = heapq.heappop(deadlines)
                    p = pending.get(rid)
                    if p is not None and p.sends == sends:
                        expired.append(p)
                if not expired:
                    continue
                for p in expired:
                    if p.attempts > self.retries:
                        del pending[p.id]
                        waited = (now - p.first_sent) * 1000
                        p.future.set_exception(
                            TimeoutError(
                                f"no reply from reward worker at {self.url} to {p.op!r} after waiting "
                                f"{waited:.0f} ms ({p.attempts} attempts x timeout_ms={p.timeout_s * 1000:g}); "
                                "is `rlrm worker` running there, and does it need curve keys?"
                            )
                        )
                # lazy pirate: the worker may have died or restarted, so drop the socket (and any
                # reply still queued on it) and resend everything still awaited on a fresh one
                log.info("no reply from %s within timeout; reconnecting (%d requests pending)", self.url, len(pending))
                poller.unregister(sock)
                sock.close(0)
                sock = self._new_socket()
                poller.register(sock, zmq.POLLIN)
                now = time.monotonic()
                expired_ids = {p.id for p in expired}
                for p in list(pending.values()):
                    if p.id not in expired_ids:  # its reply was due on the old socket: resend without using up a retry
                        p.attempts -= 1
                    self._send(sock, p, now, pending, deadlines)
        except BaseException as e:
            log.exception("reward client I/O thread for %s failed", self.url)
            for p in pending.values():
                p.future.set_exception(e)
            raise
        finally:
            sock.close(0)
            closed = RuntimeError(f"{self!r} was closed before the reply arrived")
            for p in pending.values():
                if not p.future.done():
                    p.future.set_exception(closed)
            while True:
                try:
                    cmd = self._commands.get_nowait()
                except queue.Empty:
                    break
                if cmd is not None:
                    cmd.future.set_exception(closed)

    def _receive(self, sock: zmq.Socket, pending: dict[int, _Pending], deadlines: list) -> None:
        while True:
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                reply = decode_reply(parts)
            except ProtocolError as e:
                log.warning("dropping malformed reply from %s: %s", self.url, e)
                continue
            p = pending.pop(reply.get("id"), None) if isinstance(reply.get("id"), int) else None
            if p is None:
                self.stale_replies += 1
                log.debug("dropping stale reply %r from %s", reply.get("id"), self.url)
                continue
            if not reply["ok"]:
                err = reply.get("error") or {}
                code, message = str(err.get("code")), str(err.get("message"))
                if self._resend_in_full(p, code, message):
                    pending[p.id] = p
                    p.attempts -= 1  # not a lost attempt: the worker answered
                    self._send(sock, p, time.monotonic(), pending, deadlines)
                else:
                    p.future.set_exception(WorkerError(self.url, code, message))
            elif p.op == "score":
                try:
                    results = results_from_reply(reply, p.queries)
                except (ProtocolError, ResultsMismatchError, KeyError, ValueError, TypeError) as e:
                    p.future.set_exception(WorkerError(self.url, "internal", f"malformed score reply: {e}"))
                else:
                    if results and results[0].version is not None:
                        self.version = max(self.version or 0, results[0].version)
                    p.future.set_result((results, reply.get("timing") or {}) if p.with_timing else results)
            else:
                p.future.set_result(reply)

    def _resend_in_full(self, p: _Pending, code: str, message: str) -> bool:
        """After ``unknown_episode`` (or ``version`` from a v1 worker) a streamed request goes again with all its frames."""
        if p.keys is None or p.full_resends >= _MAX_FULL_RESENDS:
            return False
        if code == ErrorCode.UNKNOWN_EPISODE:
            log.debug("worker at %s lost frames of request %d (%s); resending them", self.url, p.id, message)
            for key in {k for k in p.keys if k is not None}:
                self._uploads.forget(key)
        elif code == ErrorCode.VERSION:
            log.warning("reward worker at %s speaks only protocol v1 (%s); sending full frames from now on",
                        self.url, message)
            self.stream = False
            p.keys = [None] * len(p.queries)
        else:
            return False
        p.full_resends += 1
        if code == ErrorCode.UNKNOWN_EPISODE:
            self._transfer["unknown_episode_resends"] += 1
        p.parts = None
        return True
