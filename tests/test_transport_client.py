"""Client behaviour against a scripted ROUTER peer (stale replies, lazy-pirate resends), LocalScorer, make_scorer."""

import threading

import msgpack
import numpy as np
import pytest
import zmq

from rlrm.transport import LocalScorer, RewardClient, RewardWorker, make_scorer
from rlrm.transport.protocol import decode_request, encode_reply, encode_results
from rlrm.types import RewardQuery, RewardResult

QUERY = RewardQuery(np.random.default_rng(1).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8), "pour the water")


class ScriptedPeer:
    """A ROUTER on 127.0.0.1 that answers each request with whatever ``script(n, identity, request)`` returns."""

    def __init__(self, script):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.url = f"tcp://127.0.0.1:{port}"
        self.script = script
        self.identities = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        n = 0
        while not self.stop.is_set():
            if not self.sock.poll(50):
                continue
            identity, *parts = self.sock.recv_multipart()
            self.identities.append(identity)
            for reply in self.script(n, identity, decode_request(parts)):
                self.sock.send_multipart([identity, *reply])
            n += 1

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close(0)
        self.ctx.term()


def fixed_result(request, value):
    return encode_reply(
        request.id,
        results=encode_results([RewardResult(np.full(q.num_frames, value), np.zeros(q.num_frames)) for q in request.queries]),
        timing={"queue_ms": 0.0, "infer_ms": 0.0},
    )


def test_stale_replies_are_dropped():
    # first a reply for a request nobody waits for, then the real one
    peer = ScriptedPeer(lambda n, ident, req: [encode_reply(req.id + 1000, results=[], timing={}), fixed_result(req, 0.25)])
    try:
        with RewardClient(peer.url, timeout_ms=5000, retries=0) as client:
            (result,) = client.score([QUERY])
            np.testing.assert_allclose(result.progress, [0.25] * 3)
            assert client.stale_replies == 1
    finally:
        peer.close()


def test_a_lost_reply_is_resent_on_a_fresh_socket_and_the_late_answer_is_ignored():
    late = []

    def script(n, identity, req):
        if n == 0:  # swallow the first attempt; answer it later on the old connection
            late.append((identity, req))
            return []
        old_identity, old_req = late[0]
        peer.sock.send_multipart([old_identity, *fixed_result(old_req, 0.99)])
        return [fixed_result(req, 0.5)]

    peer = ScriptedPeer(script)
    try:
        with RewardClient(peer.url, timeout_ms=300, retries=2) as client:
            (result,) = client.score([QUERY])
            np.testing.assert_allclose(result.progress, [0.5] * 3)
        assert len(peer.identities) == 2 and peer.identities[0] != peer.identities[1]
    finally:
        peer.close()


def test_malformed_score_replies_become_worker_errors():
    peer = ScriptedPeer(lambda n, ident, req: [[msgpack.packb({"v": 1, "id": req.id, "ok": True, "results": [{"progress": [0.1]}]})]])
    try:
        with RewardClient(peer.url, timeout_ms=5000, retries=0) as client, pytest.raises(Exception, match="malformed score reply"):
            client.score([QUERY])
    finally:
        peer.close()


def test_client_rejects_bad_arguments_before_sending():
    with pytest.raises(ValueError, match="ZeroMQ endpoint"):
        RewardClient("localhost:5555")
    with RewardClient("tcp://127.0.0.1:1", timeout_ms=100, retries=0) as client:
        with pytest.raises(TypeError, match="list of RewardQuery"):
            client.score(QUERY)
        with pytest.raises(TypeError, match=r"queries\[0\] must be a RewardQuery"):
            client.score([QUERY.frames])
        assert client.score([]) == []
    with pytest.raises(RuntimeError, match="closed"):
        client.score([QUERY])


def test_local_scorer_matches_the_model_and_runs_async(tiny_model):
    with LocalScorer(tiny_model) as scorer:
        (expected,) = tiny_model.score([QUERY])
        (now,) = scorer.score([QUERY])
        (later,) = scorer.score_async([QUERY]).result()
        np.testing.assert_allclose(now.progress, expected.progress, atol=1e-6)
        np.testing.assert_allclose(later.success, expected.success, atol=1e-6)
        assert scorer.info().name == tiny_model.info().name
        with pytest.raises(TypeError, match="list of RewardQuery"):
            scorer.score_async(QUERY)
    with pytest.raises(RuntimeError, match="closed"):
        scorer.score([QUERY])


def test_make_scorer_dispatches_on_the_source(tiny_model):
    client = make_scorer("tcp://127.0.0.1:5555", timeout_ms=100)
    assert isinstance(client, RewardClient) and client.timeout_ms == 100
    client.close()
    local = make_scorer(tiny_model)
    assert isinstance(local, LocalScorer) and local.model is tiny_model
    assert make_scorer(local) is local
    with pytest.raises(ValueError, match="not a worker URL"):
        make_scorer("tiny")
    with pytest.raises(TypeError, match="cannot make a scorer"):
        make_scorer(42)


def test_model_errors_reach_only_the_request_that_caused_them(tiny_model):
    class PickyModel:
        """The tiny model, except that it refuses one task (a model bug the worker must contain)."""

        def info(self):
            return tiny_model.info()

        def score(self, queries):
            if any(q.task == "break" for q in queries):
                raise RuntimeError("cannot score 'break'")
            return tiny_model.score(queries)

    worker = RewardWorker(PickyModel(), bind="tcp://127.0.0.1:0", max_batch=4, max_wait_ms=500)
    with worker, RewardClient(worker.url, timeout_ms=60000, retries=0) as client:
        # both land in one batch (sent back to back, 500 ms to gather); the batch fails, then
        # the worker scores each request alone so only the culprit gets the error
        good = client.score_async([QUERY])
        bad = client.score_async([RewardQuery(QUERY.frames, "break")])
        with pytest.raises(Exception, match="internal.*cannot score 'break'"):
            bad.result()
        np.testing.assert_allclose(good.result()[0].progress, tiny_model.score([QUERY])[0].progress, atol=1e-6)
        assert client.ping() >= 0
        stats = client.stats()
        assert stats["errors"]["internal"] == 1 and stats["batch_sizes"] == {"2": 1}, stats
