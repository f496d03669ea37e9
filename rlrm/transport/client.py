"""The reward client: talks to a :class:`~rlrm.transport.server.RewardWorker` over a ZeroMQ DEALER socket.

* :class:`RewardClient` - ``score`` / ``score_async`` / ``info`` / ``ping`` with timeouts, retries
  and socket re-creation (the lazy-pirate pattern), safe to share between threads.
* :class:`WorkerError` - the worker answered ``ok: false``; ``code`` says why.

One background I/O thread owns the socket; callers hand it requests through a queue and get
``concurrent.futures.Future`` objects back, so many requests can be in flight at once (the
worker batches them). A request without a reply within ``timeout_ms`` is resent on a fresh
socket up to ``retries`` times; replies whose id is no longer awaited are dropped.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import zmq

from rlrm.transport.keys import load_server_public_key
from rlrm.transport.protocol import (
    ENCODINGS,
    ProtocolError,
    check_worker_url,
    decode_reply,
    encode_request,
    results_from_reply,
)
from rlrm.types import ModelInfo, RewardQuery, RewardResult, validate_queries

__all__ = ["RewardClient", "WorkerError"]

log = logging.getLogger(__name__)


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
    parts: list[Any]
    future: Future
    queries: Sequence[RewardQuery]
    timeout_s: float
    first_sent: float = 0.0
    sent_at: float = 0.0
    attempts: int = 0


class RewardClient:
    """Score queries on a remote reward worker.

    Args:
        url: worker endpoint, e.g. ``"tcp://127.0.0.1:5555"`` or ``"ipc:///tmp/rlrm.sock"``.
        timeout_ms: how long to wait for each attempt's reply.
        retries: resends (each on a fresh socket) after a timeout before raising ``TimeoutError``.
        curve_server_key: the worker's public key (z85 text, ``server.key`` file, or the key
            directory) when the worker runs with ``--curve-keys``.
        enc: ``"raw"`` (default, zero-copy) or ``"jpeg"`` (smaller on slow links, lossy).
        jpeg_quality: 0-100, for ``enc="jpeg"``.

    >>> client = RewardClient("tcp://127.0.0.1:5555", timeout_ms=2000)       # doctest: +SKIP
    >>> results = client.score([RewardQuery(frames, "open the drawer")])      # doctest: +SKIP
    >>> results[0].progress                                                   # doctest: +SKIP
    array([0.02, 0.31, 0.77], dtype=float32)
    """

    def __init__(
        self,
        url: str,
        timeout_ms: float = 30000,
        retries: int = 3,
        curve_server_key: Any = None,
        enc: str = "raw",
        jpeg_quality: int = 90,
    ) -> None:
        check_worker_url(url)
        if timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be > 0, got {timeout_ms}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if enc not in ENCODINGS:
            raise ValueError(f"enc must be one of {ENCODINGS}, got {enc!r}")
        self.url = url
        self.timeout_ms = float(timeout_ms)
        self.retries = int(retries)
        self.enc = enc
        self.jpeg_quality = int(jpeg_quality)
        self._server_key = load_server_public_key(curve_server_key) if curve_server_key is not None else None
        self._client_keys = zmq.curve_keypair() if self._server_key is not None else None
        self.stale_replies = 0  # replies dropped because their request had already timed out
        self._ids = itertools.count(1)
        self._commands: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._ctx = zmq.Context()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._io_loop, name=f"rlrm-client {url}", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- public API

    def score_async(self, queries: Sequence[RewardQuery], timeout_ms: float | None = None) -> Future:
        """Send queries and return a Future of ``list[RewardResult]`` (one per query, in order)."""
        queries = validate_queries(queries)
        if not queries:
            done: Future = Future()
            done.set_result([])
            return done
        return self._submit("score", queries, timeout_ms)

    def score(self, queries: Sequence[RewardQuery], timeout_ms: float | None = None) -> list[RewardResult]:
        """Score queries on the worker and wait for the results (``TimeoutError`` after all retries)."""
        return self.score_async(queries, timeout_ms).result()

    def info(self, timeout_ms: float | None = None) -> ModelInfo:
        """The worker's :class:`ModelInfo`."""
        return ModelInfo.from_dict(self._submit("info", (), timeout_ms).result()["info"])

    def stats(self, timeout_ms: float | None = None) -> dict[str, Any]:
        """The worker's counters (requests, items, batch sizes, queue/inference ms, errors)."""
        return self._submit("info", (), timeout_ms).result()["stats"]

    def ping(self, timeout_ms: float | None = None) -> float:
        """Round trip to the worker in ms (raises ``TimeoutError`` if it does not answer)."""
        t0 = time.perf_counter()
        self._submit("ping", (), timeout_ms).result()
        return (time.perf_counter() - t0) * 1000

    def close(self) -> None:
        """Stop the I/O thread and close the socket; pending calls fail with ``RuntimeError``."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._commands.put(None)
        self._wake()
        self._thread.join(5.0)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._ctx.term()

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RewardClient({self.url!r}, timeout_ms={self.timeout_ms:g}, retries={self.retries})"

    # ---------------------------------------------------------------- caller side

    def _submit(self, op: str, queries: Sequence[RewardQuery], timeout_ms: float | None) -> Future:
        if self._closed.is_set():
            raise RuntimeError(f"{self!r} is closed")
        timeout_ms = self.timeout_ms if timeout_ms is None else float(timeout_ms)
        rid = next(self._ids)
        # deadline_ms lets the worker skip work the client has already given up on
        parts = encode_request(
            rid, op, queries, enc=self.enc, jpeg_quality=self.jpeg_quality, deadline_ms=timeout_ms
        )
        fut: Future = Future()
        fut.set_running_or_notify_cancel()
        self._commands.put(_Pending(rid, op, parts, fut, queries, timeout_ms / 1000.0))
        self._wake()
        return fut

    def _wake(self) -> None:
        # a full pipe means the I/O thread has wake-ups pending already
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

    def _send(self, sock: zmq.Socket, p: _Pending, now: float) -> None:
        p.attempts += 1
        p.sent_at = now
        if not p.first_sent:
            p.first_sent = now
        try:
            sock.send_multipart(p.parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:  # high-water mark reached: counts as a lost attempt, the timeout retries it
            log.debug("send of request %d to %s would block; will retry", p.id, self.url)

    def _io_loop(self) -> None:
        pending: dict[int, _Pending] = {}
        sock = self._new_socket()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while True:
                now = time.monotonic()
                wait = min((p.sent_at + p.timeout_s - now for p in pending.values()), default=1.0)
                events = dict(poller.poll(max(0.0, wait) * 1000))
                if self._wake_r in events:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    while True:
                        try:
                            cmd = self._commands.get_nowait()
                        except queue.Empty:
                            break
                        if cmd is None:
                            return
                        pending[cmd.id] = cmd
                        self._send(sock, cmd, time.monotonic())
                if sock in events:
                    self._receive(sock, pending)
                now = time.monotonic()
                expired = [p for p in pending.values() if now >= p.sent_at + p.timeout_s]
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
                for p in pending.values():
                    if p.id in expired_ids:
                        self._send(sock, p, now)
                    else:  # its reply was due on the old socket: resend without using up a retry
                        p.attempts -= 1
                        self._send(sock, p, now)
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

    def _receive(self, sock: zmq.Socket, pending: dict[int, _Pending]) -> None:
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
                p.future.set_exception(WorkerError(self.url, str(err.get("code")), str(err.get("message"))))
            elif p.op == "score":
                try:
                    p.future.set_result(results_from_reply(reply, p.queries))
                except (ProtocolError, KeyError, ValueError, TypeError) as e:
                    p.future.set_exception(WorkerError(self.url, "internal", f"malformed score reply: {e}"))
            else:
                p.future.set_result(reply)
