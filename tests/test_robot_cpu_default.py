"""Robot runs on a CPU: state observations for the policy, camera frames for the reward, a slow learner reported (issue 17)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlrm.rl.learner_rate import LearnerRateCallback, control_period_s
from robots import ROBOTS, RobotEnvConfig, make_robot_env

ROOT = Path(__file__).resolve().parents[1]
# simulated SO-101, the tiny reward model in-process, 10-step episodes, a few gradient steps
SO101 = ["robot=so101", "robot_sim=true", "transport=local", "reward.model=tiny", "reward.max_frames=2",
         "robot.env.max_episode_steps=10", "eval_episodes=1", "eval_video_episodes=0", "progress_bar=false",
         "checkpoint_every=0", "algo.learning_starts=10", "algo.batch_size=8", "algo.net_arch=[16]"]


def compose_run(*overrides: str) -> dict:
    """The resolved run_rl.py config for ``overrides``."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


@pytest.fixture(scope="module")
def run_rl():
    spec = importlib.util.spec_from_file_location("run_rl", ROOT / "run_rl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _built_line(caplog) -> str:
    return next(r.getMessage() for r in caplog.records if r.getMessage().startswith("built sac"))


@pytest.mark.parametrize("name", ROBOTS)
def test_every_robot_config_gives_the_policy_state_and_keeps_images_one_override_away(name):
    assert compose_run(f"robot={name}")["robot"]["env"]["policy_obs"] == "state"
    assert compose_run(f"robot={name}", "robot.env.policy_obs=images")["robot"]["env"]["policy_obs"] == "images"
    assert RobotEnvConfig().policy_obs == "state"
    with pytest.raises(ValueError, match=r"policy_obs must be one of \['state', 'images'\], got 'pixels'"):
        RobotEnvConfig(policy_obs="pixels")


def test_state_observations_still_give_the_reward_model_camera_frames():
    env = make_robot_env("so101", sim=True, fps=1000)
    obs, _ = env.reset(seed=0)
    assert sorted(obs) == ["ee_pose", "gripper", "joints"] and env.unwrapped.camera_names == ["front"]
    frame = env.unwrapped.render_camera("front")
    assert frame.shape == (128, 128, 3) and frame.dtype.name == "uint8"
    env.step(env.action_space.sample() * 0)
    assert env.render() is env.unwrapped.render_camera("front")  # the frame of the latest step
    with pytest.raises(ValueError, match=r"unknown camera 'wrist'; this robot has \['front'\]"):
        env.unwrapped.render_camera("wrist")
    env.close()
    images = make_robot_env("so101", sim=True, fps=1000, policy_obs="images")
    assert sorted(images.reset(seed=0)[0]) == ["ee_pose", "front", "gripper", "joints"]
    images.close()


def test_default_so101_sim_run_trains_on_state_and_times_its_learner(run_rl, tmp_path, caplog):
    cfg = compose_run(*SO101, "total_steps=25")
    with caplog.at_level(logging.INFO):
        summary = run_rl.train(cfg, tmp_path)
    built = _built_line(caplog)
    assert "Dict(ee_pose: float32 (6,), gripper: float32 (1,), joints: float32 (6,))" in built and "front" not in built
    assert "replay buffer of 25 transitions" in built
    assert summary["eval_episodes"][0]["final_progress"] is not None  # the reward model scored camera frames
    learner = [r.getMessage() for r in caplog.records if r.name == "rlrm.rl.learner_rate"]
    assert any("ms per gradient step" in m and "66.7 ms control period" in m for m in learner), learner


def test_image_policy_override_and_a_learner_slower_than_the_control_period_is_warned_about(run_rl, tmp_path,
                                                                                            caplog):
    # 10 kHz: a 0.1 ms period that no gradient step fits into, so the warning does not depend on this box's speed
    cfg = compose_run(*SO101, "robot.env.policy_obs=images", "robot.env.fps=10000", "total_steps=16")
    with caplog.at_level(logging.INFO):
        run_rl.train(cfg, tmp_path)
    # the policy sees the image as SB3's CNN wants it: uint8, channel-first, not normalised by VecNormalize
    assert "front: uint8 (3, 128, 128)" in _built_line(caplog)
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "rlrm.rl.learner_rate" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "the learner is too slow for the robot's control loop" in warnings[0]
    assert "the control period is 0.1 ms (10000 Hz" in warnings[0] and "ms per gradient step" in warnings[0]
    assert "robot.env.policy_obs=state" in warnings[0] and "algo.train_freq=[1,episode]" in warnings[0]


def test_training_between_episodes_from_the_command_line(run_rl, tmp_path, caplog):
    cfg = compose_run(*SO101, "algo.train_freq=[1,episode]", "algo.gradient_steps=-1", "total_steps=30")
    with caplog.at_level(logging.INFO):
        summary = run_rl.train(cfg, tmp_path)
    assert summary["env_steps"] == 30
    learner = [r for r in caplog.records if r.name == "rlrm.rl.learner_rate"]
    assert any("gradient steps between episodes" in r.getMessage() for r in learner)
    assert not any(r.levelno >= logging.WARNING for r in learner)


# ---------------------------------------------------------------- the callback on a scripted clock
class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _callback(period_s: float, unit: str, clock: _Clock):
    rate = SimpleNamespace(period=period_s, resets=0)
    rate.reset = lambda: setattr(rate, "resets", rate.resets + 1)
    robot = SimpleNamespace(unwrapped=SimpleNamespace(rate=rate))
    venv = SimpleNamespace(unwrapped=SimpleNamespace(envs=[robot]))
    model = SimpleNamespace(_n_updates=0, train_freq=SimpleNamespace(unit=SimpleNamespace(value=unit)),
                            logger=SimpleNamespace(record=lambda *a, **k: None), get_env=lambda: venv)
    cb = LearnerRateCallback(clock=clock)
    cb.model = model
    cb._on_training_start()
    return cb, model, rate


def _phases(cb, model, clock, seconds: float, updates: int, n: int) -> None:
    for _ in range(n):
        cb._on_rollout_end()
        clock.now += seconds
        model._n_updates += updates
        cb._on_rollout_start()


def test_learner_rate_warning_names_the_measured_numbers(caplog):
    clock = _Clock()
    cb, model, _ = _callback(1 / 15, "step", clock)
    assert cb.period_s == pytest.approx(1 / 15) and control_period_s(SimpleNamespace()) is None
    with caplog.at_level(logging.INFO, logger="rlrm.rl.learner_rate"):
        _phases(cb, model, clock, 0.020, 1, 20)  # 20 ms of 66.7: fine
        assert not cb.warned
        slow, model, _ = _callback(1 / 15, "step", clock)
        _phases(slow, model, clock, 0.900, 2, 10)  # two 450 ms gradient steps per env step
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "450.0 ms per gradient step, 900.0 ms of learning between env steps" in warnings[0]
    assert "the control period is 66.7 ms (15 Hz; budget 50% = 33.3 ms)" in warnings[0]


def test_between_episode_learning_is_not_an_overrun(caplog):
    clock = _Clock()
    cb, model, rate = _callback(1 / 15, "episode", clock)
    with caplog.at_level(logging.INFO, logger="rlrm.rl.learner_rate"):
        _phases(cb, model, clock, 2.0, 200, 4)
    assert not cb.warned and rate.resets == 4  # the robot's first tick after the pause starts afresh
    assert "200 gradient steps between episodes took 2.00 s (10.0 ms each)" in caplog.text
