"""SO-101 joint-space actions (``action_mode="joints"``) on the emulated STS3215 bus: what the servos
receive stays inside the joint limits, the per-step joint limit and (by forward kinematics) the
workspace box under 1000 random/huge/NaN actions; stop holds; reset reaches home."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scservo_sdk", reason="needs rlrm[robots] (feetech-servo-sdk)")

from robots import make_robot_env  # noqa: E402
from robots.feetech import normalize  # noqa: E402
from robots.safety import JointSafetyFilter, SafetyConfig, UnsafeActionError  # noqa: E402
from robots.so101 import BODY, SO101_MOTORS, SO101Kinematics  # noqa: E402

ROLL_LIMITS = [-20.0, 20.0]  # narrowed in the config: the roll does not move the tip, so only its limit stops it


def joint_env(**overrides):
    """The sim SO-101 in joint mode with step sizes far above the per-step limit."""
    overrides.setdefault("backend", {"joint_limits_deg": [[-150, 150]] * 4 + [ROLL_LIMITS]})
    overrides.setdefault("joint_step_deg", [15.0] * 5)
    return make_robot_env("so101", sim=True, action_mode="joints", sleep=lambda s: None, teleop=None, **overrides)


def received_goals(env, start: int) -> np.ndarray:
    """(n, 5) body-joint goals (LeRobot deg) the emulated servos received since goal-log index ``start``."""
    backend = env.backend
    servos = backend.bus.port.servos
    logs = [servos[SO101_MOTORS[m]].goal_log[start:] for m in BODY]
    n = min(len(log) for log in logs)
    return np.array([[normalize(logs[j][k], backend.calibration[m], "degrees") for j, m in enumerate(BODY)]
                     for k in range(n)])


def goal_count(env) -> int:
    return len(env.backend.bus.port.servos[SO101_MOTORS["shoulder_pan"]].goal_log)


def test_joint_filter_limits_step_and_box():
    kin = SO101Kinematics()
    offset = np.array([0.0, 0.0, 90.0, 0.0, 0.0])
    cfg = SafetyConfig([0.12, -0.08, 0.03], [0.22, 0.08, 0.10], max_step_deg=4.0)
    f = JointSafetyFilter(cfg, lambda d: kin.forward(np.radians(np.asarray(d) + offset)), [-100] * 4 + [-20], [100] * 4 + [20])
    prev = np.degrees(kin.inverse([0.18, 0.0, 0.07], yaw=0.0)) - offset
    rng = np.random.default_rng(0)
    seen = {"limits": 0, "step": 0, "workspace": 0}
    for _ in range(1000):
        desired = prev + rng.uniform(-1, 1, 5) * rng.choice([1.0, 30.0, 1e4])
        safe = f.apply(desired, prev)
        assert np.all(safe.joints >= f.low) and np.all(safe.joints <= f.high)
        assert np.max(np.abs(safe.joints - prev)) <= cfg.max_step_deg + 1e-9
        assert cfg.contains(safe.pose.position), safe.pose.position
        seen["limits"] += safe.clipped_limits
        seen["step"] += safe.clipped_step
        seen["workspace"] += safe.clipped_workspace
        prev = safe.joints
    assert all(v > 10 for v in seen.values()), seen  # every limit was exercised
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        f.apply(np.zeros(3), prev)
    with pytest.raises(ValueError, match="low < high"):
        JointSafetyFilter(cfg, f.forward, [10] * 5, [0] * 5)


def test_joint_action_moves_the_named_joint():
    env = joint_env(joint_step_deg=[2.0, 2.0, 2.0, 2.0, 2.0])
    try:
        obs, _ = env.reset(seed=0)
        start = env._joint_target.copy()
        _, _, _, _, info = env.step(np.array([0, 0, 0, 0, 1.0, 1.0]))  # roll +1 -> +2 deg, nothing else
        np.testing.assert_allclose(info["commanded_joints"] - start, [0, 0, 0, 0, 2.0], atol=0.1)
        assert env.action_space.shape == (6,) and info["action"][4] == pytest.approx(1.0, abs=0.05)
    finally:
        env.close()


def test_so101_joint_mode_1000_adversarial_actions_stay_safe():
    env = joint_env()
    cfg = env.config.safety
    try:
        env.reset(seed=0)
        start = goal_count(env)
        rng = np.random.default_rng(1)
        previous = env._joint_target.copy()
        nan_raised = 0
        for i in range(1000):
            kind = i % 10
            if kind < 5:
                action = rng.uniform(-1, 1, 6)
            elif kind < 8:
                action = rng.uniform(-1e6, 1e6, 6)
            else:
                action = rng.choice([-1.0, 1.0], 6)
            if i % 37 == 0:
                action[rng.integers(6)] = rng.choice([np.nan, np.inf, -np.inf])
                with pytest.raises(UnsafeActionError, match="finite"):
                    env.step(action)
                nan_raised += 1
                np.testing.assert_allclose(env._joint_target, previous)  # held the previous target
                continue
            _, _, _, _, info = env.step(action)
            assert np.max(np.abs(info["commanded_joints"] - previous)) <= cfg.max_step_deg + 1e-9
            previous = info["commanded_joints"].copy()
        goals = received_goals(env, start)
        assert len(goals) > 900 and nan_raised > 20
        low, high = env.joint_safety.low, env.joint_safety.high
        assert np.all(goals >= low - 1e-9) and np.all(goals <= high + 1e-9)
        assert goals[:, 4].max() == pytest.approx(ROLL_LIMITS[1], abs=0.1)  # the limit, and not past it
        assert goals[:, 4].min() == pytest.approx(ROLL_LIMITS[0], abs=0.1)
        assert np.max(np.abs(np.diff(goals, axis=0))) <= cfg.max_step_deg + 1e-9
        for g in goals:
            assert cfg.contains(env.backend.joint_pose(g).position), f"goal {g} reaches outside the box"
        # the box was actually reached: targets touched at least 4 of its 6 faces
        pos = np.array([env.backend.joint_pose(g).position for g in goals])
        touched = np.sum(np.isclose(pos.min(0), cfg.low, atol=2e-3)) + np.sum(np.isclose(pos.max(0), cfg.high, atol=2e-3))
        assert touched >= 4, (pos.min(0), pos.max(0))
    finally:
        env.close()


def test_stop_holds_in_joint_mode_and_reset_reaches_home():
    env = joint_env(reset_randomize_m=[0.0, 0.0, 0.0])
    try:
        env.reset(seed=0)
        for _ in range(5):
            env.step(np.array([1.0, -1.0, 1.0, 1.0, 0.0, 1.0]))
        env.stop()
        n = goal_count(env)
        servos = env.backend.bus.port.servos
        present = [s.actual for s in servos.values()]
        for _ in range(10):
            _, _, _, trunc, info = env.step(np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0]))
            assert info["stopped"] and trunc
        assert goal_count(env) == n, "a goal was written after stop()"
        assert [s.actual for s in servos.values()] == present, "the arm kept moving after stop()"
        env.resume()
        obs, _ = env.reset()
        np.testing.assert_allclose(obs["ee_pose"][:3], env.config.home_pose[:3], atol=0.005)
        np.testing.assert_allclose(env._joint_target, obs["joints"][:5], atol=1e-4)
        env.step(np.zeros(6))
        assert goal_count(env) > n
    finally:
        env.close()


def test_joint_mode_errors_name_the_problem():
    with pytest.raises(ValueError, match="xarm lacks"):
        make_robot_env("xarm", sim=True, action_mode="joints", sleep=lambda s: None)
    with pytest.raises(ValueError, match="joint_step_deg must have 5 values"):
        joint_env(joint_step_deg=[1.0, 1.0])
    with pytest.raises(ValueError, match="teleop"):
        make_robot_env("so101", sim=True, action_mode="joints", teleop={"type": "keyboard"})
    with pytest.raises(ValueError, match="action_mode must be one of"):
        make_robot_env("so101", sim=True, action_mode="joint")
