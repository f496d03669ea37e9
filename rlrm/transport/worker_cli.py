"""``rlrm worker``: build a reward model and serve it with a :class:`~rlrm.transport.server.RewardWorker`.

* ``add_arguments`` / ``run`` - the subcommand (model spec, bind address, batching, limits, keys).
* :class:`SlowModel` - test/benchmark aid behind ``--slow-ms``: sleeps before every batch so
  timeouts and queueing can be exercised against a real model.

Once bound, the worker prints one line ``RLRM_WORKER_READY <endpoint>`` on stdout (the port
the OS chose when bound to port 0); :func:`rlrm.transport.process.spawn_worker` waits for it.
SIGINT/SIGTERM stop it gracefully (the batch in progress is finished and answered).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import time
from typing import Any

import zmq

from rlrm.config import WorkerConfig
from rlrm.transport.protocol import Limits
from rlrm.transport.server import RewardWorker, is_loopback

__all__ = ["READY_MARKER", "SlowModel", "add_arguments", "run"]

log = logging.getLogger(__name__)

READY_MARKER = "RLRM_WORKER_READY"


class SlowModel:
    """Test/benchmark aid: a reward model that sleeps ``delay_ms`` before scoring each batch.

    Other attributes (``forget_features``, ``feature_cache_stats``) are the wrapped model's.

    >>> slow = SlowModel(model, delay_ms=500)   # doctest: +SKIP
    """

    def __init__(self, model: Any, delay_ms: float) -> None:
        self.model = model
        self.delay_ms = float(delay_ms)

    def __getattr__(self, name: str) -> Any:
        if name == "model":  # not set yet (e.g. while unpickling): avoid recursing
            raise AttributeError(name)
        return getattr(self.model, name)

    def info(self):
        """The wrapped model's info, with the delay recorded in ``extra``."""
        info = self.model.info()
        info.extra = {**info.extra, "slow_ms": self.delay_ms}
        return info

    def score(self, queries, **kwargs):
        """Sleep, then score with the wrapped model (``kwargs`` such as ``feature_keys`` pass through)."""
        time.sleep(self.delay_ms / 1000.0)
        return self.model.score(queries, **kwargs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rlrm worker``."""
    parser.add_argument("--model", required=True,
                        help="model spec: 'tiny', 'demo', a checkpoint dir or a hub id (Robometer); "
                             "'roboreward:<dir, hub id or tiny>' (RoboReward)")
    parser.add_argument("--bind", default=WorkerConfig.bind,
                        help="ZeroMQ endpoint (default %(default)s; port 0 = any free port; "
                        "non-loopback addresses need --curve-keys)")
    parser.add_argument("--max-batch", type=int, default=WorkerConfig.max_batch, help="queries per model call (1 = no batching)")
    parser.add_argument("--max-wait-ms", type=float, default=WorkerConfig.max_wait_ms,
                        help="opt-in extra wait for a batch to fill (default 0: an idle model runs a request "
                        "at once; requests arriving while it is busy form the next batch)")
    parser.add_argument("--max-queue", type=int, default=WorkerConfig.max_queue, help="queries allowed to wait before 'busy'")
    parser.add_argument("--store-mb", type=float, default=512.0,
                        help="memory cap of the frames streamed clients upload once per episode (MiB)")
    parser.add_argument("--store-idle-s", type=float, default=600.0,
                        help="drop a streamed episode's frames after this long without a query")
    parser.add_argument("--decode-threads", type=int, default=2, help="threads decoding JPEG frames")
    parser.add_argument("--feature-cache-mb", type=float, default=1024.0,
                        help="memory cap of the vision features kept for stored frames (MiB, on the model's "
                        "device; Robometer models)")
    parser.add_argument("--device", default="auto", help="'auto' (the model's default: the checkpoint loader picks a GPU when available), 'cpu', 'cuda:1'")
    parser.add_argument("--dtype", default=None, help="model dtype, e.g. bfloat16 (default: the model's own)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for the model (OMP/MKL); 1 is often fastest on a shared CPU")
    parser.add_argument("--seed", type=int, default=None, help="seed of a randomly initialised model ('tiny')")
    parser.add_argument("--curve-keys", default=None, metavar="DIR",
                        help="CurveZMQ key directory made by `rlrm keys DIR`; required off loopback")
    parser.add_argument("--max-frames", type=int, default=Limits.max_frames, help="frames per query limit")
    parser.add_argument("--max-pixels", type=int, default=Limits.max_pixels, help="H*W per frame limit")
    parser.add_argument("--max-request-mb", type=float, default=Limits.max_bytes / 2**20,
                        help="bytes of frames per request limit, in MiB")
    parser.add_argument("--exit-with-parent", type=int, default=None, metavar="PID",
                        help="stop when process PID exits (spawn_worker sets it, so a killed trainer "
                        "leaves no orphan worker)")
    parser.add_argument("--nice", type=int, default=0,
                        help="lower the worker's CPU priority by this much (os.nice), e.g. when its model "
                        "shares CPU cores with a robot's control loop")
    parser.add_argument("--watch", default=None, metavar="DIR",
                        help="a versions folder a reward trainer publishes to (rlrm.transport.versions): each new "
                        "version is loaded and swapped in between batches; replies name the version")
    parser.add_argument("--slow-ms", type=float, default=0.0,
                        help="test/benchmark aid: sleep this long before every batch")


def _build_model(args: argparse.Namespace, spec: str | None = None) -> Any:
    """The model of ``--model`` (or of ``spec``, a published version's folder) with the worker's device/dtype."""
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        # read by torch's OpenMP/MKL runtimes when they load, which happens just below
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    from rlrm.models.base import make_reward_model  # lazily: this is where torch gets imported

    kwargs: dict[str, Any] = {}
    if args.device != "auto":
        kwargs["device"] = args.device
    if args.dtype is not None:
        kwargs["dtype"] = args.dtype
    if args.seed is not None:
        kwargs["seed"] = args.seed
    if spec is not None:
        kwargs.pop("seed", None)  # a saved version has its weights
    model = make_reward_model(spec or args.model, **kwargs)
    cache = getattr(model, "feature_cache", None)
    if cache is not None:
        cache.max_bytes = int(args.feature_cache_mb * 2**20)
    if args.slow_ms > 0:
        log.warning("--slow-ms %.0f: every batch is delayed on purpose (test/benchmark aid)", args.slow_ms)
        model = SlowModel(model, args.slow_ms)
    return model


def _bind_is_free(bind: str) -> bool:
    """Try the address before the (slow) model load, so a taken port fails in a second, not a minute."""
    if re.search(r":(0|\*)$", bind) or not bind.startswith("tcp://"):
        return True
    ctx = zmq.Context.instance()
    probe = ctx.socket(zmq.ROUTER)
    probe.setsockopt(zmq.LINGER, 0)
    try:
        probe.bind(bind)
        probe.unbind(probe.getsockopt_string(zmq.LAST_ENDPOINT))
    except zmq.ZMQError as e:
        log.error("cannot bind %s: %s (is another worker running there?)", bind, e)
        return False
    finally:
        probe.close(0)
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _watch_parent(pid: int, stop: Any, period_s: float = 1.0) -> threading.Thread:
    """Call ``stop()`` once process ``pid`` is gone (checked every ``period_s``); a daemon thread.

    A trainer killed with SIGKILL cannot stop its worker, and a reparented orphan would keep the
    port and the GPU memory; the original parent's pid disappearing (or our ppid changing) is the cue.
    """
    ppid = os.getppid()

    def _watch() -> None:
        while _pid_alive(pid) and os.getppid() == ppid:
            time.sleep(period_s)
        log.warning("parent process %d is gone, stopping the reward worker", pid)
        stop()

    thread = threading.Thread(target=_watch, name="rlrm-parent-watch", daemon=True)
    thread.start()
    return thread


def run(args: argparse.Namespace) -> int:
    """Build the model, bind, print the ready line, serve until SIGINT/SIGTERM."""
    limits = Limits(
        max_frames=args.max_frames, max_pixels=args.max_pixels, max_bytes=int(args.max_request_mb * 2**20)
    )
    # check the bind address before spending time loading a model
    if args.curve_keys is None and not is_loopback(args.bind):
        log.error(
            "refusing to bind %s without CurveZMQ keys: only loopback is served unauthenticated. "
            "Run `rlrm keys DIR` and start with --curve-keys DIR",
            args.bind,
        )
        return 2
    if not _bind_is_free(args.bind):
        return 1
    if args.nice:
        os.nice(args.nice)  # before any thread starts: Linux priorities are per thread, new ones inherit
    model = _build_model(args)
    import cv2

    # JPEG decodes already run side by side on the worker's decode threads; OpenCV's own thread
    # pool on top of them only spins against the model for the same cores (measured: 8 decodes
    # of 224 px took ~1.5x longer with it). This process is ours, so the global setting is too.
    cv2.setNumThreads(1)
    worker = RewardWorker(
        model,
        bind=args.bind,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        limits=limits,
        curve_keys=args.curve_keys,
        store_mb=args.store_mb,
        store_idle_s=args.store_idle_s,
        decode_threads=args.decode_threads,
        watch=args.watch,
        load=(lambda folder: _build_model(args, folder)) if args.watch else None,
    )

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping the reward worker", signal.Signals(signum).name)
        worker.request_stop()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    if args.exit_with_parent is not None:
        _watch_parent(args.exit_with_parent, worker.request_stop)
    worker.start()
    print(f"{READY_MARKER} {worker.url}", flush=True)
    sys.stdout.flush()
    worker.serve_forever()
    log.info("reward worker stopped: %s", worker.stats())
    return 0
