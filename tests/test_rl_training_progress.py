"""Gradient steps between episodes appear on the progress bar, and the learner makes exactly the same updates."""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3 import SAC

from rlrm.rl.callbacks import CheckpointCallback
from rlrm.rl.training_progress import GradientStepProgress


def _sac(target_update_interval: int) -> SAC:
    env = gym.make("Pendulum-v1", max_episode_steps=30)
    return SAC("MlpPolicy", env, train_freq=(1, "episode"), gradient_steps=-1, learning_starts=30, batch_size=16,
               target_update_interval=target_update_interval, policy_kwargs={"net_arch": [16]}, seed=3, device="cpu")


def test_phase_between_episodes_is_counted_on_the_bar_with_identical_updates(tmp_path):
    torch.manual_seed(0)
    plain = _sac(target_update_interval=2)
    plain.learn(90, progress_bar=True)

    torch.manual_seed(0)
    shown = _sac(target_update_interval=2)
    progress = GradientStepProgress(refresh_s=0.0)
    # a checkpoint written mid-run (as CheckpointCallback does) must still pickle
    saves = CheckpointCallback(tmp_path, every=30)
    shown.learn(90, callback=[progress, saves], progress_bar=True)

    assert "learning 30/30 gradient steps" in progress.shown  # episodes 2 and 3: 30 gradient steps each
    assert "learning 2/30 gradient steps" in progress.shown and progress.shown[-1] == ""
    assert "train" not in vars(shown)  # nothing of the callback in what model.save pickles
    assert not shown.critic.optimizer._optimizer_step_post_hooks  # the hook is removed after learn
    assert shown._n_updates == plain._n_updates == 60
    for a, b in zip(plain.policy.parameters(), shown.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # counting changes no update


def test_without_a_progress_bar_nothing_changes():
    model = _sac(target_update_interval=1)
    progress = GradientStepProgress()
    model.learn(60, callback=progress)
    assert progress.shown == [] and model._n_updates == 30
