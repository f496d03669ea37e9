"""Runner, learner and shared reward of distributed runs, in this process (no Ray): what a batch holds,
weights and observation statistics, the update-to-data ratio, asynchronous labels held back, env exceptions."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import threading
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlrm.distributed.learner import Learner, SpacesOnlyEnv, lag_percentile
from rlrm.distributed.messages import RANDOM_VERSION
from rlrm.distributed.runner import EnvRunner
from rlrm.distributed.shared_reward import RewardEndpoint, SharedRewardActor
from rlrm.types import RewardQuery, RewardResult

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
SMALL = ["reward=env_dense", "env.max_episode_steps=10", "algo.net_arch=[16,16]", "algo.batch_size=8",
         "algo.buffer_size=1000", "algo.learning_starts=20", "distributed.runners=1", "total_steps=200"]


def compose_run(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


@pytest.fixture(scope="module")
def cfg():
    return compose_run(*SMALL)


@pytest.fixture
def runner(cfg):
    r = EnvRunner(cfg, 0, RewardEndpoint("none"))
    yield r
    r.close()


def test_a_batch_holds_n_transitions_with_terminal_observations_and_episodes_cut_anywhere(runner, tmp_path, cfg):
    learner = Learner(cfg, tmp_path, *runner.spaces(), sync_every=5)
    weights = learner.weights()
    meta, batch = runner.collect(7, weights.version, [weights], random_actions=True)
    meta2, batch2 = runner.collect(7, weights.version, [weights])
    assert meta == {"runner": 0, "pid": os.getpid(), "env_steps": 7, "shipped": 7, "pending": 0, "version": 0,
                    "error": None, "lost_steps": 0}
    assert batch.size == batch2.size == 7 and set(batch.obs) == {"observation", "achieved_goal", "desired_goal"}
    assert (batch.versions == RANDOM_VERSION).all() and (batch2.versions == 0).all()
    assert batch.actions.dtype == np.float32 and np.abs(batch.actions).max() <= 1.0
    # the 10-step episode ends in the second batch; its last next_obs is the terminal observation, not a reset
    assert batch2.truncated.tolist() == [False, False, True, False, False, False, False]
    assert len(batch2.episodes) == 1 and batch2.episodes[0].length == 10
    assert batch2.episodes[0].intervention_rate is None  # FetchReach has no takeovers
    np.testing.assert_allclose(batch2.episodes[0].ret, np.concatenate([batch.rewards, batch2.rewards[:3]]).sum(),
                               rtol=1e-5)
    np.testing.assert_array_equal(batch2.next_obs["desired_goal"][2], batch2.obs["desired_goal"][2])
    assert not np.allclose(batch2.obs["desired_goal"][3], batch2.obs["desired_goal"][2])  # new goal after reset
    np.testing.assert_array_equal(batch2.obs["observation"][1:3], batch2.next_obs["observation"][0:2])


def test_learner_keeps_the_update_to_data_ratio_publishes_every_sync_every_and_measures_lag(runner, tmp_path, cfg):
    learner = Learner(cfg, tmp_path, *runner.spaces(), sync_every=7)
    w0 = learner.weights()
    stats, published = learner.ingest(runner.collect(20, 0, [w0], random_actions=True)[1])
    assert stats["updates"] == 0 and published is None  # learning_starts=20
    stats, published = learner.ingest(runner.collect(15, 0, [w0])[1])
    assert stats["env_steps"] == 35 and stats["updates"] == 15 and stats["version"] == 2  # 15 // 7
    assert published is not None and published.version == 2 and published.env_steps == 35
    assert stats["policy_lag_p50"] == 0.0  # all 15 acted with version 0 and were ingested at version 0
    runner.load_weights(published.version, [published])
    assert runner.versions_loaded == [0, 2]
    for name, value in published.actor_state.items():
        np.testing.assert_array_equal(runner.policy.actor.state_dict()[name].numpy(), value.numpy())
    stats, _ = learner.ingest(runner.collect(5, published.version, [published])[1])  # acted with v2, ingested at v2
    assert stats["updates"] == 20 and stats["policy_lag_p50"] == 0.0
    assert lag_percentile({0: 1, 3: 3}, 50) == 3.0 and lag_percentile({}, 50) is None
    final = learner.finish()
    assert final["env_steps"] == 40
    assert (tmp_path / "checkpoints").is_dir() and (tmp_path / "tb" / "progress.csv").exists()


def test_runners_normalise_observations_with_the_learners_published_statistics(runner, tmp_path, cfg):
    learner = Learner(cfg, tmp_path, *runner.spaces(), sync_every=1)
    w0 = learner.weights()
    batch = runner.collect(30, 0, [w0], random_actions=True)[1]
    learner.ingest(batch)
    published = learner.weights()
    runner.load_weights(None, [published])
    obs = {k: v[0] for k, v in batch.obs.items()}
    expected = learner.obs_stats.normalize_obs(obs)
    got = runner.obs_norm.normalize_obs(obs)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6)
    assert learner.obs_stats.obs_rms["observation"].count > 30  # updated with every received observation


def test_learner_refuses_an_unlabelled_batch(runner, tmp_path, cfg):
    learner = Learner(cfg, tmp_path, *runner.spaces())
    batch = runner.collect(3, 0, [learner.weights()], random_actions=True)[1]
    batch.rewards[1] = np.nan
    with pytest.raises(ValueError, match="non-finite rewards"):
        learner.ingest(batch)


def test_an_env_exception_ends_the_batch_with_the_ready_transitions_and_the_error(cfg):
    class Breaks(gym.Wrapper):
        def __init__(self, env, at):
            super().__init__(env)
            self.at, self.steps = at, 0

        def step(self, action):
            self.steps += 1
            if self.steps == self.at:
                raise RuntimeError("gripper driver fault")
            return self.env.step(action)

    runner = EnvRunner(cfg, 0, RewardEndpoint("none"))
    runner.env = Breaks(runner.env, at=4)
    meta, batch = runner.collect(10, 0, [], random_actions=True)
    assert meta["error"] == "RuntimeError: gripper driver fault"
    assert meta["env_steps"] == 3 and meta["shipped"] == 3 and batch.size == 3 and meta["lost_steps"] == 1
    assert runner.env_closed
    runner.close()


class SlowScorer:
    """A scorer whose answers the test releases by hand (rewards arrive after the env stepped on)."""

    def __init__(self):
        self.futures: list[tuple[cf.Future, int]] = []
        self.answered = 0

    def score_async(self, queries):
        f = cf.Future()
        self.futures.append((f, queries[0].num_frames))
        return f

    def release(self):
        for f, n in self.futures:
            if not f.done():
                self.answered += 1  # progress rises by 0.05 per answer: every delta reward is non-zero
                last = 0.05 * self.answered
                f.set_result([RewardResult(np.linspace(0.0, last, n, dtype=np.float32), np.zeros(n, np.float32))])

    def info(self):
        raise NotImplementedError

    def close(self):
        pass


def test_asynchronous_rewards_are_held_back_until_labelled(tmp_path):
    cfg = compose_run(*[o for o in SMALL if not o.startswith("reward=")], "reward.mode=async", "reward.model=tiny",
                      "env.kwargs.image_size=64", "reward.max_frames=2")
    scorer = SlowScorer()
    endpoint = RewardEndpoint("none")
    endpoint.connect = lambda: scorer  # the runner's reward wrapper scores on the slow scorer
    runner = EnvRunner(cfg, 0, endpoint)
    meta, batch = runner.collect(6, 0, [], random_actions=True)
    assert meta["env_steps"] == 6 and meta["shipped"] == 0 and meta["pending"] == 6 and batch is None
    scorer.release()
    meta, batch = runner.collect(2, 0, [], random_actions=True)
    assert meta["shipped"] == 6 and meta["pending"] == 2  # labelled ones go; the two new steps wait
    assert np.all(batch.rewards != 0.0)  # real labels, not the placeholder
    scorer.release()
    meta, batch = runner.collect(0, 0, [], flush=True)
    assert meta["shipped"] == 2 and meta["pending"] == 0
    stats = dict(batch.scalars)
    assert stats["reward/latency_ms"][1] == 2
    runner.close()


def test_the_shared_reward_actor_batches_concurrent_runners_queries(tiny_model):
    """Through the worker's batcher: queries arriving while the scorer is busy go together in the next batch."""
    actor = SharedRewardActor({"kind": "robometer", "model": "tiny", "source": None},
                              {"name": "local", "model_kwargs": {}})
    rng = np.random.default_rng(0)
    first = [RewardQuery(rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8), "open the drawer")]
    queries = [[RewardQuery(rng.integers(0, 255, (2 + i, 32, 32, 3), dtype=np.uint8), "open the drawer")]
               for i in range(4)]
    scorer, gate = actor.batcher.model, threading.Event()

    class Busy:  # the scorer holds the first batch until the four runners' queries wait
        def score(self, qs):
            gate.wait(60)
            return scorer.score(qs)

    actor.batcher.model = Busy()

    async def four_runners_while_busy():
        busy = asyncio.ensure_future(actor.score(first))
        await asyncio.sleep(0)  # the first request is queued...
        while actor.batcher.stats()["queued_items"]:
            await asyncio.sleep(0.01)  # ...and taken by the batcher thread, which now waits at the gate
        rest = [asyncio.ensure_future(actor.score(q)) for q in queries]
        await asyncio.sleep(0.05)
        gate.set()
        return await busy, await asyncio.gather(*rest)

    _, results = asyncio.run(four_runners_while_busy())
    expected = tiny_model.score([q[0] for q in queries])
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got[0].progress, want.progress, atol=1e-5)
    stats = asyncio.run(actor.stats())
    assert stats["items"] == 5 and stats["batch_sizes"] == {"1": 1, "4": 1}  # the four waiting ones: one batch
    assert asyncio.run(actor.info())["name"] == "tiny"
    asyncio.run(actor.close())


def test_spaces_only_env_refuses_to_step():
    env = SpacesOnlyEnv(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (1,)))
    with pytest.raises(RuntimeError, match="env steps happen on the runners"):
        env.reset()
