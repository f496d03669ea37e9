"""Fetch adapter: registration, env checker, upright non-blank frames, success, Hydra config."""

from __future__ import annotations

import pathlib

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the ids)
from envs.rendering import FrameRenderer

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs" / "env"


def _upright(frame: np.ndarray) -> bool:
    """The floor/table (bright, low in the image) is in the lower half, the background above."""
    h = frame.shape[0]
    gray = frame.mean(axis=2)
    return gray[h // 2 :].mean() > gray[: h // 4].mean()


@pytest.mark.parametrize("env_id", ["rlrm/FetchReach-v0", "rlrm/FetchPush-v0"])
def test_fetch_passes_env_checker(env_id):
    env = gym.make(env_id, image_size=64)
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


def test_fetch_reach_obs_task_and_info():
    env = gym.make("rlrm/FetchReach-v0", reward_type="dense", image_size=64)
    obs, info = env.reset(seed=3)
    assert set(obs) == {"observation", "achieved_goal", "desired_goal"}
    assert env.unwrapped.task == info["task"] == "move the gripper to the red target"
    assert isinstance(info["is_success"], bool)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    # dense reward is the negative gripper-goal distance, as Fetch defines it
    assert reward == pytest.approx(-np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"]), abs=1e-6)
    assert isinstance(info["is_success"], bool) and info["task"] == env.unwrapped.task
    assert env.spec.max_episode_steps == 50
    env.close()


def test_fetch_task_text_override_and_bad_input():
    env = gym.make("rlrm/FetchReach-v0", task_text="touch the red ball", image_size=32)
    assert env.unwrapped.task == "touch the red ball"
    env.close()
    with pytest.raises(ValueError, match="reward_type must be 'sparse' or 'dense', got 'shaped'"):
        gym.make("rlrm/FetchReach-v0", reward_type="shaped")
    with pytest.raises(ValueError, match="FetchReach"):
        from envs.fetch import FetchEnv

        FetchEnv(task_name="FetchReech")
    with pytest.raises(ValueError, match="available cameras"):
        gym.make("rlrm/FetchReach-v0", camera="no_such_camera")


@pytest.mark.parametrize("fast", [True, False])
def test_fetch_render_upright_and_shows_target(fast):
    env = gym.make("rlrm/FetchReach-v0", image_size=96, fast_render=fast)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (96, 96, 3) and frame.dtype == np.uint8
    assert frame.std() > 10, "frame is blank"
    assert _upright(frame)
    # The red target marker is drawn: pure-red pixels exist with the marker, and vanish without it.
    red = (frame[..., 0] > 150) & (frame[..., 1] < 60) & (frame[..., 2] < 60)
    assert red.sum() >= 2
    model = env.unwrapped.model
    model.site_rgba[:, 3] = 0.0  # hide every site (the target is the only visible one)
    hidden = env.render()
    red_hidden = (hidden[..., 0] > 150) & (hidden[..., 1] < 60) & (hidden[..., 2] < 60)
    assert red_hidden.sum() < red.sum()
    env.close()


def test_frame_renderer_flip_is_a_180_degree_rotation():
    env = gym.make("rlrm/FetchReach-v0", image_size=48)
    env.reset(seed=0)
    fetch = env.unwrapped
    view = env.unwrapped._renderer._camera
    straight = FrameRenderer(fetch.model, fetch.data, 48, view, fast=True, flip=False)
    flipped = FrameRenderer(fetch.model, fetch.data, 48, view, fast=True, flip=True)
    a, b = straight.render(), flipped.render()
    np.testing.assert_array_equal(b, a[::-1, ::-1])
    straight.close(), flipped.close(), env.close()


def test_fetch_reports_success_when_gripper_reaches_goal():
    env = gym.make("rlrm/FetchReach-v0", image_size=32)
    obs, info = env.reset(seed=5)
    success_steps = []
    for _ in range(50):
        delta = obs["desired_goal"] - obs["achieved_goal"]
        action = np.clip(np.append(delta * 10.0, 0.0), -1, 1).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        dist = np.linalg.norm(obs["desired_goal"] - obs["achieved_goal"])
        assert info["is_success"] == bool(dist < 0.05)
        assert (reward == 0.0) == info["is_success"]  # sparse: 0 on success, -1 otherwise
        success_steps.append(info["is_success"])
        if truncated:
            break
    assert success_steps[-1], "a proportional controller reaches the target within 50 steps"
    env.close()


def test_fetch_reset_seed_is_reproducible():
    env = gym.make("rlrm/FetchReach-v0", image_size=32)
    a, _ = env.reset(seed=11)
    b, _ = env.reset(seed=11)
    np.testing.assert_array_equal(a["desired_goal"], b["desired_goal"])
    c, _ = env.reset(seed=12)
    assert not np.allclose(a["desired_goal"], c["desired_goal"])
    env.close()


def test_fetch_reach_config_builds_the_env():
    cfg = yaml.safe_load((CONFIGS / "fetch_reach.yaml").read_text())
    assert cfg.pop("defaults") == ["base_env", "_self_"]
    assert set(cfg) == {"id", "kwargs", "reward_camera", "max_episode_steps", "base_policy"}
    env = gym.make(cfg["id"], max_episode_steps=cfg["max_episode_steps"], **cfg["kwargs"])
    assert env.unwrapped.task == "move the gripper to the red target"
    assert env.unwrapped.goal_marker == "success_ball" and cfg["reward_camera"] == ["front", "side"]
    obs, _ = env.reset(seed=0)
    size = cfg["kwargs"]["image_size"]
    assert env.render().shape == (size, size, 3)
    from rlrm.wrappers.frames import FrameSource

    assert FrameSource(env, cfg["reward_camera"]).read(obs).shape == (size, 2 * size, 3)
    env.close()
