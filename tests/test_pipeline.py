"""One reward pipeline: the synchronous and the asynchronous wrapper give the same rewards, terminations
and info["rlrm"] over the same scripted episodes (the async one completed when its answers arrive)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from rlrm.shaping import Shaping, SuccessDetector
from rlrm.transport import LocalScorer
from rlrm.transport.worker_cli import SlowModel
from rlrm.wrappers import AsyncRobometerReward, RobometerReward

TASK = "move the gripper to the red target"


def _fetch():
    return gym.make("rlrm/FetchReach-v0", image_size=32, max_episode_steps=7)


def _run_sync(env, actions, episodes):
    steps = []
    for ep in range(episodes):
        env.reset(seed=ep)
        for a in actions[ep]:
            _, reward, terminated, truncated, info = env.step(a)
            steps.append((reward, terminated, info["rlrm"]))
            if terminated or truncated:
                break
    return steps


def _run_async(env, actions, episodes):
    """Each step's label is awaited before the next action, so a detected success ends the episode where the
    synchronous wrapper ends it."""
    steps = []
    for ep in range(episodes):
        env.reset(seed=ep)
        for a in actions[ep]:
            _, placeholder, terminated, truncated, info = env.step(a)
            assert placeholder == 0.0 and "rlrm" not in info
            labels = []
            while not labels:
                labels = env.labeler.wait(timeout_s=60)
            (label,) = labels
            assert label.ticket == info["rlrm_ticket"]
            steps.append((label.reward, terminated or label.terminated, label.info))
            if terminated or truncated or label.terminated:
                break
    return steps


@pytest.mark.parametrize(("every", "terminate"), [(1, True), (2, True), (1, False)])
def test_sync_and_async_give_the_same_rewards_terminations_and_info(tiny_model, every, terminate):
    rng = np.random.default_rng(0)
    episodes = 3
    actions = rng.uniform(-1, 1, size=(episodes, 7, 4)).astype(np.float32)
    kwargs = dict(every=every, shaping=Shaping(progress="delta", success_bonus=1.0, step_cost=0.01, gamma=0.9),
                  success=SuccessDetector(threshold=0.3, window=2, min_votes=2), terminate_on_success=terminate)
    sync_env = RobometerReward(_fetch(), TASK, LocalScorer(tiny_model), **kwargs)
    sync = _run_sync(sync_env, actions, episodes)
    slow = LocalScorer(SlowModel(tiny_model, delay_ms=5))  # answers really arrive after the step returned
    async_env = AsyncRobometerReward(_fetch(), TASK, slow, **kwargs)
    asyn = _run_async(async_env, actions, episodes)

    assert len(asyn) == len(sync)
    np.testing.assert_allclose([s[0] for s in asyn], [s[0] for s in sync], atol=1e-5)
    assert [s[1] for s in asyn] == [s[1] for s in sync]
    assert any(s[1] for s in sync) == terminate  # the detector fired: termination was exercised
    for (_, _, a), (_, _, b) in zip(asyn, sync):
        assert a.keys() == b.keys()
        for key in ("success", "queried", "frames_sent", "frame_index", "stale", "step", "env_reward"):
            assert a[key] == b[key], key
        for key in ("progress", "success_prob", "reset_progress"):
            assert (math.isnan(a[key]) and math.isnan(b[key])) or a[key] == pytest.approx(b[key], abs=1e-5), key
        assert a["reward_terms"] == pytest.approx(b["reward_terms"], abs=1e-5)
        assert a["detector"] == b["detector"] or a["detector"]["votes"] == b["detector"]["votes"]
    sync_env.close()
    async_env.close()
    slow.close()


def test_success_none_means_no_detection_in_both_wrappers(tiny_model):
    sync_env = RobometerReward(_fetch(), TASK, tiny_model, success=None, terminate_on_success=True)
    async_env = AsyncRobometerReward(_fetch(), TASK, tiny_model, success=None, terminate_on_success=True)
    sync_env.reset(seed=0)
    async_env.reset(seed=0)
    _, _, terminated, _, info = sync_env.step(np.zeros(4, np.float32))
    async_env.step(np.zeros(4, np.float32))
    (label,) = async_env.labeler.wait(timeout_s=60)
    for published in (info["rlrm"], label.info):
        assert published["detector"] is None and published["success"] is False
    assert not terminated and not label.terminated
    assert not sync_env.terminate_on_success and not async_env.pipeline.terminate_on_success
    sync_env.close()
    async_env.close()
