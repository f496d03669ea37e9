"""Reward-model versions: atomic publication, and a hot swap in a real worker under load.

A real ``rlrm worker`` subprocess (ZeroMQ on 127.0.0.1, the tiny Qwen3-VL Robometer, every batch slowed so
requests queue) watches a versions folder while several client threads score: publishing version 1
loses and fails no request, later replies carry version 1 and equal the new weights' scores; a version
that does not load (a trainer that crashed while writing) leaves the old version serving.
"""

import threading
import time

import numpy as np
import pytest

from rlrm.transport import LocalScorer, RewardClient, spawn_worker
from rlrm.transport.versions import (
    VersionWatcher,
    latest_version,
    publish_version,
    published_versions,
    version_dir,
)
from rlrm.types import RewardQuery

SCORE_TIMEOUT_MS = 120000


def frames(seed: int, t: int = 3) -> np.ndarray:
    """Small distinct frames per seed."""
    return np.random.default_rng(seed).integers(0, 255, (t, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_v1():
    """Version 1's weights: the tiny model with another seed (scores differ from seed 0's)."""
    from rlrm.models import make_reward_model

    return make_reward_model("tiny", seed=1)


def test_publish_is_atomic_and_numbered(tmp_path):
    assert latest_version(tmp_path) == 0
    publish_version(tmp_path, 1, lambda d: (d / "w.bin").write_bytes(b"1"))
    with pytest.raises(RuntimeError, match="disk full"):  # a save that fails leaves no version behind
        publish_version(tmp_path, 2, lambda d: (_ for _ in ()).throw(RuntimeError("disk full")))
    (tmp_path / ".tmp-v000003-crashed").mkdir()  # what a trainer killed mid-write leaves: ignored
    (tmp_path / "v000004").mkdir()  # no VERSION file: not complete, ignored
    assert published_versions(tmp_path) == [1]
    with pytest.raises(FileExistsError, match="version 1 already exists"):
        publish_version(tmp_path, 1, lambda d: None)
    with pytest.raises(ValueError, match="version must be an int >= 1"):
        publish_version(tmp_path, 0, lambda d: None)


def test_watcher_hands_over_the_newest_and_survives_a_failing_load(tmp_path):
    seen = []

    def load(version, folder):
        if version == 2:
            raise OSError("truncated weights")
        seen.append((version, folder.name))

    watcher = VersionWatcher(tmp_path, load)
    publish_version(tmp_path, 1, lambda d: None)
    assert watcher.check() == 1 and watcher.check() is None
    publish_version(tmp_path, 2, lambda d: None)
    assert watcher.check() is None and watcher.failed == [2]  # logged, not retried, not raised
    publish_version(tmp_path, 3, lambda d: None)
    assert watcher.check() == 3
    assert seen == [(1, "v000001"), (3, "v000003")]


def test_local_scorer_swaps_between_calls(tiny_model, tiny_v1):
    q = [RewardQuery(frames(0), "reach the target")]
    scorer = LocalScorer(tiny_model)
    r0 = scorer.score(q)[0]
    scorer.swap(tiny_v1, 1)
    r1 = scorer.score(q)[0]
    assert (r0.version, r1.version) == (0, 1)
    assert not np.allclose(r0.progress, r1.progress)
    np.testing.assert_allclose(r1.progress, tiny_v1.score(q)[0].progress, atol=1e-6)
    with pytest.raises(ValueError, match="newer than the served version 1"):
        scorer.swap(tiny_model, 1)
    scorer.close()


def test_hot_swap_under_load_loses_and_fails_nothing(tmp_path, tiny_v1):
    versions = tmp_path / "versions"
    versions.mkdir()
    n_threads, per_thread = 4, 8
    outcomes: dict[int, list] = {i: [] for i in range(n_threads)}
    errors: list[BaseException] = []
    published = threading.Event()
    with spawn_worker("tiny", seed=0, device="cpu", threads=1, max_batch=4, slow_ms=40, watch=str(versions)) as w:

        def client_loop(i: int) -> None:
            try:
                with RewardClient(w.url, timeout_ms=SCORE_TIMEOUT_MS, retries=0) as client:
                    for k in range(per_thread):
                        if k == per_thread // 2:
                            published.wait(60)  # the second half runs after the publication
                        q = [RewardQuery(frames(i), "reach the target")]
                        outcomes[i].append((k, client.score(q)[0]))
            except BaseException as e:  # noqa: BLE001 - re-raised below, on the test thread
                errors.append(e)

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # requests are queued and running when the version lands
        publish_version(versions, 1, lambda d: tiny_v1.save_pretrained(d, layout="upstream"))
        with RewardClient(w.url, timeout_ms=SCORE_TIMEOUT_MS) as probe:
            deadline = time.monotonic() + 120
            while probe.model_version() != 1:
                assert time.monotonic() < deadline, f"worker never swapped in version 1:\n{w.stderr_tail()}"
                time.sleep(0.2)
            published.set()
            for t in threads:
                t.join(300)
            stats = probe.stats()
    assert not errors, errors
    assert all(len(o) == per_thread for o in outcomes.values())  # nothing lost
    assert stats["errors"]["internal"] == 0 and stats["errors"]["busy"] == 0 and stats["swaps"] == 1
    for i, results in outcomes.items():
        seen = [r.version for _, r in results]
        assert seen == sorted(seen), f"thread {i} went back to an older version: {seen}"
        assert seen[-1] == 1  # sent after the swap
        q = [RewardQuery(frames(i), "reach the target")]
        new = [r for _, r in results if r.version == 1]
        np.testing.assert_allclose(new[-1].progress, tiny_v1.score(q)[0].progress, atol=1e-5)


def test_broken_version_keeps_the_old_one_serving(tmp_path, tiny_v1):
    versions = tmp_path / "versions"
    with spawn_worker("tiny", seed=0, device="cpu", threads=1, watch=str(versions)) as w, \
            RewardClient(w.url, timeout_ms=SCORE_TIMEOUT_MS) as client:
        q = [RewardQuery(frames(5), "reach the target")]
        before = client.score(q)[0]
        # a trainer that died half-way: the folder is complete by name but its weights do not load
        publish_version(versions, 1, lambda d: (d / "config.json").write_text("{not json"))
        time.sleep(2.0)  # the watcher polls every 0.5 s
        after = client.score(q)[0]
        assert after.version == 0 and client.model_version() == 0
        np.testing.assert_allclose(after.progress, before.progress, atol=1e-6)
        assert "did not load" in w.stderr_tail(200)
        publish_version(versions, 2, lambda d: tiny_v1.save_pretrained(d, layout="upstream"))
        deadline = time.monotonic() + 120
        while client.model_version() != 2:
            assert time.monotonic() < deadline, w.stderr_tail()
            time.sleep(0.2)
        assert client.score(q)[0].version == 2
    assert version_dir(versions, 2).is_dir()
