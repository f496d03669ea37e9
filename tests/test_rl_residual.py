"""Residual policies: base-policy adapters, the residual action wrapper, zero-initialised residual = base policy."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import SAC

import envs  # noqa: F401
from rlrm.rl.algorithms import make_algorithm
from rlrm.rl.residual import (
    BASE_ACTION_KEY,
    GoalReachingController,
    LeRobotPolicy,
    ResidualAction,
    SB3Policy,
    ScriptedPolicy,
    make_base_policy,
)

RESIDUAL_CFG = {"name": "residual_sac", "policy": "auto", "net_arch": [32, 32], "learning_starts": 10,
                "batch_size": 8, "buffer_size": 200, "residual_scale": 0.5,
                "base_policy": {"kind": "goal_reaching", "gain": 3.0}}


def _fetch():
    return gym.make("rlrm/FetchReach-v0", image_size=64, max_episode_steps=10)


def test_zero_initialised_residual_reproduces_the_base_policy_actions():
    base = GoalReachingController(action_dim=4, gain=3.0)
    env = ResidualAction(_fetch(), base, scale=0.5)
    model = make_algorithm(RESIDUAL_CFG, env, seed=0)
    obs, _ = env.reset(seed=3)
    moved = False
    for _ in range(10):
        residual, _ = model.predict(obs, deterministic=True)
        np.testing.assert_allclose(residual, 0.0, atol=1e-7)
        expected = base.act({k: v for k, v in obs.items() if k != BASE_ACTION_KEY})
        obs, _, _, _, info = env.step(residual)
        np.testing.assert_allclose(info["env_action"], expected, atol=1e-6)
        moved |= bool(np.abs(expected).max() > 0.05)
    assert moved, "the base policy never acted; the comparison is vacuous"


def test_residual_input_includes_the_base_action_and_output_is_clipped():
    base = ScriptedPolicy(lambda obs: np.array([0.9, -0.9, 0.0, 0.0]))
    env = ResidualAction(_fetch(), base, scale=0.5)
    assert BASE_ACTION_KEY in env.observation_space.spaces
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs[BASE_ACTION_KEY], [0.9, -0.9, 0.0, 0.0], atol=1e-6)
    _, _, _, _, info = env.step(np.array([1.0, -1.0, 0.4, 0.0], np.float32))
    np.testing.assert_allclose(info["env_action"], [1.0, -1.0, 0.2, 0.0], atol=1e-6)


def test_residual_learns_away_from_zero_after_training_steps():
    env = ResidualAction(_fetch(), GoalReachingController(action_dim=4, gain=3.0), scale=0.5)
    model = make_algorithm(RESIDUAL_CFG, env, seed=0)
    model.learn(40)
    obs, _ = env.reset(seed=1)
    residual, _ = model.predict(obs, deterministic=True)
    assert np.abs(residual).max() > 0  # the zero init is a start, not a constraint


def test_sb3_checkpoint_adapter_matches_the_saved_model(tmp_path):
    env = _fetch()
    sac = SAC("MultiInputPolicy", env, seed=0, learning_starts=5, batch_size=8, policy_kwargs={"net_arch": [16]})
    sac.learn(10)
    sac.save(tmp_path / "base.zip")
    policy = SB3Policy(str(tmp_path / "base.zip"), algo="SAC")
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(policy.act(obs), sac.predict(obs, deterministic=True)[0], atol=1e-6)
    with pytest.raises(ValueError, match="unknown stable-baselines3 algorithm"):
        SB3Policy(str(tmp_path / "base.zip"), algo="NOPE")


def test_make_base_policy_names_the_allowed_kinds():
    box = gym.spaces.Box(-1, 1, (4,))
    assert isinstance(make_base_policy({"kind": "scripted", "target": "numpy:zeros_like"}, box), ScriptedPolicy)
    with pytest.raises(ValueError, match=r"expected one of \['goal_reaching', 'scripted', 'sb3', 'bc', 'lerobot'\]"):
        make_base_policy({"kind": "magic"}, box)
    with pytest.raises(ValueError, match="achieved_goal"):
        GoalReachingController(4).act(np.zeros(3))


@pytest.mark.skipif(importlib.util.find_spec("lerobot") is not None, reason="lerobot is installed")
def test_lerobot_adapter_without_lerobot_names_the_package():
    with pytest.raises(ImportError, match=r"pip install 'rlrm\[lerobot\]'"):
        LeRobotPolicy("some/dir", policy_type="act", obs_keys={})
