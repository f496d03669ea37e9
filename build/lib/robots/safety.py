"""The safety limits every robot env applies before anything reaches a controller.

* :class:`SafetyConfig` - workspace box, per-step translation/rotation limits, orientation range.
* :class:`SafetyFilter` - turns a desired end-effector target into a safe one (clip to box, limit step).
* :class:`ReachFilter` - moves a safe end-effector target back toward the previous one until the tool positions
  the backend predicts for it (FK of the joint goals it would send, and of the way there) lie in the box.
* :class:`JointSafetyFilter` - the same for joint targets: joint limits, per-step limit, FK inside the box.
* :class:`BrakingVelocityCap` - for velocity-controlled arms: a twist toward the safe target, capped by the
  per-step limits and, per axis, so that the arm can brake before the walls of the box.
* :class:`UnsafeActionError` - a NaN/inf or wrongly shaped action; the robot holds.
* :func:`check_action` - validate a policy action before it is used.
* :class:`RateLimiter` - holds the control loop at ``fps`` and counts overruns (injectable clock).

All limits live here so that one test file can check all of them; backends add their own
controller-side fences (xArm reduced mode, servo position limits) as a second line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from robots.geometry import EEPose, matrix_to_rotvec, rotvec_to_matrix

__all__ = ["SafetyConfig", "SafetyFilter", "UnsafeActionError", "check_action", "RateLimiter", "SafeTarget",
           "ReachFilter", "JointSafetyFilter", "SafeJointTarget", "BrakingVelocityCap"]

logger = logging.getLogger(__name__)


class UnsafeActionError(ValueError):
    """An action that must not be executed (NaN/inf, wrong shape); the robot was told to hold."""


@dataclass
class SafetyConfig:
    """Limits on every commanded end-effector target.

    Args:
        workspace_low: (3,) m, lower corner of the box the end effector must stay in (base frame).
        workspace_high: (3,) m, upper corner.
        max_step_m: largest translation between two consecutive commanded targets (m).
        max_step_rad: largest rotation between two consecutive commanded targets (rad).
        max_step_deg: largest change of any joint between two consecutive joint targets (deg;
            ``action_mode="joints"`` only).
        rotation_range_rad: (3,) largest rotation (axis-angle components, rad) away from the home
            orientation; keeps the gripper roughly pointing where it pointed at home.
    """

    workspace_low: list[float] = field(default_factory=lambda: [0.3, -0.2, 0.05])
    workspace_high: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.4])
    max_step_m: float = 0.02
    max_step_rad: float = 0.1
    max_step_deg: float = 5.0
    rotation_range_rad: list[float] = field(default_factory=lambda: [0.5, 0.5, 1.57])

    def __post_init__(self) -> None:
        low, high = np.asarray(self.workspace_low, float), np.asarray(self.workspace_high, float)
        if low.shape != (3,) or high.shape != (3,) or not np.all(low < high):
            raise ValueError(
                f"workspace_low must be < workspace_high, both (3,) metres, got {self.workspace_low} "
                f"and {self.workspace_high}"
            )
        if not (self.max_step_m > 0 and self.max_step_rad > 0):
            raise ValueError(
                f"max_step_m and max_step_rad must be > 0, got {self.max_step_m}, {self.max_step_rad}"
            )
        if not self.max_step_deg > 0:
            raise ValueError(f"max_step_deg must be > 0 (deg), got {self.max_step_deg}")
        if np.asarray(self.rotation_range_rad, float).shape != (3,):
            raise ValueError(f"rotation_range_rad must have 3 values (rad), got {self.rotation_range_rad}")

    @property
    def low(self) -> np.ndarray:
        """Workspace lower corner (3,) m."""
        return np.asarray(self.workspace_low, dtype=float)

    @property
    def high(self) -> np.ndarray:
        """Workspace upper corner (3,) m."""
        return np.asarray(self.workspace_high, dtype=float)

    def contains(self, position, tol: float = 1e-9) -> bool:
        """Whether a position (3,) m lies inside the workspace box."""
        p = np.asarray(position, dtype=float)
        return bool(np.all(p >= self.low - tol) and np.all(p <= self.high + tol))


def check_action(action, size: int) -> np.ndarray:
    """Return ``action`` as a float64 (size,) array, or raise :class:`UnsafeActionError` naming it."""
    try:
        arr = None if isinstance(action, str) else np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError):  # ragged lists, None, objects
        arr = None
    if arr is None or arr.shape != (size,):
        shape = None if arr is None else arr.shape
        raise UnsafeActionError(f"action must have shape ({size},) in [-1, 1], got {shape}: {action!r}")
    if not np.all(np.isfinite(arr)):
        raise UnsafeActionError(
            f"action must be finite, got {arr.tolist()} (NaN/inf at index {np.flatnonzero(~np.isfinite(arr)).tolist()}); "
            "the robot holds its last target"
        )
    return arr


@dataclass
class SafeTarget:
    """A target after the safety filter, with what the filter changed."""

    pose: EEPose
    clipped_workspace: bool
    clipped_step: bool
    clipped_rotation: bool

    @property
    def clipped(self) -> bool:
        """Whether any limit changed the target."""
        return self.clipped_workspace or self.clipped_step or self.clipped_rotation


class SafetyFilter:
    """Makes end-effector targets safe: orientation range, per-step limits, workspace box.

    The step limits are measured from the *previous commanded target*, so the sequence of
    targets a controller sees never jumps further than ``max_step_m`` / ``max_step_rad``,
    however far the measured pose lags.

    >>> f = SafetyFilter(SafetyConfig(), home_rotation=np.eye(3))
    >>> prev = EEPose([0.45, 0.0, 0.2], np.eye(3))
    >>> safe = f.apply(EEPose([5.0, 0.0, 0.2], np.eye(3)), prev)
    >>> safe.pose.position.round(3).tolist(), safe.clipped_step
    ([0.47, 0.0, 0.2], True)
    """

    def __init__(self, config: SafetyConfig, home_rotation: np.ndarray) -> None:
        self.config = config
        self.home_rotation = np.asarray(home_rotation, dtype=float)

    def apply(self, desired: EEPose, previous: EEPose) -> SafeTarget:
        """Return the safe target closest to ``desired`` reachable from ``previous`` in one step."""
        cfg = self.config
        # orientation: clip into the range around home, then walk from the previous target toward
        # it along the geodesic as far as both the step limit and the range allow (bisection, since
        # the range is a box in axis-angle coordinates and not convex along every geodesic)
        rel = matrix_to_rotvec(self.home_rotation.T @ desired.rotation)
        rel_clipped = np.clip(rel, -np.asarray(cfg.rotation_range_rad), np.asarray(cfg.rotation_range_rad))
        clipped_rot = bool(np.any(rel != rel_clipped))
        goal = self.home_rotation @ rotvec_to_matrix(rel_clipped)
        step_rot = matrix_to_rotvec(previous.rotation.T @ goal)
        angle = float(np.linalg.norm(step_rot))
        t_max = 1.0 if angle <= cfg.max_step_rad else cfg.max_step_rad / angle
        clipped_step = t_max < 1.0
        t = t_max
        if not self.in_rotation_range(previous.rotation @ rotvec_to_matrix(step_rot * t)):
            lo, hi = 0.0, t_max
            for _ in range(30):
                mid = (lo + hi) / 2
                if self.in_rotation_range(previous.rotation @ rotvec_to_matrix(step_rot * mid)):
                    lo = mid
                else:
                    hi = mid
            t, clipped_rot = lo, True
        rotation = previous.rotation @ rotvec_to_matrix(step_rot * t)
        # translation step
        delta = desired.position - previous.position
        dist = float(np.linalg.norm(delta))
        if dist > cfg.max_step_m:
            delta = delta * (cfg.max_step_m / dist)
            clipped_step = True
        # the box last: clipping a point into a convex box never lengthens the step from a point inside it
        position = previous.position + delta
        boxed = np.clip(position, cfg.low, cfg.high)
        clipped_ws = bool(np.any(boxed != position))
        return SafeTarget(EEPose(boxed, rotation), clipped_ws, clipped_step, clipped_rot)

    def in_rotation_range(self, rotation: np.ndarray, tol: float = 1e-9) -> bool:
        """Whether a rotation lies within ``rotation_range_rad`` of the home orientation."""
        rel = matrix_to_rotvec(self.home_rotation.T @ rotation)
        return bool(np.all(np.abs(rel) <= np.asarray(self.config.rotation_range_rad) + tol))


class ReachFilter:
    """Moves a target back toward the previous one until the arm reaches it by a way inside the box.

    A target inside the box is not enough when joints are solved from it: the goals are rounded to
    servo ticks and the servos reach them along a joint-space line whose forward kinematics bows away
    from the Cartesian segment. ``path(pose) -> (k, 3)`` m is the tool's way if ``pose`` is sent now,
    from where the tool is (first row) to where the joints solved for ``pose`` put it (last row)
    (:meth:`~robots.backend.RobotBackend.ee_path`; it raises ControllerError or ValueError when ``pose``
    is out of reach). A target is accepted when no point of the way lies farther outside the box than
    the tool already is (0 when it is inside), the end lies inside, and the end is within ``reach_tol_m``
    of the target. Otherwise its position is moved back along the segment from ``previous`` (bisection
    on the fraction; the already safe rotation is kept, so the step and rotation limits still hold);
    when even the previous position fails, the previous target is held.

    >>> f = ReachFilter(SafetyConfig([0.3, -0.2, 0.05], [0.6, 0.2, 0.4]))
    >>> start = np.array([0.45, 0.0, 0.38])
    >>> bows = lambda pose: np.stack([start, pose.position + [0.0, 0.0, 0.01], pose.position])  # 1 cm above on the way
    >>> pose, clipped = f.apply(EEPose([0.45, 0.0, 0.4], np.eye(3)), EEPose(start, np.eye(3)), bows)
    >>> round(float(pose.position[2]), 4), clipped
    (0.39, True)

    Args:
        config: the workspace box.
        reach_tol_m: largest distance (m) between the target and where the joints solved for it put the tool.
        iterations: bisection steps (the last one moves the target by 2**-iterations of the step).
    """

    def __init__(self, config: SafetyConfig, reach_tol_m: float = 1e-3, iterations: int = 16) -> None:
        if not reach_tol_m > 0:
            raise ValueError(f"reach_tol_m must be > 0 (m), got {reach_tol_m}")
        self.config = config
        self.reach_tol_m = float(reach_tol_m)
        self.iterations = int(iterations)

    def excursion(self, points) -> float:
        """How far (m) the farthest of ``points`` (k, 3) lies outside the box (0 inside)."""
        p = np.asarray(points, dtype=float).reshape(-1, 3)
        return float(np.max(np.maximum(self.config.low - p, 0.0) + np.maximum(p - self.config.high, 0.0)))

    def problem(self, pose: EEPose, path: Callable[[EEPose], np.ndarray]) -> str | None:
        """Why ``pose`` cannot be sent as it is (None: it can)."""
        from robots.backend import ControllerError

        try:
            points = np.asarray(path(pose), dtype=float).reshape(-1, 3)
        except (ControllerError, ValueError) as exc:  # out of reach: this target cannot be sent
            return f"out of reach ({exc})"
        way, start, end = self.excursion(points), self.excursion(points[0]), self.excursion(points[-1])
        miss = float(np.linalg.norm(points[-1] - pose.position))
        if way > start + 1e-9:
            return f"the way leaves the box by {way * 1e3:.2f} mm"
        if end > 1e-9:
            return f"the solved joints put the tool {end * 1e3:.2f} mm outside the box"
        if miss > self.reach_tol_m:
            return f"the solved joints miss it by {miss * 1e3:.2f} mm"
        return None

    def apply(
        self, target: EEPose, previous: EEPose, path: Callable[[EEPose], np.ndarray]
    ) -> tuple[EEPose, bool]:
        """``(pose to send, whether it was moved back)``: ``target`` itself when it is reached by a way in the box."""
        why = self.problem(target, path)
        if why is None:
            return target, False

        def along(t: float) -> EEPose:
            return EEPose(previous.position + t * (target.position - previous.position), target.rotation)

        if self.problem(along(0.0), path) is not None:
            logger.debug("target %s: %s, and so is the previous position; holding the previous target",
                         target.position.round(4).tolist(), why)
            return previous.copy(), True
        lo, hi = 0.0, 1.0
        for _ in range(self.iterations):
            mid = (lo + hi) / 2
            if self.problem(along(mid), path) is None:
                lo = mid
            else:
                hi = mid
        pose = along(lo)
        logger.debug("target %s: %s; moved back to %s (%.0f%% of the step)", target.position.round(4).tolist(), why,
                     pose.position.round(4).tolist(), lo * 100)
        return pose, True


@dataclass
class SafeJointTarget:
    """A joint target (deg) after the joint safety filter, with what the filter changed."""

    joints: np.ndarray
    pose: EEPose
    clipped_limits: bool
    clipped_step: bool
    clipped_workspace: bool

    @property
    def clipped(self) -> bool:
        """Whether any limit changed the target."""
        return self.clipped_limits or self.clipped_step or self.clipped_workspace


class JointSafetyFilter:
    """Makes joint targets safe: joint limits, per-step joint limit, forward kinematics inside the box.

    The box is Cartesian, so after the joint limits and the step limit the step from the previous
    target is scaled back (bisection on the fraction of the step) until the FK position of the
    target lies in the workspace. ``quantize`` maps a target to what the controller will really
    receive (e.g. servo ticks), and the checks run on that, so the received target is the checked one.

    >>> from robots.so101 import SO101Kinematics
    >>> k = SO101Kinematics()
    >>> fk = lambda deg: k.forward(np.radians(deg + np.array([0, 0, 90, 0, 0])))
    >>> f = JointSafetyFilter(SafetyConfig([0.1, -0.2, 0.0], [0.4, 0.2, 0.3]), fk, [-150] * 5, [150] * 5)
    >>> prev = np.array([0.0, 20.0, 0.0, 70.0, 0.0])
    >>> safe = f.apply(prev + [0, 40, 0, 0, 0], prev)
    >>> float(safe.joints[1]), safe.clipped_step
    (25.0, True)
    """

    def __init__(
        self,
        config: SafetyConfig,
        forward: Callable[[np.ndarray], EEPose],
        low_deg,
        high_deg,
        quantize: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.config = config
        self.forward = forward
        self.low, self.high = np.asarray(low_deg, dtype=float), np.asarray(high_deg, dtype=float)
        if self.low.shape != self.high.shape or self.low.ndim != 1 or not np.all(self.low < self.high):
            raise ValueError(f"joint limits must be (n,) deg with low < high, got {low_deg} and {high_deg}")
        self.quantize = quantize or (lambda q: q)

    def _violation(self, joints: np.ndarray) -> float:
        """How far (m) the FK position of ``joints`` lies outside the box (0 inside)."""
        p = self.forward(joints).position
        return float(np.max(np.maximum(self.config.low - p, 0) + np.maximum(p - self.config.high, 0)))

    def apply(self, desired, previous) -> SafeJointTarget:
        """Return the safe joint target (deg) closest to ``desired`` along the step from ``previous``."""
        desired, previous = np.asarray(desired, dtype=float), np.asarray(previous, dtype=float)
        if desired.shape != self.low.shape or previous.shape != self.low.shape:
            raise ValueError(f"joint targets must have shape {self.low.shape} (deg), got {desired.shape}, {previous.shape}")
        limited = np.clip(desired, self.low, self.high)
        clipped_limits = bool(np.any(limited != desired))
        lim = self.config.max_step_deg
        delta = np.clip(limited - previous, -lim, lim)
        clipped_step = bool(np.any(delta != limited - previous))
        # a previous target outside the box (measured start within reset's tolerance) may not get worse
        allowed = max(self._violation(self.quantize(previous)), 0.0) + 1e-12

        def ok(t: float) -> np.ndarray | None:
            q = self.quantize(np.clip(previous + delta * t, self.low, self.high))
            if np.any(np.abs(q - previous) > lim + 1e-9) or self._violation(q) > allowed:
                return None
            return q

        target, clipped_ws = ok(1.0), False
        if target is None:
            clipped_ws, lo, hi = True, 0.0, 1.0
            target = ok(0.0)
            if target is None:  # quantisation of the previous target itself fails: hold exactly
                target = previous.copy()
            for _ in range(30):
                mid = (lo + hi) / 2
                q = ok(mid)
                if q is None:
                    hi = mid
                else:
                    lo, target = mid, q
        return SafeJointTarget(target, self.forward(target), clipped_limits, clipped_step, clipped_ws)


class BrakingVelocityCap:
    """Turns a safe target pose into a twist that the arm can always brake from inside the workspace box.

    For velocity-controlled arms, where a commanded speed carries the arm on after the command (it holds
    a twist for ``hold_s``, then brakes). Per step the twist heads for the target at
    ``(target - current) / period_s``; the translation is capped (direction kept) at
    ``max_step_m / period_s`` and the rotation at ``max_step_rad / period_s``, the per-step limits of
    :class:`SafetyFilter` as speeds. Then, per axis, the speed toward a wall is capped at the largest
    ``v`` with ``v * reaction_s + v**2 / (2 * decel_m_s2) <= distance_to_wall - margin_m``: coasting
    for the reaction time and braking at ``decel_m_s2`` ends inside the box. Near a wall that is
    ``v ~ sqrt(2 * decel_m_s2 * distance)``; at the wall it is 0, so the arm glides onto the wall
    instead of running into it. Motion away from a wall or along it is not slowed.

    >>> cap = BrakingVelocityCap(SafetyConfig([0.3, -0.2, 0.05], [0.6, 0.2, 0.4]), period_s=0.1, decel_m_s2=1.0)
    >>> cap.stopping_speed(np.array([0.0, 0.001, 0.1])).round(4).tolist()  # m from a wall -> m/s
    [0.0, 0.0049, 0.2899]
    >>> linear, angular = cap.twist(EEPose([0.45, 0.0, 0.399], np.eye(3)), EEPose([0.46, 0.0, 0.4], np.eye(3)))
    >>> linear.round(4).tolist()  # x heads for the target at (target - current) / period; z is 1 mm from the lid
    [0.1, 0.0, 0.0049]

    Args:
        config: the workspace box and per-step limits (:class:`SafetyConfig`).
        period_s: control period (s); the speed that covers one step limit per period is the cap.
        decel_m_s2: deceleration the arm is assumed to brake with (m/s^2); take a fraction of what the
            controller really uses, the rest is the margin for jerk-limited ramps.
        reaction_s: time the arm may keep the commanded speed before braking starts (s); default two
            periods: the twist is held for one period, plus one late or missed control tick.
        margin_m: stand-off from the walls the braking must end at (m); the arm then rests that far inside.
    """

    def __init__(
        self,
        config: SafetyConfig,
        period_s: float,
        decel_m_s2: float,
        reaction_s: float | None = None,
        margin_m: float = 0.0,
    ) -> None:
        if not (period_s > 0 and decel_m_s2 > 0 and margin_m >= 0):
            raise ValueError(
                f"period_s and decel_m_s2 must be > 0 and margin_m >= 0, got {period_s}, {decel_m_s2}, {margin_m}"
            )
        self.config = config
        self.period_s = float(period_s)
        self.decel_m_s2 = float(decel_m_s2)
        self.reaction_s = 2.0 * self.period_s if reaction_s is None else float(reaction_s)
        if self.reaction_s < 0:
            raise ValueError(f"reaction_s must be >= 0 (s), got {reaction_s}")
        self.margin_m = float(margin_m)

    def stopping_speed(self, distance: np.ndarray) -> np.ndarray:
        """Largest speed (m/s) from which reacting, then braking, ends ``distance`` (m) ahead, minus the margin."""
        room = np.maximum(np.asarray(distance, dtype=float) - self.margin_m, 0.0)
        a, t = self.decel_m_s2, self.reaction_s
        # the positive root of v**2 / (2 a) + v t - room = 0
        return a * (np.sqrt(t * t + 2.0 * room / a) - t)

    def twist(self, current: EEPose, target: EEPose) -> tuple[np.ndarray, np.ndarray]:
        """Base-frame twist ``((3,) m/s, (3,) rad/s)`` from the measured pose toward the (safe) target."""
        cfg = self.config
        if not (np.all(np.isfinite(current.position)) and np.all(np.isfinite(current.rotation))):
            raise ValueError(f"measured pose must be finite, got position {current.position.tolist()}")
        linear = (np.asarray(target.position, float) - current.position) / self.period_s
        angular = matrix_to_rotvec(target.rotation @ current.rotation.T) / self.period_s
        for vec, cap in ((linear, cfg.max_step_m / self.period_s), (angular, cfg.max_step_rad / self.period_s)):
            norm = float(np.linalg.norm(vec))
            if norm > cap:
                vec *= cap / norm
        ahead = np.where(linear > 0, cfg.high - current.position, current.position - cfg.low)
        limit = self.stopping_speed(ahead)
        linear = np.clip(linear, -limit, limit)
        return linear, angular


class RateLimiter:
    """Holds a loop at ``fps``: :meth:`wait` sleeps until the next tick and reports overruns.

    ``clock`` and ``sleep`` are injectable so tests check the schedule without wall time.

    >>> t = [0.0]
    >>> rl = RateLimiter(10, clock=lambda: t[0], sleep=lambda s: t.__setitem__(0, t[0] + s))
    >>> rl.reset(); t[0] += 0.03  # 30 ms of work in a 100 ms period
    >>> rl.wait(), round(t[0], 3)  # no overrun; slept until the tick
    (0.0, 0.1)
    """

    def __init__(
        self,
        fps: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        warn_every: int = 50,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.period = 1.0 / float(fps)
        self.clock, self.sleep = clock, sleep
        self.warn_every = warn_every
        self.overruns = 0
        self._next: float | None = None

    def reset(self) -> None:
        """Start a new schedule at the current time."""
        self._next = self.clock() + self.period

    def wait(self) -> float:
        """Sleep until the next tick; return the overrun in seconds (0.0 when on time)."""
        if self._next is None:
            self.reset()
        now = self.clock()
        remaining = self._next - now
        if remaining >= 0:
            self.sleep(remaining)
            self._next += self.period
            return 0.0
        overrun = -remaining
        self.overruns += 1
        if self.overruns == 1 or self.overruns % self.warn_every == 0:
            logger.warning(
                "control loop overran its %.1f ms period by %.1f ms (%d overruns so far); "
                "lower fps or speed up the policy/reward",
                self.period * 1e3,
                overrun * 1e3,
                self.overruns,
            )
        # re-anchor instead of bursting to catch up: a burst would command several steps at once
        self._next = now + self.period
        return overrun
