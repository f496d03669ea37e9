"""Continuous batching in a real worker on 127.0.0.1: an idle model runs a request at once, requests that
arrive while it is busy form the next batch, and ``max_wait_ms`` is an opt-in extra wait.

The model is a fake that records when each batch starts (and which tasks it holds) and blocks
on a gate the test opens, so the order of events is under the test's control; no test asserts
how long anything took.
"""

import threading
import time

import numpy as np
import pytest

from rlrm.transport import RewardClient, RewardWorker
from rlrm.types import ModelInfo, RewardQuery, RewardResult

WAIT_S = 60.0  # liveness bound only: how long the test waits for an event that must happen


class GatedModel:
    """A reward model that logs each batch (start time, tasks) and then waits for the test to open its gate."""

    def __init__(self):
        self.batches = []  # (time.monotonic() at the start of score, [task, ...])
        self.started = threading.Semaphore(0)
        self.gate = threading.Semaphore(0)

    def info(self):
        return ModelInfo(name="gated")

    def score(self, queries):
        self.batches.append((time.monotonic(), [q.task for q in queries]))
        self.started.release()
        assert self.gate.acquire(timeout=WAIT_S), "the test never opened the gate"
        return [RewardResult(np.full(q.num_frames, 0.5), np.zeros(q.num_frames)) for q in queries]

    def wait_started(self):
        assert self.started.acquire(timeout=WAIT_S), "no batch started"


def query(task):
    return RewardQuery(np.zeros((2, 32, 32, 3), np.uint8), task)


def wait_queued(client, n):
    """Until the worker reports ``n`` queries waiting (answered by its socket thread while the model blocks)."""
    deadline = time.monotonic() + WAIT_S
    while client.stats()["queued_items"] != n:
        assert time.monotonic() < deadline, f"worker never had {n} queries queued"
        time.sleep(0.01)


def test_an_idle_model_runs_at_once_and_arrivals_while_busy_form_the_next_batch():
    model = GatedModel()
    with RewardWorker(model, bind="tcp://127.0.0.1:0", max_batch=16) as worker, \
            RewardClient(worker.url, timeout_ms=WAIT_S * 1000, retries=0) as client:
        sent_a = time.monotonic()
        a = client.score_async([query("A")])
        model.wait_started()  # A's batch starts with nothing else sent: it did not wait for company
        assert [tasks for _, tasks in model.batches] == [["A"]]
        later = [client.score_async([query(t)]) for t in "BCD"]
        wait_queued(client, 3)
        released = time.monotonic()
        model.gate.release()  # A finishes; B, C, D arrived meanwhile and go together
        model.wait_started()
        assert [tasks for _, tasks in model.batches] == [["A"], ["B", "C", "D"]]
        model.gate.release()
        for f in [a, *later]:
            assert len(f.result()[0]) == 2
        # idle again: the next request runs alone, at once
        e = client.score_async([query("E")])
        model.wait_started()
        model.gate.release()
        e.result()
        stats = client.stats()
    assert [tasks for _, tasks in model.batches] == [["A"], ["B", "C", "D"], ["E"]]
    starts = [t for t, _ in model.batches]
    assert sent_a <= starts[0] and released <= starts[1] <= starts[2]  # order of events, not durations
    assert stats["waited_batches"] == 0 and stats["max_wait_ms"] == 0.0
    assert stats["batch_sizes"] == {"1": 2, "3": 1}


def test_max_wait_ms_is_an_opt_in_wait_for_a_fuller_batch():
    model = GatedModel()
    with RewardWorker(model, bind="tcp://127.0.0.1:0", max_batch=2, max_wait_ms=WAIT_S * 1000) as worker, \
            RewardClient(worker.url, timeout_ms=WAIT_S * 1000, retries=0) as client:
        a = client.score_async([query("A")])
        wait_queued(client, 1)  # held back: the batch waits for a second query
        assert model.batches == []
        b = client.score_async([query("B")])
        model.wait_started()
        model.gate.release()
        a.result(), b.result()
        stats = client.stats()
    assert [tasks for _, tasks in model.batches] == [["A", "B"]]
    assert stats["waited_batches"] == 1


@pytest.mark.parametrize("max_padding", [0.5, 100.0])
def test_batches_group_queries_of_similar_length(max_padding):
    model = GatedModel()
    with RewardWorker(model, bind="tcp://127.0.0.1:0", max_batch=16, max_padding=max_padding) as worker, \
            RewardClient(worker.url, timeout_ms=WAIT_S * 1000, retries=0) as client:
        first = client.score_async([query("first")])
        model.wait_started()
        short = [client.score_async([RewardQuery(np.zeros((1, 32, 32, 3), np.uint8), f"short{i}")]) for i in range(2)]
        long = client.score_async([RewardQuery(np.zeros((8, 32, 32, 3), np.uint8), "long")])
        wait_queued(client, 3)
        for _ in range(3):
            model.gate.release()
        for f in [first, *short, long]:
            f.result()
    tasks = [tasks for _, tasks in model.batches]
    if max_padding == 0.5:  # 8 frames next to 1-frame queries would be mostly padding: a batch of its own
        assert tasks == [["first"], ["short0", "short1"], ["long"]]
    else:
        assert tasks == [["first"], ["short0", "short1", "long"]]
