"""MetaWorld adapter: env checker, upright corner-camera frames, success from MetaWorld, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("metaworld", reason="MetaWorld adapter tests need pip install 'rlrm[metaworld]'")

import envs  # noqa: E402,F401  (registers the ids)
from envs.rendering import FrameRenderer  # noqa: E402


@pytest.fixture(scope="module")
def reach_env():
    env = gym.make("rlrm/MetaWorld-v0", task_name="reach-v3", image_size=64, task_index=3)
    yield env
    env.close()


def test_metaworld_passes_env_checker(reach_env):
    check_env(reach_env.unwrapped)


def test_metaworld_task_text_and_info(reach_env):
    obs, info = reach_env.reset(seed=0)
    assert obs.shape == (39,) and obs in reach_env.observation_space
    goal = obs[36:39].copy()
    assert np.abs(goal).sum() > 0, "MT1 observes the goal position (last 3 entries)"
    assert reach_env.unwrapped.task == info["task"] == "reach the goal position with the gripper"
    assert info["is_success"] is False
    obs, reward, terminated, truncated, info = reach_env.step(reach_env.action_space.sample())
    assert isinstance(info["is_success"], bool) and info["is_success"] == (info["success"] > 0.5)
    assert obs in reach_env.observation_space
    np.testing.assert_allclose(obs[36:39], goal)
    assert reach_env.spec.max_episode_steps == 500


def test_metaworld_corner_camera_is_rotated_upright(reach_env):
    reach_env.reset(seed=0)
    frame = reach_env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and frame.std() > 10
    mw = reach_env.unwrapped
    raw = FrameRenderer(mw.model, mw.data, 64, "corner", fast=True, flip=False).render()
    np.testing.assert_array_equal(frame, raw[::-1, ::-1])
    # Upright: the lit table and floor fill the lower half; the empty sky (black without a
    # skybox) is at the top. The raw corner frame has them the other way round.
    gray = frame.mean(axis=2)
    assert gray[32:].mean() > gray[:16].mean()
    assert raw.mean(axis=2)[:32].mean() > raw.mean(axis=2)[48:].mean()


def test_metaworld_reports_success_with_scripted_policy(reach_env):
    from metaworld.policies import SawyerReachV3Policy

    obs, _ = reach_env.reset(seed=0)
    policy = SawyerReachV3Policy()
    successes = []
    for _ in range(150):
        obs, reward, terminated, truncated, info = reach_env.step(policy.get_action(obs))
        successes.append(info["is_success"])
        if info["is_success"]:
            break
    assert successes[-1] and not successes[0], "the scripted reach policy succeeds, not at the first step"


def test_metaworld_bad_input():
    with pytest.raises(ValueError, match=r"unknown MetaWorld task 'reach-v2'.*'reach-v3'"):
        gym.make("rlrm/MetaWorld-v0", task_name="reach-v2")
