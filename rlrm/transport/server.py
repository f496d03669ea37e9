"""The reward worker: a reward model served on a ZeroMQ ROUTER socket with continuous batching.

* :class:`RewardWorker` - binds a ROUTER, answers ``ping``/``info`` at once, keeps streamed
  frames in a :class:`~rlrm.transport.frame_store.FrameStore`, queues ``score`` requests from all
  clients in a :class:`~rlrm.transport.batching.ContinuousBatcher`, and a batcher thread runs the
  model: at once when it is idle, on everything that arrived meanwhile when it is busy.
* :func:`is_loopback` - whether a bind address stays on this machine.

Threads: the socket thread owns the ROUTER, an inproc PAIR and the frame store; JPEG frames
are decoded on a small thread pool while the model runs; the batcher thread owns the other
PAIR end and sends finished replies through it, so no socket is ever shared across threads.
The model runs only on the batcher thread, so while a batch computes the worker still answers
``ping``/``info``, stores uploads, rejects bad input, and replies ``busy`` when the queue is full.

Model versions: :meth:`RewardWorker.swap_model` (or a versions folder given as ``watch``, polled by a
:class:`~rlrm.transport.versions.VersionWatcher` that loads each new version on its own thread) hands
the batcher a new model; it takes over between batches, so no request is dropped or failed, and every
score reply names the ``version`` that scored it (0: the model the worker started with).
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import zmq

from rlrm.transport.batching import ContinuousBatcher, Job, WorkerStats
from rlrm.transport.frame_store import FrameStore, StoredFrame
from rlrm.transport.keys import load_server_keys
from rlrm.transport.protocol import (
    ErrorCode,
    Limits,
    ProtocolError,
    Request,
    encode_error,
    encode_reply,
    parse_request,
    request_version,
)
from rlrm.transport.versions import VersionWatcher

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


class RewardWorker:
    """Serve a reward model to many clients over ZeroMQ, batching their queries.

    Args:
        model: anything with ``info() -> ModelInfo`` and ``score(list[RewardQuery]) -> list[RewardResult]``;
            a model with ``forget_features`` (Robometer) also gets ``feature_keys`` for streamed frames.
        bind: ZeroMQ endpoint; ``tcp://127.0.0.1:0`` lets the OS pick a free port (see :attr:`url`).
            Addresses other than loopback/ipc need ``curve_keys``.
        max_batch: most queries per model call (1 = no batching).
        max_wait_ms: opt-in extra wait for a batch to fill (default 0: an idle model starts at once).
        max_queue: queries allowed to wait; a request past it gets ``busy`` at once.
        limits: size limits of one request (past them: ``too_large``).
        curve_keys: directory made by ``rlrm keys`` (or a ``(public, secret)`` z85 pair): enables
            CurveZMQ, and then only clients that hold the server public key get answers.
        store_mb: memory cap of the frame store of streamed episodes (MiB).
        store_idle_s: a streamed episode untouched this long is dropped.
        decode_threads: threads decoding JPEG frames while the model runs.
        max_padding: batch grouping bound (see :class:`~rlrm.transport.batching.ContinuousBatcher`).
        watch: a versions folder (:mod:`rlrm.transport.versions`) to poll for new model versions; needs ``load``.
        load: ``load(folder) -> model`` for a published version (``rlrm worker`` passes ``make_reward_model``).
        watch_poll_s: seconds between looks at ``watch``.

    >>> from rlrm.models import make_reward_model                      # doctest: +SKIP
    >>> with RewardWorker(make_reward_model("tiny"), bind="tcp://127.0.0.1:0") as worker:  # doctest: +SKIP
    ...     print(worker.url)                                              # tcp://127.0.0.1:40123
    """

    def __init__(
        self,
        model: Any,
        bind: str = "tcp://127.0.0.1:5555",
        max_batch: int = 16,
        max_wait_ms: float = 0.0,
        max_queue: int = 256,
        limits: Limits | None = None,
        curve_keys: Any = None,
        store_mb: float = 512.0,
        store_idle_s: float = 600.0,
        decode_threads: int = 2,
        max_padding: float = 0.5,
        watch: str | None = None,
        load: Any = None,
        watch_poll_s: float = 0.5,
    ) -> None:
        if not (hasattr(model, "score") and hasattr(model, "info")):
            raise TypeError(f"model must have score() and info() (a RewardModel), got {type(model).__name__}")
        if decode_threads < 1:
            raise ValueError(f"decode_threads must be >= 1, got {decode_threads}")
        self.batcher = ContinuousBatcher(
            model, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue, max_padding=max_padding
        )
        # evicted frames' features are dropped from whichever model version serves when they leave
        self.frame_store = FrameStore(max_bytes=int(store_mb * 2**20), idle_s=store_idle_s,
                                      on_evict=self.batcher.forget_features)
        if watch is not None and not callable(load):
            raise ValueError(f"watch={watch!r} needs load=<callable: folder -> model> to load the versions it finds")
        self._watcher = VersionWatcher(watch, self._load_version, poll_s=watch_poll_s) if watch is not None else None
        self._load = load
        self._decode_threads = int(decode_threads)
        self._decoder: ThreadPoolExecutor | None = None
        self.bind = re.sub(r"^(tcp://.+):0$", r"\1:*", bind)
        if curve_keys is None and not is_loopback(self.bind):
            raise ValueError(
                f"refusing to bind {bind!r} without CurveZMQ keys: only loopback (127.0.0.1, ::1, localhost) "
                "and ipc:// are served unauthenticated. Make keys with `rlrm keys DIR` and pass curve_keys=DIR "
                "(`rlrm worker --curve-keys DIR`)"
            )
        self._curve = load_server_keys(curve_keys) if curve_keys is not None else None
        self.limits = limits or Limits()
        self._model_info = model.info().to_dict()
        extra = self._model_info.get("extra") or {}
        # a query's share of a batch's work: frame pixels as the model will see them (resized into its bounds)
        self._pixel_bounds = (int(extra.get("min_pixels") or 1), int(extra.get("max_pixels") or 2**62))
        self._ctx = zmq.Context()
        self._pair_addr = f"inproc://rlrm-worker-{next(_instances)}"
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
        self._decoder = ThreadPoolExecutor(self._decode_threads, thread_name_prefix="rlrm-worker-decode")
        sock_thread = threading.Thread(target=self._serve, name="rlrm-worker-socket", daemon=True)
        sock_thread.start()
        self._ready.wait()
        if self._start_error is not None:
            sock_thread.join()
            self._decoder.shutdown(wait=False)
            self._ctx.term()
            raise OSError(f"reward worker cannot bind {self.bind!r}: {self._start_error}") from self._start_error
        self._started_at = time.monotonic()
        batch_thread = threading.Thread(target=self._batch_loop, name="rlrm-worker-batcher", daemon=True)
        batch_thread.start()
        self._threads = [sock_thread, batch_thread]
        if self._watcher is not None:
            self._watcher.check()  # a version published before the start is served from the first batch
            self._watcher.start()
        log.info(
            "reward worker %s serving %s (max_batch=%d, max_wait_ms=%.1f, frame store %.0f MiB, curve=%s)",
            self._model_info.get("name"), self._url, self.batcher.max_batch, self.batcher.max_wait_s * 1000,
            self.frame_store.max_bytes / 2**20, self._curve is not None,
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
        self.batcher.wake()
        if threading.current_thread() in self._threads:
            return
        if self._watcher is not None:
            self._watcher.stop()
        for t in self._threads:
            t.join(timeout_s)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("reward worker threads %s still running after %.0f s; leaving them", alive, timeout_s)
        elif self._threads and not self._ctx.closed:
            self._ctx.term()
        if self._decoder is not None and not alive:
            self._decoder.shutdown(wait=False, cancel_futures=True)
            self.frame_store.clear()  # the socket thread is gone; frees the model's cached features too

    def __enter__(self) -> RewardWorker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def model(self) -> Any:
        """The model serving batches now (after a swap: the newest version's)."""
        return self.batcher.model

    @property
    def version(self) -> int:
        """The model version serving batches now (0: the one the worker started with)."""
        return self.batcher.version

    def swap_model(self, model: Any, version: int) -> None:
        """Serve ``model`` as ``version`` from the next batch on; queued and running requests are all answered.

        Raises ``ValueError`` for a version not newer than :attr:`version`.
        """
        self.batcher.swap(model, version)

    def _load_version(self, version: int, folder: Any) -> None:
        """Load a published version on the watcher thread and hand it to the batcher."""
        t0 = time.monotonic()
        model = self._load(str(folder))
        self.swap_model(model, version)
        log.info("loaded reward model version %d from %s in %.1f s", version, folder, time.monotonic() - t0)

    def stats(self) -> dict[str, Any]:
        """The counters (see :class:`WorkerStats`), queue depth, batching settings, uptime, the frame
        store (``frame_store``) and the model's vision feature cache (``vision_cache``, if it has one).

        Call it from the socket thread (the ``info`` op does) or while the worker is stopped: the
        frame store belongs to the socket thread.
        """
        d = self.batcher.stats()
        d["uptime_s"] = time.monotonic() - self._started_at
        d["frame_store"] = self.frame_store.stats()
        cache_stats = getattr(self.batcher.model, "feature_cache_stats", None)
        if callable(cache_stats):
            d["vision_cache"] = cache_stats()
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
                self.frame_store.expire(time.monotonic())
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

    def _on_message(self, router: zmq.Socket, parts: list[zmq.Frame]) -> None:
        identity, body = parts[0].bytes, parts[1:]
        arrived = time.monotonic()
        try:
            request = parse_request(body, self.limits)
            job = self._admit(identity, request, arrived) if request.op == "score" else None
        except ProtocolError as e:
            self.batcher.count(error=e.code)
            log.debug("rejected request %r: %s", e.request_id, e)
            router.send_multipart([identity, *encode_error(e.request_id, e.code, e.message, v=request_version(body))])
            return
        self.batcher.count(op=request.op)
        v = request.version
        if request.op == "ping":
            router.send_multipart([identity, *encode_reply(request.id, v=v, pong=True)])
        elif request.op == "info":
            router.send_multipart([identity, *encode_reply(request.id, v=v, info=self._model_info, stats=self.stats(),
                                                           version=self.version)])
        else:
            busy = self.batcher.offer(job)
            if busy is not None:
                router.send_multipart([identity, *encode_error(request.id, ErrorCode.BUSY, busy, v=v)])

    def _admit(self, identity: bytes, request: Request, arrived: float) -> Job:
        """A queued job for a score request: start JPEG decodes, store uploads, resolve streamed items.

        Items are taken in order, each after its own upload: a frame index names the latest upload
        of it in this request, else the stored frame. If a streamed item names a frame that is
        neither, nothing is stored and the request gets ``unknown_episode``.
        """
        latest: dict[tuple[str, int], tuple[int, int]] = {}  # (episode, index) -> (item, upload position)
        plans: list[list[Any]] = []  # per streamed item, per frame: (item, position) or a StoredFrame
        for i, item in enumerate(request.items):
            if not item.streamed:
                plans.append([])
                continue
            for k, index in enumerate(item.upload_index):
                latest[(item.episode, index)] = (i, k)
            plan: list[Any] = [latest.get((item.episode, index)) for index in item.frame_index]
            wanted = [index for index, p in zip(item.frame_index, plan, strict=True) if p is None]
            found, missing = self.frame_store.lookup(item.episode, wanted, arrived)
            if missing:
                shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
                raise ProtocolError(
                    ErrorCode.UNKNOWN_EPISODE,
                    f"items[{i}]: episode {item.episode!r} holds no frame {shown} (never uploaded, evicted, "
                    "or the worker restarted); resend them",
                    request.id,
                )
            stored_iter = iter(found)
            plans.append([p if p is not None else next(stored_iter) for p in plan])
        uploaded: dict[tuple[int, int], StoredFrame] = {}
        for i, item in enumerate(request.items):
            if item.upload is None:
                continue
            _, h, w, _ = item.upload.shape
            for k, index in enumerate(item.upload_index):
                block = item.upload
                frame = self._decoder.submit(block.frame, k) if block.needs_decoding else block.frame(k)
                uploaded[(i, k)] = self.frame_store.put(item.episode, index, frame, (h, w), arrived)
        job = Job(identity, request, arrived)
        for i, item in enumerate(request.items):
            if item.streamed:
                frames = [uploaded[p] if isinstance(p, tuple) else p for p in plans[i]]
                sizes = {f.hw for f in frames}
                if len(sizes) > 1:
                    raise ProtocolError(
                        ErrorCode.BAD_REQUEST,
                        f"items[{i}]: frames of one query must share one size, got {sorted(sizes)}",
                        request.id,
                    )
                job.sources.append(frames)
                (h, w), t = frames[0].hw, len(frames)
            else:
                block = item.frames
                if block.needs_decoding:  # one task per frame: the pool decodes them side by side
                    job.sources.append([self._decoder.submit(block.frame, k) for k in range(block.shape[0])])
                else:
                    job.sources.append(block.frames())
                t, h, w, _ = block.shape
            job.lengths.append(t * min(max(h * w, self._pixel_bounds[0]), self._pixel_bounds[1]))
        return job

    # ---------------------------------------------------------------- batcher thread

    def _batch_loop(self) -> None:
        pair = self._ctx.socket(zmq.PAIR)
        pair.setsockopt(zmq.LINGER, 1000)
        pair.connect(self._pair_addr)
        try:
            while True:
                batch = self.batcher.next_batch(self._stop)
                if not batch:
                    if self._stop.is_set():
                        return
                    continue
                for identity, reply in self.batcher.run(batch):
                    try:
                        pair.send_multipart([identity, *reply], flags=zmq.NOBLOCK)
                    except zmq.Again:  # only when the socket thread is gone (stopped) or stalled
                        log.error("dropping a reply: the socket thread is not taking replies")
        finally:
            pair.close()
