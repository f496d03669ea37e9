"""Safety limits of the robot envs: every limit in robots.safety / robots.base has a test here.

Runs on the simulated backends (kinematic arm, fake xArm controller, emulated SO-101 servo bus);
the Franka on franky-sim is in test_robots_franka.py.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from robots import make_robot_env
from robots.backend import ControllerError, RecordingBackend, RobotError
from robots.base import RobotEnv, RobotEnvConfig, RobotStoppedError
from robots.geometry import (
    EEPose,
    matrix_to_quat,
    matrix_to_rotvec,
    matrix_to_rpy,
    quat_to_matrix,
    rotation_angle,
    rotvec_to_matrix,
    rpy_to_matrix,
)
from robots.safety import (
    RateLimiter,
    ReachFilter,
    SafetyConfig,
    SafetyFilter,
    UnsafeActionError,
    check_action,
)
from robots.sim.kinematic import KinematicBackend


class FakeClock:
    """Time that only moves when the rate limiter sleeps or a test advances it."""

    def __init__(self) -> None:
        self.t = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        assert s >= 0, f"negative sleep {s}"
        self.sleeps.append(s)
        self.t += s


def kinematic_env(**cfg) -> tuple[RobotEnv, RecordingBackend, FakeClock]:
    clock = FakeClock()
    rec = RecordingBackend(KinematicBackend())
    cfg.setdefault("action_mode", "xyz_rpy")
    env = RobotEnv(rec, RobotEnvConfig(**cfg), clock=clock, sleep=clock.sleep)
    return env, rec, clock


def adversarial_actions(n: int, dim: int, seed: int = 0):
    """Random, huge, NaN/inf and wrongly shaped actions; yields (action, is_invalid)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        kind = i % 5
        if kind == 0:
            yield rng.uniform(-1, 1, dim), False
        elif kind == 1:
            yield rng.uniform(-1e6, 1e6, dim), False
        elif kind == 2:
            yield np.sign(rng.uniform(-1, 1, dim)) * 50.0, False
        elif kind == 3:
            a = rng.uniform(-1, 1, dim)
            a[rng.integers(dim)] = rng.choice([np.nan, np.inf, -np.inf])
            yield a, True
        elif i % 10 == 4:
            yield rng.uniform(-1, 1, dim + 1), True
        else:  # push the same way for a whole stretch: drives the arm into the walls of the box
            yield np.sign(np.sin(np.arange(dim) * 1.7 + i // 150)) * 1e3, False


def run_and_check_targets(env: RobotEnv, rec: RecordingBackend, n: int = 1000, episode_len: int = 100) -> int:
    """Drive ``n`` adversarial actions through ``env``; assert every commanded target obeys the limits."""
    cfg = env.config.safety
    dim = env.action_space.shape[0]
    invalid = 0
    env.reset(seed=0)
    prev = env._target.copy()
    checked = 0
    start_index = len(rec.commands)
    for i, (action, bad) in enumerate(adversarial_actions(n, dim)):
        if i and i % episode_len == 0:
            env.reset()
            start_index = len(rec.commands)
            prev = env._target.copy()
        before = len(rec.commands)
        if bad:
            with pytest.raises(UnsafeActionError):
                env.step(action)
            invalid += 1
            # the robot held: at most one re-command of the previous target
            for _, pose, _ in rec.commands[before:]:
                np.testing.assert_allclose(pose.position, prev.position)
            continue
        env.step(action)
        for kind, pose, gripper in rec.commands[max(before, start_index):]:
            assert kind == "step"
            assert cfg.contains(pose.position), f"target {pose.position} outside {cfg.low}..{cfg.high}"
            step = np.linalg.norm(pose.position - prev.position)
            assert step <= cfg.max_step_m + 1e-9, f"translation step {step} > {cfg.max_step_m}"
            ang = rotation_angle(prev.rotation, pose.rotation)
            assert ang <= cfg.max_step_rad + 1e-6, f"rotation step {ang} > {cfg.max_step_rad}"
            rel = matrix_to_rotvec(env.safety.home_rotation.T @ pose.rotation)
            assert np.all(np.abs(rel) <= np.asarray(cfg.rotation_range_rad) + 1e-6)
            assert 0.0 <= gripper <= 1.0
            prev = pose
            checked += 1
    assert invalid > 0 and checked > n // 2
    return checked


# ---------------------------------------------------------------- geometry and filter units
def test_rotation_conversions_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        rpy = rng.uniform([-3, -1.5, -3], [3, 1.5, 3])
        rot = rpy_to_matrix(rpy)
        np.testing.assert_allclose(rpy_to_matrix(matrix_to_rpy(rot)), rot, atol=1e-9)
        np.testing.assert_allclose(quat_to_matrix(matrix_to_quat(rot)), rot, atol=1e-9)
        np.testing.assert_allclose(rotvec_to_matrix(matrix_to_rotvec(rot)), rot, atol=1e-9)


def test_check_action_rejects_nan_inf_and_shape():
    assert check_action([0.1, 0.2], 2).dtype == np.float64
    with pytest.raises(UnsafeActionError, match=r"finite.*index \[1\]"):
        check_action([0.0, np.nan], 2)
    with pytest.raises(UnsafeActionError, match=r"shape \(3,\)"):
        check_action([0.0, 1.0], 3)
    with pytest.raises(UnsafeActionError):
        check_action("left", 3)
    with pytest.raises(UnsafeActionError, match="shape"):
        check_action([[1.0, 2.0], [3.0]], 3)
    with pytest.raises(UnsafeActionError):
        check_action(None, 3)


def test_safety_config_rejects_bad_boxes():
    with pytest.raises(ValueError, match="workspace_low must be < workspace_high"):
        SafetyConfig(workspace_low=[0.5, 0, 0], workspace_high=[0.4, 1, 1])
    with pytest.raises(ValueError, match="max_step_m"):
        SafetyConfig(max_step_m=0.0)
    with pytest.raises(ValueError, match="outside the workspace"):
        RobotEnvConfig(home_pose=[2.0, 0, 0.2, 0, 0, 0])


def test_filter_clips_workspace_step_and_rotation():
    cfg = SafetyConfig(workspace_low=[0, 0, 0], workspace_high=[1, 1, 1], max_step_m=0.05, max_step_rad=0.1,
                       rotation_range_rad=[0.2, 0.2, 0.2])
    f = SafetyFilter(cfg, np.eye(3))
    prev = EEPose([0.99, 0.5, 0.5], np.eye(3))
    out = f.apply(EEPose([1.5, 0.5, 0.5], rpy_to_matrix([0, 0, 1.0])), prev)
    assert out.clipped_workspace and out.clipped_step and out.clipped_rotation
    assert out.pose.position[0] == pytest.approx(1.0)
    assert rotation_angle(prev.rotation, out.pose.rotation) == pytest.approx(0.1)
    inside = f.apply(EEPose([0.98, 0.5, 0.5], np.eye(3)), prev)
    assert not inside.clipped


def test_reach_filter_moves_back_along_the_step_or_holds():
    box = SafetyConfig([0.3, -0.2, 0.05], [0.6, 0.2, 0.4])
    f = ReachFilter(box)
    start = np.array([0.45, 0.0, 0.38])
    previous = EEPose(start, np.eye(3))
    target = EEPose([0.47, 0.0, 0.40], np.eye(3))

    def bows(pose):  # an arm whose way to the target passes 1 cm above it
        return np.stack([start, pose.position + [0.0, 0.0, 0.01], pose.position])

    pose, clipped = f.apply(target, previous, bows)
    assert clipped and f.excursion(bows(pose)) <= 1e-9
    np.testing.assert_allclose(pose.position, [0.46, 0.0, 0.39], atol=1e-4)  # on the segment, 1 cm below the lid
    straight = lambda p: np.stack([start, p.position])  # noqa: E731
    assert f.apply(target, previous, straight) == (target, False)  # a way inside: untouched

    def falls_short(pose):  # joints that end short in x of targets beyond x = 0.46 (half of the way past it)
        return np.stack([start, pose.position - [max(pose.position[0] - 0.46, 0.0) * 0.5, 0.0, 0.0]])

    pose, clipped = f.apply(target, previous, falls_short)
    assert clipped and pose.position[0] == pytest.approx(0.462, abs=1e-4)  # the farthest target missed by <= 1 mm

    def unreachable_beyond(pose):
        if pose.position[0] > 0.455:
            raise ControllerError("out of reach")
        return np.stack([start, pose.position])

    pose, clipped = f.apply(target, previous, unreachable_beyond)
    assert clipped and pose.position[0] == pytest.approx(0.455, abs=1e-4)
    # a tool already outside (within reset's tolerance) may move on a way no farther out, toward a target inside
    outside = np.array([0.45, 0.0, 0.405])
    way_from_outside = lambda p: np.stack([outside, (outside + p.position) / 2, p.position])  # noqa: E731
    assert f.apply(target, EEPose(outside, np.eye(3)), way_from_outside) == (target, False)
    # and nothing is sent whose solved joints end outside: the previous target is held
    ends_above = lambda p: np.stack([start, p.position + [0.0, 0.0, 0.03]])  # noqa: E731
    pose, clipped = f.apply(target, previous, ends_above)
    assert clipped and np.array_equal(pose.position, previous.position)


# ---------------------------------------------------------------- rate limiter
def test_rate_limiter_holds_fps_with_injected_clock():
    clock = FakeClock()
    rl = RateLimiter(20, clock=clock, sleep=clock.sleep)
    rl.reset()
    t0 = clock.t
    for work in [0.0, 0.01, 0.049, 0.02]:
        clock.t += work
        assert rl.wait() == 0.0
    assert clock.t == pytest.approx(t0 + 4 * 0.05)
    assert rl.overruns == 0


def test_rate_limiter_counts_overruns_and_does_not_burst(caplog):
    clock = FakeClock()
    rl = RateLimiter(10, clock=clock, sleep=clock.sleep)
    rl.reset()
    clock.t += 0.25  # a slow policy step
    assert rl.wait() == pytest.approx(0.15)
    assert rl.overruns == 1 and "overran" in caplog.text
    before = clock.t
    rl.wait()  # the next tick is a full period later, not immediately (no catch-up burst)
    assert clock.t - before == pytest.approx(0.1)


def test_env_steps_at_configured_fps():
    env, _, clock = kinematic_env(fps=25)
    env.reset(seed=0)
    t0 = clock.t
    for _ in range(10):
        env.step(np.zeros(7))
    assert clock.t - t0 == pytest.approx(10 / 25, abs=1e-3)
    assert env.rate.overruns == 0


# ---------------------------------------------------------------- 1000 adversarial actions
def test_kinematic_1000_adversarial_actions_stay_safe():
    # step sizes above the per-step limits, so that the limits (not the action scaling) must hold
    env, rec, _ = kinematic_env(step_size_m=0.05, step_size_rad=0.3)
    run_and_check_targets(env, rec, n=1000)


@pytest.mark.parametrize("name", ["xarm", "so101"])
def test_sim_robot_1000_adversarial_actions_stay_safe(name):
    if name == "so101":
        pytest.importorskip("scservo_sdk", reason="needs rlrm[robots] (feetech-servo-sdk)")
    clock = FakeClock()
    env = make_robot_env(name, sim=True, clock=clock, sleep=clock.sleep, reset_randomize_m=[0.01, 0.01, 0.0])
    env.config.step_size_m = 3 * env.config.safety.max_step_m
    env.config.step_size_rad = 3 * env.config.safety.max_step_rad
    rec = RecordingBackend(env.backend)
    env.backend = rec
    try:
        run_and_check_targets(env, rec, n=1000)
        cfg = env.config.safety
        if name == "xarm":  # what reached the controller, in its units
            api = rec.inner.api
            servo = np.array(api.servo_log)
            assert len(servo) > 500
            assert np.all(servo[:, :3] >= cfg.low * 1000 - 1e-6) and np.all(servo[:, :3] <= cfg.high * 1000 + 1e-6)
            assert api.error_code == 0, "the controller fence tripped: a target left the box"
        else:  # every goal the servos received maps (FK) into the box
            backend = rec.inner
            servos = backend.bus.port.servos
            n_goals = min(len(s.goal_log) for s in servos.values())
            assert n_goals > 500
            from robots.feetech import normalize
            from robots.so101 import BODY, SO101_MOTORS

            for k in range(0, n_goals, 7):
                deg = np.array([normalize(servos[SO101_MOTORS[m]].goal_log[k], backend.calibration[m], "degrees") for m in BODY])
                pos = backend.kin.forward(backend._to_kinematic(np.append(deg, 0))).position
                assert cfg.contains(pos, tol=0.002), f"goal {k} reaches {pos}"
    finally:
        env.close()


# ---------------------------------------------------------------- NaN holds, stop, recovery, reset
def test_nan_action_raises_and_robot_holds():
    env, rec, _ = kinematic_env()
    env.reset(seed=0)
    env.step(np.array([1, 0, 0, 0, 0, 0, 1.0]))
    held = env._target.copy()
    n = len(rec.commands)
    with pytest.raises(UnsafeActionError, match="finite"):
        env.step(np.array([np.nan, 0, 0, 0, 0, 0, 1.0]))
    assert len(rec.commands) == n + 1  # one hold command ...
    np.testing.assert_allclose(rec.commands[-1][1].position, held.position)  # ... of the previous target


def test_stop_from_another_thread_halts_within_one_tick():
    env, rec, _ = kinematic_env()
    env.reset(seed=0)
    stopped = threading.Event()
    steps_after_stop: list[dict] = []

    def policy_loop():
        # keeps stepping until it has taken a few steps after the stop (a fixed step count could end first)
        i = 0
        while len(steps_after_stop) < 5 and i < 100_000:
            _, _, _, trunc, info = env.step(np.array([1, 1, 0, 0, 0, 0, 1.0]) * (-1) ** (i // 20))
            if stopped.is_set():
                steps_after_stop.append(info)
            i += 1

    worker = threading.Thread(target=policy_loop)
    worker.start()
    while len(rec.commands) < 30:
        pass
    env.stop()
    commands_at_stop = len(rec.commands)
    pose_at_stop = rec.inner.pose.position.copy()
    stopped.set()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert len(rec.commands) == commands_at_stop, "a motion command was sent after stop()"
    assert rec.stops >= 1 and rec.inner.halted
    np.testing.assert_allclose(rec.inner.pose.position, pose_at_stop)
    assert steps_after_stop and all(info["stopped"] for info in steps_after_stop)
    with pytest.raises(RobotStoppedError, match="resume"):
        env.reset()
    env.resume()
    env.reset()
    env.step(np.zeros(7))
    assert len(rec.commands) > commands_at_stop


def test_controller_error_is_recovered():
    env, rec, _ = kinematic_env()
    env.reset(seed=0)
    rec.inner.inject_error(count=2)
    _, _, _, _, info = env.step(np.array([1, 0, 0, 0, 0, 0, 1.0]))
    assert info["recovered"] == 2 and rec.inner.recoveries == 2


def test_hold_after_a_nan_action_recovers_a_controller_error():
    # a failed earlier motion surfaces on the hold command (franky re-raises it on the next move): the caller
    # still gets the refusal of its NaN action, and the robot is recovered and holding
    env, rec, _ = kinematic_env()
    env.reset(seed=0)
    env.step(np.array([1, 0, 0, 0, 0, 0, 1.0]))
    rec.inner.inject_error(count=1)
    with pytest.raises(UnsafeActionError, match="finite"):
        env.step(np.array([np.nan, 0, 0, 0, 0, 0, 1.0]))
    assert rec.inner.recoveries == 1
    _, _, _, _, info = env.step(np.array([1, 0, 0, 0, 0, 0, 1.0]))
    assert info["recovered"] == 0


def test_unrecoverable_controller_error_raises_clearly():
    env, rec, _ = kinematic_env(max_recover_attempts=2)
    env.reset(seed=0)
    rec.inner.inject_error(count=1, unrecoverable=True)
    with pytest.raises(RobotError, match="not cleared after 2 recovery attempts"):
        env.step(np.zeros(7))


def test_xarm_controller_error_recovered_through_sdk_sequence():
    env = make_robot_env("xarm", sim=True, sleep=lambda s: None)
    try:
        env.reset(seed=0)
        api = env.backend.api
        api.inject_error(31)  # abnormal current
        _, _, _, _, info = env.step(np.array([1.0, 0, 0, 0, 1.0]))
        assert info["recovered"] == 1
        assert api.error_code == 0 and api.mode == 1 and api.state != 4
    finally:
        env.close()


@pytest.mark.parametrize("name", ["xarm", "so101"])
def test_reset_reaches_home_and_randomises_inside_box(name):
    if name == "so101":
        pytest.importorskip("scservo_sdk", reason="needs rlrm[robots] (feetech-servo-sdk)")
    env = make_robot_env(name, sim=True, sleep=lambda s: None, reset_randomize_m=[0.02, 0.02, 0.0])
    try:
        home = np.asarray(env.config.home_pose[:3])
        starts = []
        for seed in range(3):
            obs, info = env.reset(seed=seed)
            starts.append(obs["ee_pose"][:3])
            assert np.all(np.abs(obs["ee_pose"][:3] - home) <= np.array([0.02, 0.02, 0.0]) + 0.003)
            assert env.config.safety.contains(obs["ee_pose"][:3], tol=1e-6)
            assert info["task"] == env.unwrapped.task
        assert np.ptp(np.array(starts), axis=0)[:2].max() > 1e-3  # randomised
        env.config.reset_randomize_m = [0.0, 0.0, 0.0]
        obs, _ = env.reset()
        np.testing.assert_allclose(obs["ee_pose"][:3], home, atol=0.003)
    finally:
        env.close()


def test_reset_waits_for_person_via_callback_or_input(monkeypatch):
    calls = []
    env, _, _ = kinematic_env()
    env.reset_callback = calls.append
    env.reset()
    assert calls == [env]
    prompts = []
    env.reset_callback = None
    env.config.wait_for_person = True
    monkeypatch.setattr("builtins.input", lambda prompt="": prompts.append(prompt) or "")
    env.reset()
    assert len(prompts) == 1 and env.task in prompts[0]
    env.config.wait_for_person = False
    env.reset()
    assert len(prompts) == 1


def test_step_before_reset_is_an_error():
    env, _, _ = kinematic_env()
    with pytest.raises(RuntimeError, match="before calling env.reset"):
        env.step(np.zeros(7))


def test_sigint_stops_the_robot_then_interrupts():
    import signal

    env, rec, _ = kinematic_env()
    env.reset(seed=0)
    before = signal.getsignal(signal.SIGINT)
    env.install_sigint_stop()
    signal.raise_signal(signal.SIGINT)
    assert env.stopped and rec.stops == 1
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
    env.close()
    env.close()  # idempotent


def test_episode_truncates_at_max_episode_steps():
    env, _, _ = kinematic_env(max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(np.zeros(7))[3] for _ in range(3)]
    assert flags == [False, False, True]
    env.reset()
    assert env.step(np.zeros(7))[3] is False


def test_xarm_controller_fence_matches_workspace_and_trips_on_bypass():
    env = make_robot_env("xarm", sim=True, sleep=lambda s: None)
    try:
        env.reset(seed=0)
        api, cfg = env.backend.api, env.config.safety
        margin = env.backend.config.fence_margin_m * 1000
        x_max, x_min, y_max, y_min, z_max, z_min = api.boundary
        np.testing.assert_allclose([x_min, y_min, z_min], cfg.low * 1000 - margin)
        np.testing.assert_allclose([x_max, y_max, z_max], cfg.high * 1000 + margin)
        assert api.fence_on and api.reduced_mode
        # a target that skips the env's filter (a bug) is refused by the controller: error C35
        outside = EEPose(cfg.high + 0.1, env.backend.read_state().pose.rotation)
        with pytest.raises(ControllerError, match="error_code=35"):
            env.backend.command_ee(outside, 1.0)
        env.backend.recover()
        assert api.error_code == 0
        env.step(np.zeros(5))
    finally:
        env.close()
