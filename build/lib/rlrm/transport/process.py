"""Run a reward worker as a real subprocess (``python -m rlrm worker``) from Python.

* :func:`spawn_worker` - start a worker for a model spec, wait until it answers ``ping``.
* :class:`WorkerProcess` - the running worker: ``url``, ``pid``, ``stop()``, ``kill()``, stderr tail.

Used by tests, benchmarks and single-machine setups that want the model out of the RL process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rlrm.transport.client import RewardClient
from rlrm.transport.worker_cli import READY_MARKER

__all__ = ["spawn_worker", "WorkerProcess"]

log = logging.getLogger(__name__)


class WorkerProcess:
    """A ``rlrm worker`` subprocess; a context manager that stops it on exit.

    Attributes:
        url: the endpoint it serves (with the real port when started on port 0).
        pid: its process id.
        process: the :class:`subprocess.Popen` object.
    """

    def __init__(self, process: subprocess.Popen, stderr_path: Path, command: list[str]) -> None:
        self.process = process
        self.command = command
        self.url: str | None = None
        self._stderr_path = stderr_path
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_stdout, name=f"rlrm-worker-{process.pid}-stdout", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """Process id of the worker."""
        return self.process.pid

    @property
    def alive(self) -> bool:
        """True while the worker process runs."""
        return self.process.poll() is None

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(READY_MARKER) and self.url is None:
                self.url = line.split(maxsplit=1)[1].strip()
                self._ready.set()
            else:
                log.debug("worker %d stdout: %s", self.pid, line.rstrip())
        self._ready.set()  # EOF: the process is gone; wake the waiter

    def wait_ready(self, timeout_s: float) -> str:
        """Block until the worker printed its endpoint; raises ``RuntimeError`` with its stderr tail if it died."""
        if not self._ready.wait(timeout_s) or self.url is None:
            with contextlib.suppress(subprocess.TimeoutExpired):  # stdout closed: it is exiting
                self.process.wait(5.0 if self._ready.is_set() else 0.0)
            code = self.process.poll()
            state = f"exited with code {code}" if code is not None else f"did not bind within {timeout_s:.0f} s"
            self.kill()
            raise RuntimeError(
                f"reward worker `{' '.join(self.command)}` {state}. Its stderr ends with:\n{self.stderr_tail()}"
            )
        return self.url

    def stderr_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines the worker wrote to stderr (its log)."""
        try:
            text = self._stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return "<stderr file gone>"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM (graceful: finishes the current batch), then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("worker %d ignored SIGTERM for %.0f s; killing it", self.pid, timeout_s)
                self.kill()
        self._cleanup()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the worker at once (what a crash looks like to clients)."""
        if self.alive:
            self.process.kill()
        self.process.wait()
        self._reader.join(2.0)

    def _cleanup(self) -> None:
        self._reader.join(2.0)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr_path.unlink(missing_ok=True)

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"WorkerProcess(pid={self.pid}, url={self.url!r}, alive={self.alive})"


def _flags(worker_args: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in worker_args.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        out += [flag] if value is True else [flag, str(value)]
    return out


def spawn_worker(
    model_spec: str,
    bind: str | int = "tcp://127.0.0.1:0",
    startup_timeout_s: float = 300.0,
    env: dict[str, str] | None = None,
    **worker_args: Any,
) -> WorkerProcess:
    """Start ``python -m rlrm worker --model model_spec`` and return once it answers ``ping``.

    Args:
        model_spec: passed to ``--model`` (``"tiny"``, a checkpoint dir, a hub id).
        bind: endpoint, or a port number on 127.0.0.1; port 0 (default) lets the OS pick.
        startup_timeout_s: how long model loading + binding may take.
        env: extra environment variables for the worker.
        **worker_args: more ``rlrm worker`` options by name, e.g. ``max_batch=1``, ``seed=0``,
            ``curve_keys="keys/"``, ``slow_ms=500``.

    >>> with spawn_worker("tiny", seed=0) as worker:         # doctest: +SKIP
    ...     client = RewardClient(worker.url)
    """
    if isinstance(bind, int):
        bind = f"tcp://127.0.0.1:{bind}"
    worker_args.setdefault("exit_with_parent", os.getpid())
    command = [sys.executable, "-m", "rlrm", "worker", "--model", model_spec, "--bind", bind, *_flags(worker_args)]
    fd, stderr_name = tempfile.mkstemp(prefix="rlrm-worker-", suffix=".log")
    with os.fdopen(fd, "w") as stderr:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, **(env or {})},
            # its own session: a Ctrl-C at the terminal goes to the run, which stops cleanly (a checkpoint needs
            # no reward) and then stops the worker; the worker exits with its parent in any case
            start_new_session=True,
        )
    worker = WorkerProcess(proc, Path(stderr_name), command)
    t0 = time.monotonic()
    url = worker.wait_ready(startup_timeout_s)
    client = RewardClient(url, timeout_ms=2000, retries=2, curve_server_key=worker_args.get("curve_keys"))
    try:
        client.ping()
    except TimeoutError as e:
        tail = worker.stderr_tail()
        worker.kill()
        raise RuntimeError(f"reward worker bound {url} but does not answer ping: {e}\nstderr tail:\n{tail}") from e
    finally:
        client.close()
    log.info("reward worker pid %d up at %s after %.1f s", worker.pid, url, time.monotonic() - t0)
    return worker
