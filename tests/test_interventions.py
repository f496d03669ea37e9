"""Human takeovers: the executed action is stored (never the policy's), takeovers fill a second buffer that
supplies half of each batch, and the intervention rate is logged, in single-process runs and on the
distributed data path (runner -> learner), on the simulated xArm with injected keyboard events."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.logger import configure

from rlrm.rl.algorithms import make_algorithm
from rlrm.rl.environment import vectorize
from rlrm.rl.interventions import (
    InterventionDictReplayBuffer,
    InterventionLoggingCallback,
    InterventionReplayBuffer,
    executed_buffer_action,
)
from rlrm.rl.residual import ResidualAction, ScriptedPolicy
from robots import make_robot_env

BOX2 = spaces.Box(-1.0, 1.0, (2,), np.float32)
SMALL_SAC = {"name": "sac", "policy": "auto", "net_arch": [16, 16], "normalize_obs": True,
             "learning_starts": 1000, "buffer_size": 1000, "batch_size": 8}


class TakeoverScript(gym.Wrapper):
    """Presses keys on the robot's keyboard teleop at fixed steps of each episode and records every step's info."""

    def __init__(self, env: gym.Env, start: int = 3, stop: int = 10) -> None:
        super().__init__(env)
        self.start, self.stop = start, stop
        self.records: list[dict] = []
        self.t = 0

    def reset(self, **kwargs):
        self.t = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        kb = self.env.unwrapped.teleop
        if self.t == self.start:
            kb.press("space")  # take over, push +x
            kb.press("w")
        if self.t == self.stop:
            kb.press("space")  # hand back to the policy
            kb.release("w")
        self.t += 1
        out = self.env.step(action)
        info = out[-1]
        self.records.append({"intervention": bool(info["intervention"]), "action": np.array(info["action"]),
                             "policy_action": np.array(info["policy_action"])})
        return out


def sim_xarm(max_episode_steps: int = 20) -> gym.Env:
    return make_robot_env("xarm", sim=True, fps=1000, cameras={}, teleop={"type": "keyboard"},
                          teleop_device=object(), max_episode_steps=max_episode_steps)


def test_single_process_sac_stores_the_teleop_action_in_both_buffers_and_logs_the_rate(tmp_path):
    env = TakeoverScript(sim_xarm())
    model = make_algorithm(SMALL_SAC, vectorize(env, normalize_obs=True), seed=0)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(40, callback=InterventionLoggingCallback())
    model.logger.dump(model.num_timesteps)

    buf = model.replay_buffer
    assert isinstance(buf, InterventionDictReplayBuffer)
    takeovers = [r for r in env.records if r["intervention"]]
    assert len(env.records) == 40 and len(takeovers) == 2 * 7  # steps 3..9 of both episodes
    for row, rec in enumerate(env.records):
        stored = buf.actions[row, 0]
        if rec["intervention"]:
            np.testing.assert_allclose(stored, rec["action"], atol=1e-6)  # what the robot executed
            assert not np.allclose(stored, rec["policy_action"], atol=1e-3)
        else:
            np.testing.assert_allclose(stored, rec["policy_action"], atol=1e-6)
    assert buf.interventions.size() == len(takeovers) == buf.num_intervention_steps
    np.testing.assert_allclose(buf.interventions.actions[: len(takeovers), 0], [r["action"] for r in takeovers],
                               atol=1e-6)
    assert np.all(buf.interventions.actions[: len(takeovers), 0, 0] > 0.5)  # 'w' = +x

    header, *rows = (tmp_path / "progress.csv").read_text().splitlines()
    column = header.split(",").index("interventions/rate")
    assert float(rows[-1].split(",")[column]) == pytest.approx(7 / 20)


def test_distributed_path_runner_to_learner_stores_the_teleop_action_in_both_buffers(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from rlrm.distributed.learner import Learner
    from rlrm.distributed.runner import EnvRunner
    from rlrm.distributed.shared_reward import RewardEndpoint
    from robots.teleop import KeyboardTeleop

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "configs"), version_base=None):
        cfg = OmegaConf.to_container(compose("config", overrides=[
            "robot=xarm", "robot_sim=true", "reward=env_dense", "algo.net_arch=[16,16]",
            "algo.learning_starts=1000", "algo.buffer_size=1000", "distributed.runners=1",
            "+robot.sim.env.fps=1000", "+robot.sim.env.max_episode_steps=20", "robot.sim.cameras={}"]), resolve=True)
    cfg["reward"]["env_kwargs"] = {}  # a robot has no reward of its own to configure
    runner = EnvRunner(cfg, 0, RewardEndpoint("none"))
    keyboard = KeyboardTeleop("xyz_yaw")
    runner.env.unwrapped.teleop = keyboard
    learner = Learner(cfg, tmp_path, *runner.spaces(), sync_every=10)
    weights = learner.weights()

    meta, batch = runner.collect(5, weights.version, [weights])
    keyboard.press("space")
    keyboard.press("d")  # -y
    meta2, batch2 = runner.collect(5, weights.version, [weights])
    runner.close()
    assert meta["shipped"] == meta2["shipped"] == 5
    assert not any(i.get("intervention") for i in batch.infos) and all(i["intervention"] for i in batch2.infos)

    learner.ingest(batch)
    learner.ingest(batch2)
    buf = learner.buffer
    executed = np.stack([i["action"] for i in batch2.infos])
    assert np.all(executed[:, 1] < -0.5)  # 'd' = -y, after the safety filter: what the arm really did
    np.testing.assert_allclose(buf.actions[5:10, 0], executed, atol=1e-6)  # not the policy's batch2.actions
    assert not np.allclose(buf.actions[5:10, 0], batch2.actions, atol=1e-3)
    np.testing.assert_allclose(buf.actions[:5, 0], batch.actions, atol=1e-6)
    assert buf.interventions.size() == 5
    np.testing.assert_allclose(buf.interventions.actions[:5, 0], executed, atol=1e-6)
    assert learner.stats()["intervention_buffer"] == 5


def test_batches_draw_half_from_the_takeover_buffer_once_it_has_data():
    buf = InterventionReplayBuffer(200, BOX2, BOX2, device="cpu")
    obs = np.zeros((1, 2), np.float32)
    for _ in range(100):
        buf.add(obs, obs, np.zeros((1, 2)), np.zeros(1), np.zeros(1), [{"intervention": False}])
    before = buf.sample(64)
    assert float(before.rewards.sum()) == 0.0  # no takeover yet: a plain SB3 batch
    buf.add(obs, obs, np.zeros((1, 2)), np.ones(1), np.zeros(1), [{"intervention": True, "action": [0.5, 0.5]}])
    batch = buf.sample(64)
    assert batch.observations.shape == (64, 2) and batch.actions.shape == (64, 2)
    assert float(batch.rewards[32:].sum()) == 32.0  # the second half is the takeover buffer
    np.testing.assert_allclose(batch.actions[32:].numpy(), 0.5)

    plain = InterventionReplayBuffer(200, BOX2, BOX2, device="cpu", intervention_ratio=0.0)
    plain.add(obs, obs, np.zeros((1, 2)), np.ones(1), np.zeros(1), [{"intervention": True, "action": [0.5, 0.5]}])
    assert plain.interventions.size() == 1 and plain.sample(8).rewards.shape == (8, 1)
    with pytest.raises(ValueError, match=r"intervention_ratio must be in \[0, 1\), got 1.5"):
        InterventionReplayBuffer(10, BOX2, BOX2, device="cpu", intervention_ratio=1.5)


def test_executed_action_in_buffer_units_for_scaled_and_residual_action_spaces():
    wide = spaces.Box(-2.0, 2.0, (2,), np.float32)
    np.testing.assert_allclose(executed_buffer_action({"action": [1.0, -3.0]}, wide), [0.5, -1.0])  # scaled, clipped
    residual = {"intervention": True, "action": [0.4, 0.0], "base_action": [0.2, 0.1]}
    np.testing.assert_allclose(executed_buffer_action(residual, BOX2, residual_scale=0.5), [0.4, -0.2], atol=1e-6)
    with pytest.raises(ValueError, match="residual_scale"):
        executed_buffer_action(residual, BOX2)
    with pytest.raises(ValueError, match=r"has no 'action' key"):
        executed_buffer_action({"intervention": True}, BOX2)
    with pytest.raises(ValueError, match=r"shape \(3,\), expected the action space's \(2,\)"):
        executed_buffer_action({"action": [0.0, 0.0, 0.0]}, BOX2)


def test_a_late_reward_reaches_the_takeover_copy_too():
    buf = InterventionReplayBuffer(10, BOX2, BOX2, device="cpu")
    obs = np.zeros((1, 2), np.float32)
    buf.add(obs, obs, np.zeros((1, 2)), np.zeros(1), np.zeros(1),
            [{"intervention": True, "action": [0.1, 0.2], "rlrm_ticket": 3}])
    assert buf.num_pending == 1 and buf.interventions.num_pending == 1
    assert buf.relabel(3, reward=0.7, terminated=True)
    for b in (buf, buf.interventions):
        assert b.num_pending == 0 and float(b.rewards[0, 0]) == pytest.approx(0.7) and b.dones[0, 0] == 1.0


def test_make_algorithm_gives_off_policy_algorithms_the_intervention_buffer():
    env = vectorize(sim_xarm(), normalize_obs=False)
    assert isinstance(make_algorithm(SMALL_SAC, env).replay_buffer, InterventionDictReplayBuffer)
    box_env = vectorize(gym.make("Pendulum-v1"), normalize_obs=False)
    assert isinstance(make_algorithm(dict(SMALL_SAC, normalize_obs=False), box_env).replay_buffer,
                      InterventionReplayBuffer)
    residual = make_algorithm({**SMALL_SAC, "name": "residual_sac", "residual_scale": 0.3},
                              vectorize(ResidualAction(sim_xarm(), ScriptedPolicy(np.zeros_like), scale=0.3), False))
    assert residual.replay_buffer.residual_scale == pytest.approx(0.3)
    ppo = make_algorithm({"name": "ppo", "policy": "auto", "net_arch": [8], "n_steps": 16, "batch_size": 8}, box_env)
    assert not hasattr(ppo, "replay_buffer") or ppo.replay_buffer is None
