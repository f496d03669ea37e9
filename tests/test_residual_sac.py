"""ResidualSAC's extra terms: the success verdict it trusts, the success replay, self-imitation and the penalty."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlrm.rl.algorithms import ResidualSAC, SuccessReplay, episode_succeeded


def test_episode_success_verdict_prefers_person_then_model_then_env():
    assert episode_succeeded({"human_label": False, "rlrm": {"success": True}, "is_success": True}) is False
    assert episode_succeeded({"rlrm": {"success": True}, "is_success": False}) is True
    assert episode_succeeded({"rlrm": {"progress": 0.4}, "is_success": True}) is True
    assert episode_succeeded({"rlrm": {}}) is None


def test_success_replay_is_a_ring_and_samples_dicts():
    replay = SuccessReplay(capacity=5, seed=0)
    replay.add_episode([({"x": np.full(2, i)}, np.full(1, i, np.float32)) for i in range(4)])
    replay.add_episode([({"x": np.full(2, i)}, np.full(1, i, np.float32)) for i in range(10, 13)])
    assert len(replay) == 5 and replay.episodes == 2
    kept = sorted(float(a[0]) for a in replay.actions)
    assert kept == [2.0, 3.0, 10.0, 11.0, 12.0]  # the two oldest steps left first
    obs, actions = replay.sample(7)
    assert obs["x"].shape == (7, 2) and actions.shape == (7, 1)
    np.testing.assert_array_equal(obs["x"][:, 0], actions[:, 0])  # pairs stay together
    with pytest.raises(ValueError, match="capacity > 0"):
        SuccessReplay(0)


class _Succeeds(gym.Wrapper):
    """Pendulum whose every episode counts as a success (10 steps long)."""

    def __init__(self) -> None:
        super().__init__(gym.wrappers.TimeLimit(gym.make("Pendulum-v1").unwrapped, 10))

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["is_success"] = True
        return obs, reward, terminated, truncated, info


def _mean_action_after(self_imitation: float, target: float) -> float:
    torch.manual_seed(0)
    model = ResidualSAC("MlpPolicy", _Succeeds(), seed=0, learning_starts=10, batch_size=16, train_freq=1,
                        gradient_steps=1, self_imitation=self_imitation, policy_kwargs={"net_arch": [16, 16]})
    # what the residual "did" in its successful episodes: always `target` (as if the learner had executed it)
    model.successes.add_episode([(np.array([np.cos(a), np.sin(a), 0.0], np.float32), np.array([target], np.float32))
                                 for a in np.linspace(-np.pi, np.pi, 64)])
    model.learn(300)
    obs = np.stack([np.cos(np.linspace(-3, 3, 32)), np.sin(np.linspace(-3, 3, 32)), np.zeros(32)], 1).astype(np.float32)
    return float(np.mean(model.predict(obs, deterministic=True)[0]))


def test_self_imitation_pulls_the_residual_toward_successful_actions():
    target = 0.6  # normalised action of the successes
    plain = _mean_action_after(0.0, target)
    imitating = _mean_action_after(2.0, target)
    assert abs(imitating - target) < abs(plain - target) - 0.1, (plain, imitating)


def test_successful_episodes_enter_the_success_replay_and_failures_do_not():
    model = ResidualSAC("MlpPolicy", _Succeeds(), seed=0, learning_starts=5, batch_size=8, self_imitation=1.0,
                        policy_kwargs={"net_arch": [8]})
    model.learn(30)
    assert model.successes.episodes == 3 and len(model.successes) == 30
    failing = ResidualSAC("MlpPolicy", gym.make("Pendulum-v1", max_episode_steps=10), seed=0, learning_starts=5,
                          batch_size=8, self_imitation=1.0, policy_kwargs={"net_arch": [8]})
    failing.learn(30)  # Pendulum has no success verdict: nothing to imitate
    assert failing.successes.episodes == 0


@pytest.mark.parametrize("bad", [{"self_imitation": -1.0}, {"residual_penalty": float("nan")}])
def test_bad_weights_are_refused(bad):
    with pytest.raises(ValueError, match="finite weight >= 0"):
        ResidualSAC("MlpPolicy", gym.make("Pendulum-v1"), **bad)


def test_a_checkpoint_with_self_imitation_saves_and_loads(tmp_path):
    model = ResidualSAC("MlpPolicy", _Succeeds(), seed=0, learning_starts=5, batch_size=8, self_imitation=1.0,
                        residual_penalty=0.5, policy_kwargs={"net_arch": [8]})
    model.learn(40)
    model.save(tmp_path / "m.zip")
    loaded = ResidualSAC.load(tmp_path / "m.zip", env=_Succeeds())
    assert loaded.self_imitation == 1.0 and loaded.residual_penalty == 0.5
    loaded.learn(20)  # the wrapped optimizer's state came back and keeps stepping


def test_demonstrations_join_the_success_replay_only_with_self_imitation():
    obs = np.zeros((6, 3), np.float32)
    actions = np.full((6, 1), 0.5, np.float32)
    on = ResidualSAC("MlpPolicy", _Succeeds(), self_imitation=1.0, policy_kwargs={"net_arch": [8]})
    assert on.imitate(obs, actions) == 6 and len(on.successes) == 6
    off = ResidualSAC("MlpPolicy", _Succeeds(), policy_kwargs={"net_arch": [8]})
    assert off.imitate(obs, actions) == 0 and len(off.successes) == 0


class _TakenOver(_Succeeds):
    """Every step is a person's takeover that executed +1 (env units: Pendulum's action is in [-2, 2])."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(np.array([2.0], np.float32))
        info.update(intervention=True, action=np.array([2.0], np.float32))
        return obs, reward, terminated, truncated, info


def test_takeover_steps_of_a_success_are_imitated_with_the_executed_action():
    from rlrm.rl.interventions import InterventionReplayBuffer

    model = ResidualSAC("MlpPolicy", _TakenOver(), seed=0, learning_starts=5, batch_size=8, self_imitation=1.0,
                        replay_buffer_class=InterventionReplayBuffer, policy_kwargs={"net_arch": [8]})
    model.learn(20)
    assert model.successes.episodes == 2
    np.testing.assert_allclose(np.stack(model.successes.actions), 1.0)  # +2 env units = +1 in the buffer
