"""PPO can only checkpoint at rollout ends: a ``checkpoint_every`` between them is said, not silently stretched."""

from __future__ import annotations

import logging

import gymnasium as gym
from stable_baselines3 import PPO

from rlrm.rl.callbacks import CheckpointCallback, rollout_steps


def test_ppo_names_where_it_really_saves(tmp_path, caplog):
    model = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, batch_size=32, n_epochs=1, seed=0,
                policy_kwargs={"net_arch": [8]})
    assert rollout_steps(model) == 64
    with caplog.at_level(logging.WARNING, logger="rlrm.rl.callbacks"):
        model.learn(256, callback=CheckpointCallback(tmp_path, every=100, keep=10))
    assert ("checkpoint_every=100: PPO saves at the end of a rollout (n_steps=64 x 1 envs = 64 env steps), "
            "so checkpoints come every 128 steps (128, 256, ...)") in caplog.text
    saved = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("step_"))
    assert saved == ["step_000000128", "step_000000256"]  # what the message announced


def test_a_multiple_of_the_rollout_is_silent(tmp_path, caplog):
    model = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, batch_size=32, n_epochs=1, seed=0,
                policy_kwargs={"net_arch": [8]})
    with caplog.at_level(logging.WARNING, logger="rlrm.rl.callbacks"):
        model.learn(64, callback=CheckpointCallback(tmp_path, every=64))
    assert "checkpoint_every" not in caplog.text
