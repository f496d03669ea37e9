"""Franka Emika Panda / FR3 through franky (``franky-control``).

* :class:`FrankaConfig` - FCI host, dynamics factor, collision thresholds, gripper, home joints.
* :class:`FrankaBackend` - streams absolute Cartesian targets as asynchronous franky motions (each
  new motion takes over the running one seamlessly), Franka gripper, ``recover_from_errors``.

Tested against franky-sim (:mod:`robots.sim.franky_sim`), which serves the libfranka protocol on
loopback from a MuJoCo FR3.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from robots.backend import ControllerError, RobotBackend, RobotState
from robots.geometry import EEPose, quat_to_matrix

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


def _import_franky():
    try:
        import franky
    except ImportError as exc:
        raise ImportError("FrankaBackend needs franky: pip install 'rlrm[robots]' (franky-control)") from exc
    return franky


class FrankaBackend(RobotBackend):
    """A Franka arm driven by franky; Cartesian targets are streamed as async ``CartesianMotion``s.

    >>> from robots.sim.franky_sim import FrankySimServer  # doctest: +SKIP
    >>> with FrankySimServer() as sim:  # doctest: +SKIP
    ...     arm = FrankaBackend(FrankaConfig(host=sim.hostname, realtime="ignore")); arm.connect()
    ...     arm.read_state().pose.position
    """

    name = "franka"
    num_joints = 7

    def __init__(self, config: FrankaConfig | None = None) -> None:
        self.config = config or FrankaConfig()
        self.robot = None
        self.gripper_dev = None
        self._last_gripper: float | None = None
        self._gripper_future = None

    def _wrap(self, fn, what: str):
        franky = _import_franky()
        try:
            return fn()
        except (franky.ControlException, franky.CommandException, franky.InvalidOperationException) as exc:
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
        if cfg.gripper:
            self.gripper_dev = franky.Gripper(cfg.host)

    def disconnect(self) -> None:
        """Stop motion and drop the connection."""
        if self.robot is not None:
            self.stop()
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
        pose = EEPose(np.asarray(affine.translation), quat_to_matrix(affine.quaternion))
        gripper = 1.0
        if self.gripper_dev is not None:
            gripper = float(np.clip(self.gripper_dev.width / self.config.gripper_max_width, 0.0, 1.0))
        return RobotState(pose, gripper, joints)

    def command_ee(self, pose: EEPose, gripper: float) -> None:
        """Queue an absolute Cartesian motion that takes over the running one; report earlier motion errors."""
        franky = _import_franky()

        def send():
            self.robot.poll_motion()  # raises the ControlException of a failed previous motion
            motion = franky.CartesianMotion(franky.Affine(pose.position, pose.quat), franky.ReferenceType.Absolute)
            self.robot.move(motion, asynchronous=True)

        self._wrap(send, "command_ee")
        self._command_gripper(gripper)

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
        except franky.Exception as exc:
            logger.warning("franka: the failed motion reported %s", exc)
        if not self.robot.recover_from_errors():
            raise ControllerError("franka recover_from_errors() returned False (check the e-stop / Desk)")

    def home(self, pose: EEPose, gripper: float, speed: float) -> None:
        """Optional joint home, then a blocking Cartesian move at ``speed`` times the dynamics factor."""
        franky = _import_franky()

        def move():
            try:
                self.robot.join_motion(timeout=2.0)
            except franky.ControlException as exc:
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
