"""Franka ``motion="velocity"`` against franky-sim: ``CartesianVelocityMotion`` twists toward the safe
target, capped at the per-step limits / dt; the arm moves toward the action, stays in the box under
adversarial actions, and stops."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("franky", reason="needs rlrm[robots-sim] (franky-control)")
pytest.importorskip("franky_sim", reason="needs rlrm[robots-sim] (franky-sim)")

from test_robots_safety import run_and_check_targets  # noqa: E402

from robots import make_robot_env  # noqa: E402
from robots.backend import RecordingBackend  # noqa: E402
from robots.franka import FrankaConfig, cartesian_twist  # noqa: E402
from robots.geometry import EEPose, rpy_to_matrix  # noqa: E402

FPS = 50  # real clock: franky brakes a twist after one period, so the loop must really run at fps


@pytest.fixture(scope="module")
def velocity_env():
    env = make_robot_env(
        "franka", sim=True, fps=FPS, backend={"motion": "velocity"},
        safety={"max_step_m": 0.004, "max_step_rad": 0.02}, step_size_m=0.004, step_size_rad=0.02,
    )
    twists: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    backend = env.backend
    plain = backend.velocity_toward

    def recording(pose):
        linear, angular = plain(pose)
        measured = np.asarray(backend.robot.current_cartesian_state.pose.end_effector_pose.translation)
        twists.append((linear.copy(), angular.copy(), measured, pose.position.copy()))
        return linear, angular

    backend.velocity_toward = recording
    env.twists = twists
    yield env
    env.close()


def test_velocity_config_wired_and_checked(velocity_env):
    cfg = velocity_env.backend.config
    assert cfg.motion == "velocity" and cfg.velocity_dt_s == pytest.approx(1 / FPS)
    assert cfg.max_step_m == pytest.approx(0.004) and cfg.max_step_rad == pytest.approx(0.02)
    with pytest.raises(ValueError, match="motion must be 'position' or 'velocity', got 'torque'"):
        FrankaConfig(motion="torque")


def test_cartesian_twist_is_delta_over_dt_clipped_to_step_limits():
    current = EEPose([0.5, 0.0, 0.4], np.eye(3))
    near = EEPose([0.501, -0.002, 0.4], rpy_to_matrix([0.0, 0.0, 0.01]))
    v, w = cartesian_twist(current, near, 0.1, 0.02, 0.1)
    np.testing.assert_allclose(v, [0.01, -0.02, 0.0], atol=1e-12)  # (target - current) / dt
    np.testing.assert_allclose(w, [0.0, 0.0, 0.1], atol=1e-9)
    far = EEPose([0.8, 0.4, 0.4], rpy_to_matrix([0.0, 0.0, 1.0]))
    v, w = cartesian_twist(current, far, 0.1, 0.02, 0.1)
    assert np.linalg.norm(v) == pytest.approx(0.2) and np.linalg.norm(w) == pytest.approx(1.0)  # limit / dt
    np.testing.assert_allclose(v / np.linalg.norm(v), [0.6, 0.8, 0.0])  # direction kept
    np.testing.assert_allclose(w / np.linalg.norm(w), [0.0, 0.0, 1.0], atol=1e-9)


def test_velocity_step_moves_toward_action(velocity_env):
    velocity_env.reset(seed=0)
    velocity_env.twists.clear()
    start = velocity_env.backend.read_state().pose.position
    for _ in range(40):  # 0.8 s at 50 Hz
        obs, _, _, _, info = velocity_env.step(np.array([0.0, 1.0, 0.0, 0.0, 1.0]))
    moved = obs["ee_pose"][:3] - start
    assert moved[1] > 0.03 and abs(moved[0]) < 0.005 and abs(moved[2]) < 0.005, moved
    cap_lin = 0.004 * FPS
    for linear, angular, measured, target in velocity_env.twists:
        assert np.linalg.norm(linear) <= cap_lin + 1e-9 and np.linalg.norm(angular) <= 0.02 * FPS + 1e-9
        gap = target - measured  # measured just after the twist was computed (the arm moves at 1 kHz)
        if np.linalg.norm(gap) > 0.002:
            assert linear @ gap / (np.linalg.norm(linear) * np.linalg.norm(gap)) > 0.95, (linear, gap)
    assert len(velocity_env.twists) == 40


def test_velocity_adversarial_actions_stay_in_box(velocity_env):
    inner = velocity_env.backend
    rec = RecordingBackend(inner)
    velocity_env.backend = rec
    box = velocity_env.config.safety
    measured: list[np.ndarray] = []
    step = velocity_env.step

    def step_and_measure(action):
        out = step(action)
        measured.append(inner.read_state().pose.position)
        return out

    velocity_env.step = step_and_measure
    try:
        run_and_check_targets(velocity_env, rec, n=300, episode_len=150)
    finally:
        velocity_env.backend = inner
        del velocity_env.step
    measured = np.array(measured)
    assert len(measured) > 150  # the NaN/inf/malformed actions raise instead of stepping
    assert np.all(measured >= box.low - 0.005) and np.all(measured <= box.high + 0.005)
    assert np.ptp(measured, axis=0).max() > 0.02, "the arm hardly moved"


def test_velocity_stop_halts_motion(velocity_env):
    velocity_env.reset(seed=0)
    backend = velocity_env.backend
    start = backend.read_state().pose.position
    for _ in range(15):
        velocity_env.step(np.array([0.0, -1.0, 0.0, 0.0, 1.0]))
    moving_from = backend.read_state().pose.position
    time.sleep(0.005)
    assert np.linalg.norm(backend.read_state().pose.position - start) > 0.01, "the arm never moved"
    velocity_env.stop()
    time.sleep(0.3)
    p0 = backend.read_state().pose.position
    time.sleep(0.5)
    p1 = backend.read_state().pose.position
    assert np.linalg.norm(p1 - p0) < 0.001, f"still moving after stop: {p1 - p0}"
    assert np.linalg.norm(p0 - moving_from) < 0.02, "the arm coasted far after stop"
    _, _, _, truncated, info = velocity_env.step(np.ones(5))
    assert truncated and info["stopped"]
    velocity_env.resume()
    backend.recover()
    velocity_env.config.reset_randomize_m = [0.0, 0.0, 0.0]
    obs, _ = velocity_env.reset()
    np.testing.assert_allclose(obs["ee_pose"][:3], velocity_env.config.home_pose[:3], atol=0.003)


def test_velocity_pushing_into_a_wall_stops_at_the_box(velocity_env):
    velocity_env.config.reset_randomize_m = [0.0, 0.0, 0.0]
    velocity_env.reset(seed=0)
    high = velocity_env.config.safety.high
    heights = []
    for _ in range(100):  # +z at full action for 2 s: 0.4 m of requests, 0.15 m to the lid of the box
        obs, _, _, _, info = velocity_env.step(np.array([0.0, 0.0, 1.0, 0.0, 1.0]))
        heights.append(obs["ee_pose"][2])
    assert info["clipped_workspace"]
    assert max(heights) <= high[2] + 0.005, max(heights)
    assert heights[-1] >= high[2] - 0.005, heights[-1]  # got there and holds at the wall
