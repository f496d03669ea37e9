"""Protocol v2 streaming against real workers on 127.0.0.1 serving the tiny Qwen3-VL Robometer.

Frames of an episode go over the wire once and queries name them; the worker's frame store
stays under its cap; a restarted worker loses no query; vision features of stored frames are
reused with the same scores; v1 clients keep working.
"""

import threading

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlrm.sampling import sample_indices
from rlrm.transport import RewardClient, RewardWorker
from rlrm.transport.protocol import ErrorCode, encode_request
from rlrm.types import RewardQuery

TIMEOUT_MS = 60000  # model calls on a shared 2-core machine
TASK = "reach the red target"


def episode_frames(steps, size=48, seed=0):
    """A smooth synthetic episode: a gradient with a square that moves each step, (steps, size, size, 3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x * 255 / size, y * 255 / size, np.full_like(x, rng.integers(0, 255))], axis=-1)
    frames = np.repeat(base[None], steps, axis=0).astype(np.uint8)
    for t in range(steps):
        r = (3 * t + seed) % (size - 8)
        frames[t, r : r + 8, r : r + 8] = rng.integers(0, 255, 3)
    return frames


def dense_queries(frames, episode_id, max_frames=8):
    """The dense reward's query at every step 1..T-1: frames 0..t subsampled with the default sampling."""
    out = []
    for t in range(1, len(frames)):
        idx = sample_indices(t + 1, max_frames)
        out.append(RewardQuery(frames[idx], TASK, episode_id=episode_id, frame_index=idx))
    return out


def assert_same(got, expected, atol=1e-5):
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_allclose(g.progress, e.progress, atol=atol, err_msg=f"query {i}")
        np.testing.assert_allclose(g.success, e.success, atol=atol, err_msg=f"query {i}")


@pytest.fixture
def worker(tiny_model):
    with RewardWorker(tiny_model, bind="tcp://127.0.0.1:0") as w:
        yield w


# ---------------------------------------------------------------- vision feature cache


def test_cached_vision_features_give_the_same_scores(tiny_model):
    frames = episode_frames(12, size=64, seed=3)
    queries = dense_queries(frames, "cache-ep")
    plain = tiny_model.score(queries)
    keys = [[("cache-ep", int(i)) for i in q.frame_index] for q in queries]
    before = tiny_model.feature_cache_stats()
    first = [tiny_model.score([q], feature_keys=[k])[0] for q, k in zip(queries, keys, strict=True)]  # fills
    again = tiny_model.score(queries, feature_keys=keys)  # every frame cached, one batch
    after = tiny_model.feature_cache_stats()
    assert_same(first, plain, atol=1e-6)
    assert_same(again, plain, atol=1e-6)
    assert after["misses"] - before["misses"] == len(frames)  # each frame through the vision tower once
    assert after["hits"] > before["hits"]
    tiny_model.forget_features([k for ks in keys for k in ks])
    assert tiny_model.feature_cache_stats()["frames"] == before["frames"]
    # keyed and unkeyed queries in one batch, uncached frames named by two queries: computed once
    misses = tiny_model.feature_cache_stats()["misses"]
    mixed = tiny_model.score([queries[0], queries[1], queries[2], queries[2]],
                             feature_keys=[keys[0], None, keys[2], keys[2]])
    assert_same(mixed, [plain[0], plain[1], plain[2], plain[2]], atol=1e-6)
    assert tiny_model.feature_cache_stats()["misses"] - misses == len(set(keys[0]) | set(keys[2]))
    tiny_model.forget_features([k for ks in keys for k in ks])


# ---------------------------------------------------------------- streaming through a worker


@pytest.mark.parametrize("enc", ["raw", "jpeg"])
def test_a_streamed_episode_uploads_each_frame_once_and_scores_like_full_frames(worker, tiny_model, enc):
    frames = episode_frames(16, seed=1)
    queries = dense_queries(frames, f"ep-{enc}")
    with RewardClient(worker.url, timeout_ms=TIMEOUT_MS, enc=enc) as streaming, \
            RewardClient(worker.url, timeout_ms=TIMEOUT_MS, enc=enc, stream=False) as full:
        got = [streaming.score([q])[0] for q in queries]
        expected = [full.score([q])[0] for q in queries]
        sent, resent = streaming.transfer_stats(), full.transfer_stats()
        stats = streaming.stats()
    assert_same(got, expected, atol=1e-6)
    assert sent["frames_uploaded"] == len(frames)  # every frame once, never again
    assert sent["bytes_sent"] < resent["bytes_sent"] / 3
    assert stats["frame_store"]["uploads"] >= len(frames)
    assert stats["vision_cache"]["hits"] > 0
    if enc == "raw":  # raw frames are exact: streamed equals the model on the original frames
        assert_same(got, tiny_model.score(queries))


def test_a_worker_restart_mid_episode_loses_no_query(tiny_model):
    frames = episode_frames(14, seed=2)
    queries = dense_queries(frames, "restart-ep")
    expected = tiny_model.score(queries)
    first = RewardWorker(tiny_model, bind="tcp://127.0.0.1:0").start()
    url = first.url
    with RewardClient(url, timeout_ms=1500, retries=40) as client:
        before = [client.score([q])[0] for q in queries[:6]]
        first.stop()  # its frame store is gone with it
        # sent while no worker listens: they wait out a timeout, then go to the new worker
        in_flight = [client.score_async([q]) for q in queries[6:10]]
        with RewardWorker(tiny_model, bind=url) as second:
            after = [f.result()[0] for f in in_flight] + [client.score([q])[0] for q in queries[10:]]
            store = client.stats()["frame_store"]
        transfer = client.transfer_stats()
    assert_same(before + after, expected)
    assert transfer["unknown_episode_resends"] >= 1  # the new worker asked for the frames again
    assert store["uploads"] >= 1 and store["missing_lookups"] >= 1
    assert second.url == url


def test_the_frame_store_never_exceeds_its_cap_under_64_clients(tiny_model):
    frame_bytes = 32 * 32 * 3
    cap_mb = 40 * frame_bytes / 2**20  # room for 40 frames; 64 clients x 6 frames want 384
    episodes = [episode_frames(6, size=32, seed=s) for s in range(64)]
    queries = [dense_queries(ep, f"client-{c}") for c, ep in enumerate(episodes)]
    got: list = [None] * 64
    errors: list = []
    with RewardWorker(tiny_model, bind="tcp://127.0.0.1:0", store_mb=cap_mb, max_batch=32) as worker:
        clients = [RewardClient(worker.url, timeout_ms=TIMEOUT_MS, retries=1) for _ in range(64)]
        start = threading.Barrier(64)

        def run(c):
            try:
                start.wait()
                got[c] = [clients[c].score([q])[0] for q in queries[c]]
            except BaseException as e:  # re-raised below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(c,)) for c in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        resends = sum(c.transfer_stats()["unknown_episode_resends"] for c in clients)
        for c in clients:
            c.close()
    assert not errors, errors[0]
    store = worker.frame_store.stats()
    assert store["max_bytes"] == int(cap_mb * 2**20)
    assert store["peak_bytes"] <= store["max_bytes"], store
    assert store["evicted_frames"] > 0 and resends > 0, (store, resends)
    flat_queries = [q for qs in queries for q in qs]
    assert_same([r for rs in got for r in rs], tiny_model.score(flat_queries))


def test_clients_sharing_an_episode_id_never_get_each_others_frames(worker, tiny_model):
    a, b = episode_frames(6, seed=10), episode_frames(6, seed=11)
    qa, qb = dense_queries(a, "env:1"), dense_queries(b, "env:1")  # two wrappers, same (default) id
    with RewardClient(worker.url, timeout_ms=TIMEOUT_MS) as client:
        got_a, got_b = [], []
        for x, y in zip(qa, qb, strict=True):
            got_a.append(client.score([x])[0])
            got_b.append(client.score([y])[0])
        both = client.score([qa[-1], qb[-1]])  # and both in one request
    assert_same(got_a, tiny_model.score(qa))
    assert_same(got_b, tiny_model.score(qb))
    assert_same(both, tiny_model.score([qa[-1], qb[-1]]))


# ---------------------------------------------------------------- wire level: v1 and bad v2


@pytest.fixture
def raw(worker):
    """Send a hand-made multipart message on a DEALER socket and return the decoded reply."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(worker.url)

    def send(parts):
        sock.send_multipart(parts)
        assert sock.poll(TIMEOUT_MS), f"worker at {worker.url} did not reply to {parts[:1]!r:.120}"
        (reply,) = sock.recv_multipart()
        return msgpack.unpackb(reply, strict_map_key=False)

    yield send
    sock.close(0)
    ctx.term()


def test_v1_messages_with_episode_ids_are_served_in_full_and_stored_nowhere(raw, worker, tiny_model):
    frames = episode_frames(4, seed=5)
    query = RewardQuery(frames, TASK, episode_id="old-client", frame_index=np.arange(4))
    parts = encode_request(9, "score", [query])  # what a v1 client sends
    assert msgpack.unpackb(parts[0])["v"] == 1
    reply = raw(parts)
    assert reply["v"] == 1 and reply["ok"] and reply["id"] == 9, reply
    np.testing.assert_allclose(reply["results"][0]["progress"], tiny_model.score([query])[0].progress, atol=1e-5)
    with RewardClient(worker.url, timeout_ms=TIMEOUT_MS, stream=False) as v1_style:
        assert_same(v1_style.score([query]), tiny_model.score([query]))
        assert v1_style.stats()["frame_store"]["uploads"] == 0


def streamed_header(items, v=2):
    return msgpack.packb({"v": v, "id": 4, "op": "score", "items": items})


def upload_spec(index, shape=(1, 32, 32, 3), bufs=(0,), enc="raw"):
    return {"index": list(index), "shape": list(shape), "dtype": "uint8", "enc": enc, "bufs": list(bufs)}


FRAME = bytes(32 * 32 * 3)
BAD_STREAMED = {
    "names frames never uploaded": (
        [streamed_header([{"task": TASK, "episode": "nope", "frame_index": [0, 1]}])],
        ErrorCode.UNKNOWN_EPISODE, "holds no frame 0, 1",
    ),
    "no episode": ([streamed_header([{"task": TASK, "frame_index": [0]}])], ErrorCode.BAD_REQUEST, "episode"),
    "negative index": (
        [streamed_header([{"task": TASK, "episode": "e", "frame_index": [-1]}])], ErrorCode.BAD_REQUEST, ">= 0",
    ),
    "upload index count": (
        [streamed_header([{"task": TASK, "episode": "e", "frame_index": [0], "upload": upload_spec([0, 1])}]), FRAME],
        ErrorCode.BAD_REQUEST, "upload.index",
    ),
    "upload buffer size": (
        [streamed_header([{"task": TASK, "episode": "e", "frame_index": [0], "upload": upload_spec([0])}]), FRAME[1:]],
        ErrorCode.BAD_REQUEST, "has 3071 bytes",
    ),
    "sizes differ in one query": (
        [streamed_header([{"task": TASK, "episode": "mixed", "frame_index": [0, 1],
                           "upload": upload_spec([0, 1], shape=(2, 32, 32, 3), bufs=(0, 1))},
                          {"task": TASK, "episode": "mixed", "frame_index": [0, 2],
                           "upload": upload_spec([2], shape=(1, 64, 32, 3), bufs=(2,))}]),
         FRAME, FRAME, bytes(64 * 32 * 3)],
        ErrorCode.BAD_REQUEST, "share one size",
    ),
    "streamed item in a v1 message": (
        [streamed_header([{"task": TASK, "episode": "e", "frame_index": [0]}], v=1)],
        ErrorCode.BAD_REQUEST, "frames must be a map",
    ),
}


@pytest.mark.parametrize("case", list(BAD_STREAMED))
def test_bad_streamed_requests_get_their_code_and_the_worker_keeps_serving(raw, worker, case):
    parts, code, says = BAD_STREAMED[case]
    reply = raw(parts)
    assert reply["ok"] is False and reply["error"]["code"] == code, reply
    assert says in reply["error"]["message"], reply
    with RewardClient(worker.url, timeout_ms=TIMEOUT_MS) as client:
        assert client.ping() >= 0.0


def test_a_streaming_client_falls_back_to_full_frames_on_a_v1_only_worker(tiny_model):
    """A ROUTER that speaks only v1 (as workers did before protocol v2) and scores with the tiny model."""
    from rlrm.transport.protocol import decode_request, encode_error, encode_reply, encode_results

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()
    versions = []

    def serve():
        while not stop.is_set():
            if not sock.poll(50):
                continue
            identity, *parts = sock.recv_multipart()
            header = msgpack.unpackb(parts[0])
            versions.append(header["v"])
            if header["v"] != 1:
                reply = encode_error(header["id"], ErrorCode.VERSION, f"protocol version {header['v']} not supported")
            else:
                req = decode_request(parts)
                reply = encode_reply(req.id, results=encode_results(tiny_model.score(req.queries)), timing={})
            sock.send_multipart([identity, *reply])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        queries = dense_queries(episode_frames(4, seed=7), "old-worker")
        with RewardClient(f"tcp://127.0.0.1:{port}", timeout_ms=TIMEOUT_MS) as client:
            got = [client.score([q])[0] for q in queries]
            assert client.stream is False
        assert_same(got, tiny_model.score(queries))
        assert versions[0] == 2 and set(versions[1:]) == {1}
    finally:
        stop.set()
        thread.join()
        sock.close(0)
        ctx.term()


# ---------------------------------------------------------------- the async wrapper's I/O thread


def test_async_rewards_over_a_client_are_built_on_its_io_thread_and_match_in_process(worker, tiny_model):
    """AsyncRobometerReward hands a RewardClient only a builder; labels equal those of an in-process scorer."""
    import gymnasium as gym

    import envs  # noqa: F401 - registers rlrm/FetchReach-v0
    from rlrm.rl.async_reward import AsyncRobometerReward
    from rlrm.transport import LocalScorer

    actions = np.random.default_rng(0).uniform(-1, 1, size=(12, 4)).astype(np.float32)

    class Client(RewardClient):
        """A RewardClient on which the env thread may not build requests itself."""

        def score_async(self, queries, timeout_ms=None):
            raise AssertionError("the async wrapper must use score_deferred with a RewardClient")

    def labels(scorer):
        env = AsyncRobometerReward(gym.make("rlrm/FetchReach-v0", image_size=48), None, scorer,
                                   terminate_on_success=False)
        tickets = []
        for ep in range(2):
            env.reset(seed=ep)
            for a in actions[ep * 6:(ep + 1) * 6]:
                tickets.append(env.step(a)[-1]["rlrm_ticket"])
        got = {}
        while len(got) < len(tickets):
            got.update({lab.ticket: lab for lab in env.labeler.wait(timeout_s=TIMEOUT_MS / 1000)})
        env.close()
        return [got[t] for t in tickets]

    with LocalScorer(tiny_model) as local:
        expected = labels(local)
    with Client(worker.url, timeout_ms=TIMEOUT_MS) as client:
        got = labels(client)
        uploaded = client.transfer_stats()["frames_uploaded"]
    np.testing.assert_allclose([g.reward for g in got], [e.reward for e in expected], atol=1e-5)
    np.testing.assert_allclose([g.progress for g in got], [e.progress for e in expected], atol=1e-5)
    assert uploaded == 2 * 7  # two episodes of a reset frame + 6 steps, each frame sent once


SMALL_INTS = st.integers(-2, 70)
MSGPACK_INTS = st.integers(-(2**63), 2**64 - 1)  # what msgpack can carry at all
V2_FRAMES = st.fixed_dictionaries(
    {},
    optional={
        "index": st.one_of(st.lists(SMALL_INTS, max_size=3), MSGPACK_INTS, st.text(max_size=3)),
        "shape": st.one_of(st.lists(SMALL_INTS, min_size=0, max_size=5), st.none()),
        "dtype": st.sampled_from(["uint8", "float32", ""]),
        "enc": st.sampled_from(["raw", "jpeg", "png"]),
        "bufs": st.one_of(st.lists(st.integers(-1, 3), max_size=3), st.none()),
    },
)
V2_ITEMS = st.fixed_dictionaries(
    {},
    optional={
        "task": st.one_of(st.just(TASK), st.text(max_size=4), st.none()),
        "episode": st.one_of(st.sampled_from(["fz", "fz2", ""]), MSGPACK_INTS, st.none()),
        "frame_index": st.one_of(st.lists(SMALL_INTS, max_size=4), MSGPACK_INTS, st.none()),
        "upload": st.one_of(V2_FRAMES, st.none(), MSGPACK_INTS),
    },
)
V2_BUFFERS = st.lists(st.sampled_from([FRAME, FRAME[:-1], bytes(2 * 32 * 32 * 3), b"\xff\xd8\xff", b""]), max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(V2_ITEMS, min_size=1, max_size=3), buffers=V2_BUFFERS)
def test_fuzzed_streamed_requests_get_a_well_formed_reply(raw, worker, items, buffers):
    reply = raw([streamed_header(items), *buffers])
    assert reply.get("v") == 2 and isinstance(reply.get("ok"), bool), reply
    if not reply["ok"]:
        assert reply["error"]["code"] in ErrorCode.ALL and reply["error"]["code"] != ErrorCode.INTERNAL, reply
    assert worker.frame_store.peak_bytes <= worker.frame_store.max_bytes


def test_a_request_that_cannot_be_built_fails_alone(worker, tiny_model, monkeypatch):
    """A deferred builder that raises, or a streamed message that cannot be encoded, fails its own Future only."""
    import rlrm.transport.client as client_module

    queries = dense_queries(episode_frames(4, seed=12), "build-ep")
    with RewardClient(worker.url, timeout_ms=TIMEOUT_MS) as client:
        def broken():
            raise RuntimeError("no frames today")

        with pytest.raises(RuntimeError, match="no frames today"):
            client.score_deferred(broken).result()
        real = client_module.encode_request

        def refuse_streamed(*args, streamed=None, **kwargs):
            if streamed is not None:
                raise ValueError("cannot encode this one")
            return real(*args, streamed=streamed, **kwargs)

        monkeypatch.setattr(client_module, "encode_request", refuse_streamed)
        with pytest.raises(ValueError, match="cannot encode this one"):
            client.score([queries[0]])
        monkeypatch.setattr(client_module, "encode_request", real)
        assert_same(client.score_deferred(lambda: [queries[1]]).result(), tiny_model.score([queries[1]]))
