"""Franka Emika Panda / FR3 through franky (``franky-control``).

* :class:`FrankaConfig` - FCI host, dynamics factor, collision thresholds, gripper, home joints.
* :class:`FrankaBackend` - streams absolute Cartesian targets as asynchronous franky motions (each
  new motion takes over the running one seamlessly), Franka gripper, ``recover_from_errors``.
  ``motion="position"`` sends ``CartesianMotion`` targets; ``motion="velocity"`` sends one short
  ``CartesianVelocityMotion`` per control tick, a twist toward the target capped by the per-step limits
  and by the braking distance to the walls of the workspace box (:class:`~robots.safety.BrakingVelocityCap`).

Tested against franky-sim (:mod:`robots.sim.franky_sim`), which serves the libfranka protocol on
loopback from a MuJoCo FR3.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from robots.backend import ControllerError, RobotBackend, RobotState
from robots.geometry import EEPose, quat_to_matrix
from robots.safety import BrakingVelocityCap, SafetyConfig

__all__ = ["FrankaConfig", "FrankaBackend"]

logger = logging.getLogger(__name__)


@dataclass
class FrankaConfig:
    """How to reach and drive one Franka arm.

    Args:
        host: FCI address of the control box (franky-sim: ``127.0.0.1``).
        dynamics_factor: global fraction of velocity/acceleration/jerk limits (conservative 0.1).
        realtime: ``"enforce"`` (real robot with an RT kernel) or ``"ignore"`` (sim, non-RT PCs).
        torque_threshold_nm, force_threshold_n: collision reflex thresholds.
        gripper: drive the Franka Hand.
        gripper_speed: m/s; gripper_max_width: m (opening at gripper=1.0).
        home_joints: optional 7 joint angles (rad) to visit before the Cartesian home pose.
        motion: ``"position"`` (Cartesian target motions) or ``"velocity"`` (one Cartesian twist per tick,
            held for one control period, then franky brakes unless the next tick replaced it).
        brake_decel_fraction: velocity mode: fraction of the arm's Cartesian deceleration (translation
            acceleration limit x ``dynamics_factor``) the braking-distance cap counts on; the rest is margin.
        brake_margin_m: velocity mode: stand-off (m) from the walls at which the braking must end.
    """

    host: str = "172.16.0.2"
    dynamics_factor: float = 0.1
    realtime: str = "enforce"
    torque_threshold_nm: float = 20.0
    force_threshold_n: float = 30.0
    gripper: bool = True
    gripper_speed: float = 0.05
    gripper_max_width: float = 0.08
    home_joints: list[float] | None = None
    motion: str = "position"
    brake_decel_fraction: float = 0.5
    brake_margin_m: float = 0.0

    def __post_init__(self) -> None:
        if self.motion not in ("position", "velocity"):
            raise ValueError(f"motion must be 'position' or 'velocity', got {self.motion!r}")
        if not 0 < self.brake_decel_fraction <= 1 or self.brake_margin_m < 0:
            raise ValueError(
                f"brake_decel_fraction must be in (0, 1] and brake_margin_m >= 0 (m), got "
                f"{self.brake_decel_fraction}, {self.brake_margin_m}"
            )


def _ee_pose(affine) -> EEPose:
    """A franky ``Affine`` as an :class:`EEPose`."""
    return EEPose(np.asarray(affine.translation), quat_to_matrix(affine.quaternion))


def _import_franky():
    try:
        import franky
    except ImportError as exc:
        raise ImportError("FrankaBackend needs franky: pip install 'rlrm[robots]' (franky-control)") from exc
    return franky


class FrankaBackend(RobotBackend):
    """A Franka arm driven by franky; Cartesian targets are streamed as async motions.

    ``motion="position"``: each target is an absolute ``CartesianMotion``. ``motion="velocity"``: each
    target becomes a twist (:class:`~robots.safety.BrakingVelocityCap`) sent as a
    ``CartesianVelocityMotion`` held for one control period, so a missed tick brakes the arm instead
    of letting it run on; this needs the env's ``safety`` limits and ``period_s`` (``make_robot_env``
    passes them).

    >>> from robots.sim.franky_sim import FrankySimServer  # doctest: +SKIP
    >>> with FrankySimServer() as sim:  # doctest: +SKIP
    ...     arm = FrankaBackend(FrankaConfig(host=sim.hostname, realtime="ignore")); arm.connect()
    ...     arm.read_state().pose.position
    """

    name = "franka"
    num_joints = 7

    def __init__(
        self, config: FrankaConfig | None = None, safety: SafetyConfig | None = None, period_s: float | None = None
    ) -> None:
        self.config = config or FrankaConfig()
        if self.config.motion == "velocity" and (safety is None or period_s is None):
            raise ValueError(
                "motion='velocity' needs the env's safety limits and control period: "
                "FrankaBackend(config, safety=SafetyConfig(...), period_s=1 / fps), or build it with make_robot_env"
            )
        self.safety = safety
        self.period_s = period_s
        self.velocity_cap: BrakingVelocityCap | None = None
        self.robot = None
        self.gripper_dev = None
        self._last_gripper: float | None = None
        self._gripper_future = None

    def _wrap(self, fn, what: str):
        franky = _import_franky()
        try:
            return fn()
        # RuntimeError: franky re-raises a failed motion plan of the previous asynchronous motion as a plain
        # RuntimeError ("Motion planner failed with error code -110", a sporadic ruckig failure); the motion
        # ended, so it is recoverable like a controller error
        except (franky.ControlException, franky.CommandException, franky.InvalidOperationException,
                RuntimeError) as exc:
            raise ControllerError(f"franka {what}: {type(exc).__name__}: {exc}") from exc

    def connect(self) -> None:
        """Connect to the FCI, set collision behaviour and the dynamics factor, clear old errors."""
        franky = _import_franky()
        cfg = self.config
        if cfg.realtime not in ("enforce", "ignore"):
            raise ValueError(f"realtime must be 'enforce' or 'ignore', got {cfg.realtime!r}")
        rt = franky.RealtimeConfig.Enforce if cfg.realtime == "enforce" else franky.RealtimeConfig.Ignore
        self.robot = franky.Robot(
            cfg.host,
            relative_dynamics_factor=cfg.dynamics_factor,
            default_torque_threshold=cfg.torque_threshold_nm,
            default_force_threshold=cfg.force_threshold_n,
            realtime_config=rt,
        )
        self.robot.recover_from_errors()
        if cfg.motion == "velocity":
            decel = cfg.brake_decel_fraction * cfg.dynamics_factor * self.robot.translation_acceleration_limit.get()
            self.velocity_cap = BrakingVelocityCap(self.safety, self.period_s, decel, margin_m=cfg.brake_margin_m)
        if cfg.gripper:
            self.gripper_dev = franky.Gripper(cfg.host)

    def disconnect(self) -> None:
        """Stop motion and drop the connection."""
        if self.robot is not None:
            self.stop()
            franky = _import_franky()
            try:  # let the preempted motion's control loop finish while the controller still answers
                self.robot.join_motion(timeout=2.0)
            except (franky.Exception, RuntimeError) as exc:
                logger.debug("franka: the stopped motion ended with %s", exc)
            if self._gripper_future is not None:  # destroying the gripper mid-command crashes libfranka
                self._gripper_future.wait(5.0)
                self._gripper_future = None
            self.robot = None
            self.gripper_dev = None

    def read_state(self) -> RobotState:
        """End-effector pose (flange + configured EE frame), joints (rad), gripper width / max width."""
        def read():
            affine = self.robot.current_cartesian_state.pose.end_effector_pose
            joints = np.asarray(self.robot.current_joint_state.position, dtype=float)
            return affine, joints

        affine, joints = self._wrap(read, "read_state")
        pose = _ee_pose(affine)
        gripper = 1.0
        if self.gripper_dev is not None:
            gripper = float(np.clip(self.gripper_dev.width / self.config.gripper_max_width, 0.0, 1.0))
        return RobotState(pose, gripper, joints)

    def command_ee(self, pose: EEPose, gripper: float) -> None:
        """Queue a motion toward ``pose`` that takes over the running one; report earlier motion errors."""
        franky = _import_franky()

        def send():
            self.robot.poll_motion()  # raises the ControlException of a failed previous motion
            if self.velocity_cap is not None:
                linear, angular = self.velocity_toward(pose)
                motion = franky.CartesianVelocityMotion(
                    franky.RobotVelocity(franky.Twist(linear, angular)),
                    duration=franky.Duration(max(1, round(self.period_s * 1000))),
                )
            else:
                motion = franky.CartesianMotion(franky.Affine(pose.position, pose.quat), franky.ReferenceType.Absolute)
            self.robot.move(motion, asynchronous=True)

        self._wrap(send, "command_ee")
        self._command_gripper(gripper)

    def velocity_toward(self, pose: EEPose) -> tuple[np.ndarray, np.ndarray]:
        """Velocity mode: the capped twist ``((3,) m/s, (3,) rad/s)`` from the measured pose toward ``pose``."""
        current = _ee_pose(self.robot.current_cartesian_state.pose.end_effector_pose)
        return self.velocity_cap.twist(current, pose)

    def _command_gripper(self, gripper: float) -> None:
        """Open/close with hysteresis; a new command only once the previous one finished.

        The Franka Hand executes one blocking command at a time, so streaming widths would queue
        up behind each other; open/close is what RL policies use on it anyway.
        """
        if self.gripper_dev is None:
            return
        if self._gripper_future is not None:
            if not self._gripper_future.wait(0.0):
                return
            self._gripper_future = None
        want_open = gripper > 0.6 if gripper > 0.6 or gripper < 0.4 else self._last_gripper != 0.0
        width = self.config.gripper_max_width if want_open else 0.0
        if self._last_gripper is None or (self._last_gripper > 0) != want_open:
            self._gripper_future = self.gripper_dev.move_async(width, self.config.gripper_speed)
            self._last_gripper = 1.0 if want_open else 0.0

    def stop(self) -> None:
        """Preempt the running motion (franky decelerates and holds)."""
        if self.robot is not None:
            franky = _import_franky()
            try:
                self.robot.stop()
            except franky.Exception as exc:  # a stop must not be lost to a stale motion error
                logger.warning("franka stop raised %s; the motion is stopped regardless", exc)

    def recover(self) -> None:
        """``recover_from_errors``; raise ControllerError if the robot reports failure."""
        franky = _import_franky()
        try:
            self.robot.join_motion(timeout=0.5)
        except (franky.Exception, RuntimeError) as exc:  # RuntimeError: a failed motion plan
            logger.warning("franka: the failed motion reported %s", exc)
        if not self.robot.recover_from_errors():
            raise ControllerError("franka recover_from_errors() returned False (check the e-stop / Desk)")

    def home(self, pose: EEPose, gripper: float, speed: float) -> None:
        """Optional joint home, then a blocking Cartesian move at ``speed`` times the dynamics factor."""
        franky = _import_franky()

        def move():
            try:
                self.robot.join_motion(timeout=2.0)
            except (franky.ControlException, RuntimeError) as exc:
                logger.warning("franka: previous motion ended with %s before homing", exc)
                self.robot.recover_from_errors()
            if self.config.home_joints is not None:
                self.robot.move(franky.JointMotion(franky.JointState(self.config.home_joints),
                                                   relative_dynamics_factor=speed))
            self.robot.move(franky.CartesianMotion(franky.Affine(pose.position, pose.quat),
                                                   franky.ReferenceType.Absolute, relative_dynamics_factor=speed))

        self._wrap(move, "home")
        if self.gripper_dev is not None:
            if self._gripper_future is not None:
                self._gripper_future.wait(5.0)
                self._gripper_future = None
            self.gripper_dev.move(gripper * self.config.gripper_max_width, self.config.gripper_speed)
            self._last_gripper = gripper
