"""Fault tolerance with real worker processes: slow worker, full queue, kill -9 and restart.

The slow worker is the real tiny model behind ``rlrm worker --slow-ms`` (a test aid that sleeps
before every batch), so timeouts and queueing are exercised without a big model.
"""

import os
import re
import signal
import time

import numpy as np
import pytest
import zmq

from rlrm.transport import RewardClient, WorkerError, spawn_worker
from rlrm.transport.protocol import ErrorCode
from rlrm.types import RewardQuery

SLOW_MS = 1000
LONG_MS = 120000  # model calls on a loaded 2-core machine


def frames(t=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (t, 32, 32, 3), dtype=np.uint8)


QUERY = RewardQuery(frames(), "close the drawer")


@pytest.fixture(scope="module")
def slow_worker():
    """One batch at a time, two queries may wait, every batch takes SLOW_MS longer."""
    proc = spawn_worker("tiny", seed=0, device="cpu", threads=1, max_batch=1, max_queue=2, slow_ms=SLOW_MS)
    yield proc
    proc.stop()


def wait_idle(client):
    """Let everything queued before this point finish (the worker serves in order)."""
    client.score([QUERY], timeout_ms=LONG_MS)


def test_slow_worker_gives_a_timeout_error_naming_url_and_time(slow_worker):
    with RewardClient(slow_worker.url, timeout_ms=300, retries=1) as client:
        wait_idle(client)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError) as err:
            client.score([QUERY])
        waited_ms = (time.monotonic() - t0) * 1000
        message = str(err.value)
        assert slow_worker.url in message
        assert "2 attempts" in message and "timeout_ms=300" in message
        reported = float(re.search(r"after waiting (\d+) ms", message).group(1))
        assert 600 <= reported <= waited_ms + 1
        # the same client keeps working once it asks with enough patience
        assert len(client.score([QUERY], timeout_ms=LONG_MS)[0]) == 2


def test_ping_and_info_are_answered_while_a_batch_computes(slow_worker):
    with RewardClient(slow_worker.url, timeout_ms=LONG_MS, retries=0) as client:
        wait_idle(client)
        running = client.score_async([QUERY])
        time.sleep(0.2)
        client.ping(timeout_ms=SLOW_MS / 2)
        info = client.info(timeout_ms=SLOW_MS / 2)
        assert not running.done(), "ping/info waited for the model: they must be answered by the socket thread"
        assert info.extra["slow_ms"] == SLOW_MS
        assert len(running.result()[0]) == 2


def test_a_full_queue_replies_busy_at_once(slow_worker):
    with RewardClient(slow_worker.url, timeout_ms=LONG_MS, retries=0) as client:
        wait_idle(client)
        # one computing + max_queue=2 waiting: of five requests at least two are turned away
        futures = [client.score_async([RewardQuery(frames(seed=i), "close the drawer")]) for i in range(5)]
        outcomes = []
        for f in futures:
            try:
                outcomes.append(len(f.result()[0]))
            except WorkerError as e:
                assert e.code == ErrorCode.BUSY and "max_queue=2" in e.message
                outcomes.append("busy")
        assert outcomes.count("busy") >= 2, outcomes
        assert outcomes.count(2) >= 1, outcomes
        assert client.stats()["errors"]["busy"] >= 2


def test_spawning_on_a_taken_port_fails_fast_with_the_worker_log():
    ctx = zmq.Context()
    squatter = ctx.socket(zmq.ROUTER)
    port = squatter.bind_to_random_port("tcp://127.0.0.1")
    try:
        with pytest.raises(RuntimeError, match=rf"(?s)exited with code 1.*cannot bind tcp://127.0.0.1:{port}"):
            spawn_worker("tiny", bind=port, startup_timeout_s=120)
    finally:
        squatter.close(0)
        ctx.term()


@pytest.mark.slow
def test_kill_9_mid_request_then_restart_on_the_same_port(slow_worker):
    """Runs last in this module: it kills the module's worker."""
    url = slow_worker.url
    port = int(url.rsplit(":", 1)[1])
    with RewardClient(url, timeout_ms=3000, retries=40) as client:
        before = client.score([QUERY], timeout_ms=LONG_MS)
        in_flight = client.score_async([QUERY])
        time.sleep(0.3)  # the worker is now inside its SLOW_MS batch
        os.kill(slow_worker.pid, signal.SIGKILL)
        slow_worker.kill()
        assert slow_worker.process.returncode == -signal.SIGKILL
        with spawn_worker("tiny", bind=port, seed=0, device="cpu", threads=1) as restarted:
            assert restarted.url == url
            # the request in flight is resent to the new worker, and the next call just works
            recovered = in_flight.result()
            after = client.score([QUERY])
        np.testing.assert_allclose(after[0].progress, before[0].progress, atol=1e-5)
        np.testing.assert_allclose(recovered[0].progress, before[0].progress, atol=1e-5)


def test_worker_exits_when_the_process_that_spawned_it_is_killed(tmp_path):
    """A trainer killed with SIGKILL must not leave its reward worker running (and holding the port)."""
    import subprocess
    import sys

    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from rlrm.transport import spawn_worker\n"
        "w = spawn_worker('tiny', seed=0, threads=1)\n"
        "print(w.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = int(parent.stdout.readline())
        os.kill(worker_pid, 0)  # the worker is up
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(worker_pid, 0)
            except ProcessLookupError:
                break
            # reap it if it became our zombie (it is the parent's child, so normally init reaps it)
            time.sleep(0.2)
        else:
            os.kill(worker_pid, signal.SIGKILL)
            pytest.fail(f"worker {worker_pid} still running 30 s after its parent was killed")
    finally:
        if parent.poll() is None:
            parent.kill()
