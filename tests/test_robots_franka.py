"""Franka env against franky-sim: the real franky client talking libfranka to a MuJoCo FR3 on loopback."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("franky", reason="needs rlrm[robots-sim] (franky-control)")
pytest.importorskip("franky_sim", reason="needs rlrm[robots-sim] (franky-sim)")

from test_robots_safety import FakeClock, run_and_check_targets  # noqa: E402

from robots import make_robot_env  # noqa: E402
from robots.backend import RecordingBackend  # noqa: E402
from robots.geometry import EEPose  # noqa: E402


@pytest.fixture(scope="module")
def franka_env():
    clock = FakeClock()
    env = make_robot_env("franka", sim=True, task="put the cube in the bowl", clock=clock, sleep=clock.sleep)
    yield env
    env.close()


def test_franka_sim_reset_reaches_home(franka_env):
    home = np.asarray(franka_env.config.home_pose)
    half = np.asarray(franka_env.config.reset_randomize_m)
    obs, info = franka_env.reset(seed=0)  # randomised start inside the reset box
    assert np.all(np.abs(obs["ee_pose"][:3] - home[:3]) <= half + 0.003)
    franka_env.config.reset_randomize_m = [0.0, 0.0, 0.0]
    obs, info = franka_env.reset(seed=0)
    np.testing.assert_allclose(obs["ee_pose"][:3], home[:3], atol=0.003)
    assert info["task"] == franka_env.unwrapped.task == "put the cube in the bowl"
    front = franka_env.unwrapped.render_camera("front")  # policy_obs: state (default): cameras feed the reward
    assert front.dtype == np.uint8 and front.shape == (128, 128, 3) and "front" not in obs
    assert obs["joints"].shape == (7,)


def test_franka_sim_1000_adversarial_actions_stay_safe(franka_env):
    cfg = franka_env.config
    cfg.step_size_m, cfg.step_size_rad = 3 * cfg.safety.max_step_m, 3 * cfg.safety.max_step_rad
    inner = franka_env.backend
    rec = RecordingBackend(inner)
    franka_env.backend = rec
    try:
        run_and_check_targets(franka_env, rec, n=1000, episode_len=500)
    finally:
        franka_env.backend = inner
    assert franka_env.config.safety.contains(inner.read_state().pose.position, tol=0.005)


def test_franka_sim_stop_halts_motion(franka_env):
    franka_env.reset(seed=0)
    backend = franka_env.backend
    start = backend.read_state().pose
    far = EEPose(start.position + np.array([0.1, 0.0, 0.0]), start.rotation)
    backend.command_ee(far, 1.0)  # a long motion, straight at the backend
    deadline = time.monotonic() + 10
    while np.linalg.norm(backend.read_state().pose.position - start.position) < 0.005:
        assert time.monotonic() < deadline, "the arm never started moving"
        time.sleep(0.01)
    franka_env.stop()
    time.sleep(0.3)  # franky decelerates to rest
    p0 = backend.read_state().pose.position
    time.sleep(0.5)
    p1 = backend.read_state().pose.position
    assert np.linalg.norm(p1 - p0) < 0.001, f"still moving after stop: {p1 - p0}"
    assert np.linalg.norm(p0 - far.position) > 0.01, "the motion finished instead of being stopped"
    _, _, _, truncated, info = franka_env.step(np.ones(5))
    assert truncated and info["stopped"]
    franka_env.resume()
    backend.recover()  # recover_from_errors on the simulated controller
    obs, _ = franka_env.reset()
    np.testing.assert_allclose(obs["ee_pose"][:3], franka_env.config.home_pose[:3], atol=0.003)


def test_franka_sim_step_moves_toward_action(franka_env):
    franka_env.config.step_size_m = 0.01
    franka_env.reset(seed=0)
    start = franka_env.backend.read_state().pose.position
    for _ in range(20):
        obs, _, _, _, info = franka_env.step(np.array([0.0, 1.0, 0.0, 0.0, 1.0]))
        time.sleep(0.05)  # the injected clock does not wait; give the real arm time to move
    moved = obs["ee_pose"][:3] - start
    assert moved[1] > 0.01 and abs(moved[0]) < 0.005, moved
    assert info["intervention"] is False
