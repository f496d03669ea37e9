"""Franka ``motion="velocity"``: one ``CartesianVelocityMotion`` per control tick, capped by the per-step
limits and by the braking distance to the walls of the workspace box (``BrakingVelocityCap``).

The cap's arithmetic is checked directly; everything else runs against franky-sim (the real franky client
talking libfranka to a MuJoCo FR3 on loopback) at 25 Hz on the real clock, since a held twist is real
motion (25 Hz, not 50: a franky-sim step costs ~17 ms, which overruns a 20 ms period on a loaded machine). On a loaded machine the simulator runs slower than real time (measured 0.47x with two copies of
this file and a training job on 2 cores), so how far the arm gets is judged against the robot's own clock
(``robot.state.time``), never against wall-clock time. Every test measures the arm's pose in a background
thread (every ~2 ms) and prints the largest excursion past the box it saw.
"""

from __future__ import annotations

import importlib.util
import threading
import time

import numpy as np
import pytest

from robots import load_robot_config, make_robot_env
from robots.backend import RecordingBackend
from robots.franka import FrankaBackend, FrankaConfig
from robots.geometry import EEPose, matrix_to_rotvec, quat_to_matrix, rpy_to_matrix
from robots.safety import BrakingVelocityCap, SafetyConfig

needs_sim = pytest.mark.skipif(
    importlib.util.find_spec("franky") is None or importlib.util.find_spec("franky_sim") is None,
    reason="needs rlrm[robots-sim] (franky-control, franky-sim)",
)

FPS = 25
STEP_M = 0.008  # per-step limit: caps the speed at STEP_M * FPS = 0.2 m/s
STEP_RAD = 0.04  # 1 rad/s
OVERSHOOT_TOL_M = 0.002  # measured overshoot is ~0.01 mm; the issue allows 5 mm
ROT_TOL_RAD = 0.01


# ---------------------------------------------------------------- the cap's arithmetic (no simulator)
def test_stopping_speed_reacts_then_brakes_within_the_distance():
    cap = BrakingVelocityCap(SafetyConfig(), period_s=0.02, decel_m_s2=2.0, margin_m=0.001)
    distance = np.array([0.0, 0.0005, 0.001, 0.002, 0.01, 0.1, 1.0])
    v = cap.stopping_speed(distance)
    assert v[0] == v[1] == v[2] == 0.0  # inside the stand-off: no motion toward the wall
    travel = v * cap.reaction_s + v**2 / (2 * cap.decel_m_s2)  # coast for the reaction time, then brake
    np.testing.assert_allclose(travel[2:], distance[2:] - 0.001, rtol=1e-9)
    assert np.all(np.diff(v) >= 0)
    np.testing.assert_allclose(v[-1], np.sqrt(2 * 2.0 * 0.999), rtol=0.05)  # far away: ~sqrt(2 a d)
    with pytest.raises(ValueError, match="decel_m_s2 must be > 0"):
        BrakingVelocityCap(SafetyConfig(), period_s=0.02, decel_m_s2=0.0)


def test_twist_heads_for_the_target_within_step_and_braking_caps():
    box = SafetyConfig([0.3, -0.2, 0.05], [0.6, 0.2, 0.4], max_step_m=0.02, max_step_rad=0.1)
    cap = BrakingVelocityCap(box, period_s=0.1, decel_m_s2=1.0)
    middle = EEPose([0.45, 0.0, 0.2], np.eye(3))
    v, w = cap.twist(middle, EEPose([0.451, -0.002, 0.2], rpy_to_matrix([0.0, 0.0, 0.01])))
    np.testing.assert_allclose(v, [0.01, -0.02, 0.0], atol=1e-12)  # (target - current) / period
    np.testing.assert_allclose(w, [0.0, 0.0, 0.1], atol=1e-9)
    v, w = cap.twist(middle, EEPose([0.75, 0.4, 0.2], rpy_to_matrix([0.0, 0.0, 1.0])))
    assert np.linalg.norm(v) == pytest.approx(0.2) and np.linalg.norm(w) == pytest.approx(1.0)  # step / period
    np.testing.assert_allclose(v / np.linalg.norm(v), [0.6, 0.8, 0.0])  # direction kept
    near_lid = EEPose([0.45, 0.0, 0.395], np.eye(3))  # 5 mm below the lid
    v, _ = cap.twist(near_lid, EEPose([0.46, 0.0, 0.405], np.eye(3)))
    assert v[0] == pytest.approx(0.1)  # along the lid: not slowed
    assert v[2] == pytest.approx(float(cap.stopping_speed(0.005))) and v[2] < 0.2
    v, _ = cap.twist(near_lid, EEPose([0.45, 0.0, 0.375], np.eye(3)))
    assert v[2] == pytest.approx(-0.2)  # away from the lid: not slowed
    outside = EEPose([0.45, 0.0, 0.41], np.eye(3))
    v, _ = cap.twist(outside, EEPose([0.45, 0.0, 0.43], np.eye(3)))
    assert v[2] == 0.0  # past a wall: never further out
    with pytest.raises(ValueError, match="measured pose must be finite"):
        cap.twist(EEPose([np.nan, 0.0, 0.2], np.eye(3)), middle)


def test_velocity_config_checked_and_position_stays_default():
    assert load_robot_config("franka")["backend"]["motion"] == "position"
    assert load_robot_config("franka", sim=True)["backend"]["motion"] == "position"
    with pytest.raises(ValueError, match="motion must be 'position' or 'velocity', got 'torque'"):
        FrankaConfig(motion="torque")
    with pytest.raises(ValueError, match="brake_decel_fraction must be in"):
        FrankaConfig(brake_decel_fraction=1.5)
    with pytest.raises(ValueError, match="needs the env's safety limits and control period"):
        FrankaBackend(FrankaConfig(motion="velocity"))


# ---------------------------------------------------------------- on franky-sim
class PoseMonitor:
    """Samples the arm's end-effector pose every ~2 ms in a thread; reports the largest excursion past the box."""

    def __init__(self, backend, box: SafetyConfig) -> None:
        self.backend, self.box = backend, box
        self.positions: list[np.ndarray] = []
        self.rotations: list[np.ndarray] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            affine = self.backend.robot.current_cartesian_state.pose.end_effector_pose
            self.positions.append(np.asarray(affine.translation))
            self.rotations.append(quat_to_matrix(affine.quaternion))
            time.sleep(0.002)

    def __enter__(self) -> PoseMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def overshoot(self) -> np.ndarray:
        """(3,) m: per axis, the largest distance the arm was seen outside the box (0 if never)."""
        p = np.array(self.positions)
        return np.maximum(np.maximum(self.box.low - p, p - self.box.high).max(axis=0), 0.0)


def robot_seconds(backend) -> float:
    """The controller's clock (s): simulated time on franky-sim, real time on an arm."""
    return backend.robot.state.time.to_sec()


def wait_robot(backend, seconds: float) -> None:
    """Sleep until the controller's clock advanced by ``seconds``."""
    end = robot_seconds(backend) + seconds
    while robot_seconds(backend) < end:
        time.sleep(0.005)


@pytest.fixture(scope="module")
def velocity_env():
    env = make_robot_env(
        "franka", sim=True, fps=FPS, backend={"motion": "velocity"}, cameras={},
        safety={"max_step_m": STEP_M, "max_step_rad": STEP_RAD}, step_size_m=STEP_M, step_size_rad=STEP_RAD,
        reset_randomize_m=[0.0, 0.0, 0.0],
    )
    cap = env.backend.velocity_cap
    plain = cap.twist
    env.twists = []  # (measured position, target position, linear, angular) per command

    def recording(current, target):
        linear, angular = plain(current, target)
        env.twists.append((current.position.copy(), target.position.copy(), linear.copy(), angular.copy()))
        return linear, angular

    cap.twist = recording
    yield env
    env.close()


def check_twists(env, twists) -> None:
    """Every twist obeys the per-step speed caps and, per axis, the braking cap toward the wall ahead."""
    cap, box = env.backend.velocity_cap, env.config.safety
    for measured, _, linear, angular in twists:
        assert np.linalg.norm(linear) <= STEP_M * FPS + 1e-9 and np.linalg.norm(angular) <= STEP_RAD * FPS + 1e-9
        ahead = np.where(linear > 0, box.high - measured, measured - box.low)
        assert np.all(np.abs(linear) <= cap.stopping_speed(ahead) + 1e-12), (linear, measured)


@needs_sim
def test_velocity_wired_through_make_robot_env(velocity_env):
    backend = velocity_env.backend
    assert backend.config.motion == "velocity" and backend.period_s == pytest.approx(1 / FPS)
    assert backend.velocity_cap.config is velocity_env.config.safety
    # half of franky's translation deceleration x the sim config's dynamics factor 0.3
    expected = 0.5 * 0.3 * backend.robot.translation_acceleration_limit.get()
    assert backend.velocity_cap.decel_m_s2 == pytest.approx(expected)
    assert backend.velocity_cap.reaction_s == pytest.approx(2 / FPS)


@needs_sim
@pytest.mark.slow
def test_velocity_adversarial_actions_stay_in_box(velocity_env):
    """500 random / huge / NaN / inf / malformed actions (the shared adversarial set, episodes of 250):
    every commanded target obeys the limits, every twist obeys the caps, and the measured arm never
    leaves the box by more than OVERSHOOT_TOL_M (nor the rotation range by more than ROT_TOL_RAD).

    500, not the issue's 1000: on the real clock at 25 Hz, 1000 actions take ~35 s, and this file should
    stay well under 2 minutes on a loaded 2-core CI machine. The 1000-action check of the targets the
    same safety filter produces runs on franky-sim in test_robots_franka.py."""
    from test_robots_safety import run_and_check_targets

    inner = velocity_env.backend
    rec = RecordingBackend(inner)
    velocity_env.backend = rec
    velocity_env.twists.clear()
    box = velocity_env.config.safety
    try:
        with PoseMonitor(inner, box) as monitor:
            run_and_check_targets(velocity_env, rec, n=500, episode_len=250)
    finally:
        velocity_env.backend = inner
    overshoot = monitor.overshoot()
    rel = np.array([matrix_to_rotvec(velocity_env.safety.home_rotation.T @ r) for r in monitor.rotations])
    rot_excess = np.maximum(np.abs(rel) - np.asarray(box.rotation_range_rad), 0.0).max(axis=0)
    spread = np.ptp(np.array(monitor.positions), axis=0)
    print(f"\nadversarial: {len(velocity_env.twists)} twists, {len(monitor.positions)} pose samples, spread "
          f"{np.round(spread * 1e3).tolist()} mm, max overshoot "
          f"per axis {np.round(overshoot * 1e3, 3).tolist()} mm, past the rotation range "
          f"{np.round(rot_excess, 4).tolist()} rad")
    check_twists(velocity_env, velocity_env.twists)
    assert len(velocity_env.twists) > 300  # the NaN/inf/malformed actions raise instead of stepping
    assert np.all(overshoot <= OVERSHOOT_TOL_M), overshoot
    assert np.all(rot_excess <= ROT_TOL_RAD), rot_excess
    assert spread.min() > 0.02, f"the arm hardly moved: spread {spread} m"


@needs_sim
@pytest.mark.slow
@pytest.mark.parametrize("axis", [0, 1, 2], ids=["x", "y", "z"])
def test_velocity_driven_into_each_wall_stops_at_it(velocity_env, axis):
    """Full action into the lower, then the upper face of ``axis``: the arm reaches the face (within 1 mm)
    no later than it could at the speed cap plus 0.6 s of robot time (a cap that crawls fails this), keeps
    being pushed for 25 more ticks, and is never seen further than OVERSHOOT_TOL_M past the face."""
    box = velocity_env.config.safety
    results = []
    for sign in (-1.0, 1.0):
        velocity_env.reset()
        velocity_env.twists.clear()
        action = np.zeros(5)
        action[axis], action[-1] = sign, 1.0
        wall = box.high[axis] if sign > 0 else box.low[axis]
        start = velocity_env.backend.read_state().pose.position[axis]
        budget = abs(wall - start) / (STEP_M * FPS) + 0.6  # robot seconds
        t0 = robot_seconds(velocity_env.backend)
        with PoseMonitor(velocity_env.backend, box) as monitor:
            reached_s = None
            for _ in range(1000):
                obs, _, _, _, info = velocity_env.step(action)
                if abs(obs["ee_pose"][axis] - wall) <= 0.001:
                    reached_s = robot_seconds(velocity_env.backend) - t0
                    break
                if robot_seconds(velocity_env.backend) - t0 > budget:
                    break
            for _ in range(25):
                obs, _, _, _, info = velocity_env.step(action)
        overshoot = monitor.overshoot()[axis]
        results.append((sign, overshoot, reached_s, budget))
        print(f"\naxis {'xyz'[axis]} face {'+' if sign > 0 else '-'}: reached in {reached_s} s robot time "
              f"(budget {budget:.2f} s), max overshoot {overshoot * 1e3:.3f} mm, "
              f"final gap {abs(obs['ee_pose'][axis] - wall) * 1e3:.2f} mm")
        assert info["clipped_workspace"]
        check_twists(velocity_env, velocity_env.twists)
        assert reached_s is not None, f"did not reach the {'xyz'[axis]} face within {budget:.2f} s of robot time"
        assert abs(obs["ee_pose"][axis] - wall) <= 0.001  # holds at the wall
    assert max(r[1] for r in results) <= OVERSHOOT_TOL_M, results


@needs_sim
def test_velocity_stalled_control_loop_brakes_inside_box(velocity_env):
    """Each twist is held for one period only: if the loop stops ticking (a stalled policy), the arm
    brakes by itself. Driving up at full speed and stalling at several distances from the lid, the arm
    comes to rest within the braking budget of its speed and inside the box."""
    box, backend = velocity_env.config.safety, velocity_env.backend
    cap = backend.velocity_cap
    for stall_gap in (0.06, 0.02, 0.01, 0.004):
        velocity_env.reset()
        with PoseMonitor(backend, box) as monitor:
            obs, *_ = velocity_env.step(np.array([0.0, 0.0, 1.0, 0.0, 1.0]))
            while box.high[2] - obs["ee_pose"][2] > stall_gap:
                obs, *_ = velocity_env.step(np.array([0.0, 0.0, 1.0, 0.0, 1.0]))
            _, _, speed, _ = velocity_env.twists[-1][:4]
            z0 = backend.read_state().pose.position[2]
            wait_robot(backend, 0.3)  # no ticks: hold one period, then franky brakes
            z1 = backend.read_state().pose.position[2]
            wait_robot(backend, 0.1)
        coast = z1 - z0
        budget = speed[2] * cap.reaction_s + speed[2] ** 2 / (2 * cap.decel_m_s2)
        print(f"\nstalled {(box.high[2] - z0) * 1e3:.1f} mm below the lid at {speed[2]:.3f} m/s: coasted "
              f"{coast * 1e3:.2f} mm (budget {budget * 1e3:.2f} mm), overshoot {monitor.overshoot()[2] * 1e3:.3f} mm")
        assert abs(backend.read_state().pose.position[2] - z1) < 0.0005, "still moving after the stall"
        assert coast <= budget + 0.001
        assert monitor.overshoot()[2] <= OVERSHOOT_TOL_M


@needs_sim
def test_velocity_stop_halts_motion_within_one_tick(velocity_env):
    """``env.stop()`` at full speed: the arm travels less than one tick at the speed cap, then stays put;
    no twist is sent after the stop; resume + recover + reset reach home."""
    velocity_env.reset()
    backend = velocity_env.backend
    for _ in range(20):
        velocity_env.step(np.array([0.0, -1.0, 0.0, 0.0, 1.0]))
    speed = abs(velocity_env.twists[-1][2][1])
    assert speed > 0.15, f"not moving at speed before the stop ({speed} m/s)"
    sent = len(velocity_env.twists)
    at_stop = backend.read_state().pose.position
    velocity_env.stop()
    wait_robot(backend, 0.3)
    p0 = backend.read_state().pose.position
    wait_robot(backend, 0.3)
    p1 = backend.read_state().pose.position
    coast = np.linalg.norm(p0 - at_stop)
    print(f"\nstop at {speed:.3f} m/s: coasted {coast * 1e3:.2f} mm (one tick at the cap: {STEP_M * 1e3:.1f} mm)")
    assert coast < STEP_M, coast
    assert np.linalg.norm(p1 - p0) < 0.0005, f"still moving after stop: {p1 - p0}"
    _, _, _, truncated, info = velocity_env.step(np.array([0.0, -1.0, 0.0, 0.0, 1.0]))
    assert truncated and info["stopped"] and len(velocity_env.twists) == sent
    velocity_env.resume()
    backend.recover()
    obs, _ = velocity_env.reset()
    np.testing.assert_allclose(obs["ee_pose"][:3], velocity_env.config.home_pose[:3], atol=0.003)


@needs_sim
def test_velocity_reaches_a_target_inside_the_box(velocity_env):
    """A policy steering to a point inside the box gets within 2 mm no later than the speed cap allows
    plus 0.6 s of robot time. It may swing past the target (the twist is (target - current) / period and
    the arm needs a few ticks to change speed; measured 1-6 mm, bounded here at 1.5 steps) and settles
    within 1 mm of it within 1 s of robot time."""
    obs, _ = velocity_env.reset()
    backend = velocity_env.backend
    goal = obs["ee_pose"][:3] + np.array([0.08, -0.12, -0.06])
    assert velocity_env.config.safety.contains(goal)
    budget = np.linalg.norm(goal - obs["ee_pose"][:3]) / (STEP_M * FPS) + 0.6

    def toward_goal(obs):
        return np.r_[np.clip((goal - obs["ee_pose"][:3]) / STEP_M, -1.0, 1.0), 0.0, 1.0]

    t0, reached_s = robot_seconds(backend), None
    for _ in range(1000):
        obs, *_ = velocity_env.step(toward_goal(obs))
        if np.linalg.norm(obs["ee_pose"][:3] - goal) <= 0.002:
            reached_s = robot_seconds(backend) - t0
            break
        if robot_seconds(backend) - t0 > budget:
            break
    errors, t1 = [], robot_seconds(backend)
    while robot_seconds(backend) - t1 < 1.0:
        obs, *_ = velocity_env.step(toward_goal(obs))
        errors.append(np.linalg.norm(obs["ee_pose"][:3] - goal))
    print(f"\ntarget {np.linalg.norm(goal - velocity_env.config.home_pose[:3]) * 1e3:.0f} mm away: reached in "
          f"{reached_s} s robot time (budget {budget:.2f} s), then within {max(errors) * 1e3:.2f} mm, "
          f"finally {errors[-1] * 1e3:.2f} mm")
    assert reached_s is not None, f"did not get within 2 mm of the target in {budget:.2f} s of robot time"
    assert max(errors) <= 1.5 * STEP_M and errors[-1] <= 0.001, errors


class PlannerFailsOnce:
    """A franky ``Robot`` whose next ``poll_motion`` raises the error franky reports for a failed motion plan."""

    def __init__(self, robot) -> None:
        self.robot, self.failed = robot, False

    def poll_motion(self):
        if not self.failed:
            self.failed = True
            raise RuntimeError("Motion planner failed with error code -110")
        return self.robot.poll_motion()

    def __getattr__(self, item):
        return getattr(self.robot, item)


@needs_sim
def test_velocity_failed_motion_plan_is_recovered(velocity_env):
    """franky raises a sporadic ruckig failure of the previous motion as a plain RuntimeError (seen once in
    about ten runs of franky-sim at 50 Hz); the backend reports it as a ControllerError, so the env recovers
    and the step still moves the arm."""
    obs, _ = velocity_env.reset()
    backend = velocity_env.backend
    robot = backend.robot
    backend.robot = failing = PlannerFailsOnce(robot)
    try:
        _, _, _, _, info = velocity_env.step(np.array([1.0, 0.0, 0.0, 0.0, 1.0]))
        assert failing.failed and info["recovered"] == 1
    finally:
        backend.robot = robot
        # the raised error's traceback holds the proxy; a franky Robot it kept alive past the simulator's
        # shutdown would block the garbage collector in its destructor
        failing.robot = None
    for _ in range(10):
        obs2, *_ = velocity_env.step(np.array([1.0, 0.0, 0.0, 0.0, 1.0]))
    assert obs2["ee_pose"][0] - obs["ee_pose"][0] > 0.01
