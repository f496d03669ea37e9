"""The *measured* end effector stays in the workspace box (issue 16), not only the commanded target.

For every arm against its simulator (Franka on franky-sim, xArm on the fake controller, SO-101 on the
emulated Feetech bus) and every Cartesian action mode, 1000 saturating, random, huge and NaN actions
(franky-sim runs on the real clock: 1000 in its configured mode, 200 in the others): the pose read back
after each step is never more than ``TOL_M`` outside the box. On the SO-101 a commanded pose inside the
box was not enough (6 mm out before the fix): servos moving independently at top speed left the line
between the joint goals, and nothing checked the forward kinematics of the goals or of the way to them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pytest
from test_robots_safety import FakeClock

from robots import make_robot_env
from robots.safety import UnsafeActionError

TOL_M = 0.002  # the bound: measured pose never more than 2 mm outside the box
MODES = ["xyz", "xyz_yaw", "xyz_rpy"]
STEPS = 1000
EPISODE_LEN = 200
FRANKA_FPS = 50  # franky-sim runs on the real clock: the arm must have time to reach the walls
# 1000 actions in the configured mode; the other two modes share the same filter path, and each
# franky-sim action costs a real 1/FRANKA_FPS s
FRANKA_STEPS = {"xyz_yaw": 1000, "xyz": 200, "xyz_rpy": 200}

logger = logging.getLogger(__name__)


def adversarial_actions(n: int, dim: int, seed: int = 0):
    """Yield ``(action, is_nan)``: saturating random, uniform, huge, NaN/inf, and sustained wall pushes."""
    rng = np.random.default_rng(seed)
    push = np.ones(dim)
    for i in range(n):
        if i % 100 == 0:  # a new direction to push in for the next stretch: corners and walls
            push = rng.choice([-1.0, 1.0], dim)
        kind = i % 8
        if kind < 3:
            yield rng.choice([-1.0, 1.0], dim), False
        elif kind == 3:
            yield rng.uniform(-1.0, 1.0, dim), False
        elif kind == 4:
            yield rng.uniform(-1e6, 1e6, dim), False
        elif kind == 5:
            action = rng.choice([-1.0, 1.0], dim)
            action[rng.integers(dim)] = rng.choice([np.nan, np.inf, -np.inf])
            yield action, True
        else:
            yield push * rng.choice([1.0, 1e3]), False


def outside_m(box, position) -> float:
    """How far (m) ``position`` lies outside the box (0 inside)."""
    p = np.asarray(position, dtype=float)
    return float(np.max(np.maximum(box.low - p, 0.0) + np.maximum(p - box.high, 0.0)))


def drive(env, n: int = STEPS, seed: int = 0, after_step: Callable[[dict], None] | None = None) -> dict:
    """Run ``n`` adversarial actions (episodes of EPISODE_LEN); the measured excursion after every step.

    ``after_step(info)`` runs after every executed (not NaN) action, for backend-specific checks.
    """
    box = env.config.safety
    dim = env.action_space.shape[0]
    worst, outside, nan_held, where, reach_clipped = 0.0, 0, 0, None, 0
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    env.reset(seed=seed)
    for i, (action, is_nan) in enumerate(adversarial_actions(n, dim, seed)):
        if i and i % EPISODE_LEN == 0:
            env.reset()
        if is_nan:
            with pytest.raises(UnsafeActionError, match="finite"):
                env.step(action)
            nan_held += 1
            measured = env.backend.read_state().pose.position
        else:
            obs, _, _, _, info = env.step(action)
            measured = obs["ee_pose"][:3]
            assert box.contains(info["commanded_pose"][:3]), info["commanded_pose"]
            reach_clipped += info.get("clipped_reach", False)
            if after_step is not None:
                after_step(info)
        excursion = outside_m(box, measured)
        lo, hi = np.minimum(lo, measured), np.maximum(hi, measured)
        outside += excursion > 1e-6
        if excursion > worst:
            worst, where = excursion, (i, np.round(measured, 4).tolist())
    assert nan_held > n // 10
    return {
        "worst_mm": worst * 1e3, "steps_outside": outside, "worst_at": where, "reach_clipped": reach_clipped,
        "gap_low_mm": np.round((lo - box.low) * 1e3, 1).tolist(),
        "gap_high_mm": np.round((box.high - hi) * 1e3, 1).tolist(),
    }


def check(name: str, mode: str, result: dict, min_walls: int = 0) -> None:
    """Report the numbers and assert the bound; ``min_walls``: box faces the arm must have come within TOL_M of."""
    logger.info("%s %s: %s", name, mode, result)
    print(f"\n{name} {mode}: worst measured excursion {result['worst_mm']:.3f} mm, "
          f"{result['steps_outside']} steps outside, worst at {result['worst_at']}, "
          f"{result['reach_clipped']} targets moved back by the reach check, closest approach to the "
          f"walls (mm) low {result['gap_low_mm']} high {result['gap_high_mm']}")
    assert result["worst_mm"] <= TOL_M * 1e3, (
        f"{name} {mode}: measured end effector {result['worst_mm']:.2f} mm outside the box "
        f"(step, position m: {result['worst_at']}); expected at most {TOL_M * 1e3:.0f} mm"
    )
    walls = sum(gap <= TOL_M * 1e3 for gap in result["gap_low_mm"] + result["gap_high_mm"])
    assert walls >= min_walls, f"{name} {mode}: the arm came near only {walls} walls, expected {min_walls}: {result}"


class SO101SentGoals:
    """After each step: where the goals the emulated servos received put the tool, vs the box and the step's report."""

    def __init__(self, env) -> None:
        self.env = env
        self.worst_outside_m = 0.0  # FK of a goal sent
        self.worst_miss_m = 0.0  # FK of the joints solved for the reported commanded pose vs that pose
        self.cut_short = 0  # goals that are a step toward the solved joints, cut at the per-command joint limit

    def __call__(self, info: dict) -> None:
        from robots.feetech import normalize
        from robots.so101 import BODY, SO101_MOTORS

        backend = self.env.backend
        servos = backend.bus.port.servos
        goals = np.array([normalize(servos[SO101_MOTORS[m]].goal_log[-1], backend.calibration[m], "degrees")
                          for m in BODY])
        tip = backend.joint_pose(goals).position
        self.worst_outside_m = max(self.worst_outside_m, outside_m(self.env.config.safety, tip))
        commanded = info["commanded_pose"]  # [x, y, z, roll, pitch, yaw]: the IK takes the yaw
        solved = backend.quantize_joints(backend._from_kinematic(backend.kin.inverse(commanded[:3], commanded[5])))
        miss = float(np.linalg.norm(backend.joint_pose(solved).position - commanded[:3]))
        self.worst_miss_m = max(self.worst_miss_m, miss)
        self.cut_short += not np.allclose(goals, solved, atol=0.1)

    def check(self) -> None:
        """Nothing sent put the tool outside the box; the reported pose is what the solved joints reach."""
        print(f"\nso101 goals: worst FK {self.worst_outside_m * 1e3:.3f} mm outside the box, solved joints miss the "
              f"reported pose by <= {self.worst_miss_m * 1e3:.3f} mm, {self.cut_short} cut short by the joint limit")
        assert self.worst_outside_m <= 1e-9, (
            f"a goal sent to the servos puts the tool {self.worst_outside_m * 1e3:.3f} mm outside the box; expected inside"
        )
        assert self.worst_miss_m <= 1e-3, (
            f"the reported commanded pose is {self.worst_miss_m * 1e3:.2f} mm from where the sent joints put the tool; "
            "expected <= 1 mm (servo-tick rounding)"
        )


@pytest.mark.parametrize("mode", MODES)
def test_so101_measured_pose_stays_in_box(mode):
    pytest.importorskip("scservo_sdk", reason="needs rlrm[robots] (feetech-servo-sdk)")
    env = make_robot_env("so101", sim=True, action_mode=mode, sleep=lambda s: None)
    try:
        sent = SO101SentGoals(env)
        result = drive(env, after_step=sent)
        check("so101", mode, result, min_walls=6)  # not safe by standing still: it slides along every wall
        sent.check()
    finally:
        env.close()


@pytest.mark.parametrize("mode", MODES)
def test_xarm_measured_pose_stays_in_box(mode):
    clock = FakeClock()
    env = make_robot_env("xarm", sim=True, action_mode=mode, clock=clock, sleep=clock.sleep)
    try:
        check("xarm", mode, drive(env), min_walls=5)
        assert env.backend.api.error_code == 0, "the controller fence tripped"
    finally:
        env.close()


@pytest.fixture(scope="module")
def franka_envs():
    """One franky-sim Franka env per action mode, built on first use (each starts its own simulator)."""
    pytest.importorskip("franky", reason="needs rlrm[robots-sim] (franky-control)")
    pytest.importorskip("franky_sim", reason="needs rlrm[robots-sim] (franky-sim)")
    envs: dict = {}

    def get(mode: str):
        if mode not in envs:
            env = make_robot_env("franka", sim=True, action_mode=mode, cameras={}, fps=FRANKA_FPS)
            box = env.config.safety
            # full steps and starts anywhere in the box, so that the arm reaches the walls on the real clock
            env.config.step_size_m = box.max_step_m
            env.config.reset_randomize_m = ((box.high - box.low) / 2 - 0.01).tolist()
            envs[mode] = env
        return envs[mode]

    yield get
    for env in envs.values():
        env.close()


@pytest.mark.parametrize("mode", MODES)
def test_franka_measured_pose_stays_in_box(franka_envs, mode):
    env = franka_envs(mode)
    check("franka", mode, drive(env, n=FRANKA_STEPS[mode]))
