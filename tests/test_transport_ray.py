"""RayRewardPool on a local Ray cluster: the scorer interface over several real tiny-model actors."""

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="RayRewardPool needs the 'ray' extra")

from rlrm.transport import make_scorer  # noqa: E402
from rlrm.transport.ray import RayRewardPool  # noqa: E402
from rlrm.types import RewardQuery  # noqa: E402

pytestmark = pytest.mark.slow  # starts a Ray runtime and two model actors


@pytest.fixture(scope="module")
def pool():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    p = RayRewardPool("tiny", num_actors=2, num_cpus=1, seed=0, device="cpu")
    yield p
    p.close()
    ray.shutdown()


def queries(n):
    rng = np.random.default_rng(7)
    return [RewardQuery(rng.integers(0, 255, (1 + i % 3, 32, 32, 3), dtype=np.uint8), f"task {i}") for i in range(n)]


def test_pool_results_equal_in_process_results_in_order(pool, tiny_model):
    qs = queries(5)  # split 3 + 2 over the two actors, reassembled in order
    got = pool.score(qs)
    expected = tiny_model.score(qs)
    assert [len(r) for r in got] == [q.num_frames for q in qs]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g.progress, e.progress, atol=1e-5)
        np.testing.assert_allclose(g.success, e.success, atol=1e-5)


def test_pool_is_a_scorer(pool, tiny_model):
    assert make_scorer(pool) is pool
    futures = [pool.score_async([q]) for q in queries(4)]
    results = [f.result()[0] for f in futures]
    np.testing.assert_allclose(results[3].progress, tiny_model.score(queries(4)[3:])[0].progress, atol=1e-5)
    info = pool.info()
    assert info.name == "tiny" and info.extra["ray_actors"] == 2
    assert pool.score([]) == []
    with pytest.raises(TypeError, match="list of RewardQuery"):
        pool.score(queries(1)[0])


def test_closed_pool_refuses_work():
    p = RayRewardPool("tiny", num_actors=1, num_cpus=0, seed=0, device="cpu")
    p.close()
    with pytest.raises(RuntimeError, match="closed"):
        p.score(queries(1))


def test_run_rl_transport_ray_scores_like_the_model(pool, tiny_model):
    """`python run_rl.py transport=ray` builds its scorer through open_reward_source; same numbers."""
    from rlrm.rl.reward_source import open_reward_source

    transport = {"name": "ray", "num_actors": 1, "num_cpus": 0, "model_kwargs": {"seed": 0, "device": "cpu"}}
    with open_reward_source({"kind": "robometer", "model": "tiny"}, transport) as scorer:
        assert isinstance(scorer, RayRewardPool) and scorer.num_actors == 1
        qs = queries(2)
        for g, e in zip(scorer.score(qs), tiny_model.score(qs), strict=True):
            np.testing.assert_allclose(g.progress, e.progress, atol=1e-5)
