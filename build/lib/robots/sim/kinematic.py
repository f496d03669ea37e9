"""A kinematic Cartesian arm: the end effector moves toward its target at a bounded speed.

* :class:`KinematicBackend` - a :class:`~robots.backend.RobotBackend` with no physics, injectable
  controller errors and a manual time step, for env tests and for trying the loop without an arm.
"""

from __future__ import annotations

import threading

import numpy as np

from robots.backend import ControllerError, RobotBackend, RobotState
from robots.geometry import EEPose, matrix_to_rotvec, rotvec_to_matrix

__all__ = ["KinematicBackend"]


class KinematicBackend(RobotBackend):
    """Point-mass end effector tracking its target at ``max_speed`` m/s, advanced ``dt`` s per command.

    Args:
        start: initial ``[x, y, z, roll, pitch, yaw]`` (m, rad).
        max_speed: m/s reached per tracking step; rotation tracks at ``max_speed * 10`` rad/s.
        dt: simulated seconds per ``command_ee`` / ``read_state`` tick.

    >>> b = KinematicBackend(); b.connect()
    >>> b.command_ee(EEPose([0.46, 0.0, 0.25], b.read_state().pose.rotation), 1.0)
    >>> float(b.read_state().pose.position[0]) > 0.45
    True
    """

    name = "kinematic"
    num_joints = 0

    def __init__(self, start=(0.45, 0.0, 0.25, np.pi, 0.0, 0.0), max_speed: float = 0.25, dt: float = 0.1) -> None:
        self.pose = EEPose.from_vector(start)
        self.target = self.pose.copy()
        self.gripper = 1.0
        self.gripper_target = 1.0
        self.max_speed, self.dt = max_speed, dt
        self.connected = False
        self.error: str | None = None
        self.halted = False
        self.failures_pending = 0
        self.unrecoverable = False
        self.recoveries = 0
        self._lock = threading.Lock()

    def inject_error(self, count: int = 1, unrecoverable: bool = False) -> None:
        """Make the next ``count`` commands fault (a reflex); ``unrecoverable`` makes recover() fail too."""
        self.failures_pending = count
        self.unrecoverable = unrecoverable

    def connect(self) -> None:
        """Mark connected."""
        self.connected = True

    def disconnect(self) -> None:
        """Stop and mark disconnected."""
        self.stop()
        self.connected = False

    def _advance(self) -> None:
        if self.halted:
            return
        delta = self.target.position - self.pose.position
        dist = float(np.linalg.norm(delta))
        max_d = self.max_speed * self.dt
        self.pose.position = self.pose.position + (delta if dist <= max_d else delta * (max_d / dist))
        rot = matrix_to_rotvec(self.pose.rotation.T @ self.target.rotation)
        ang, max_a = float(np.linalg.norm(rot)), self.max_speed * 10 * self.dt
        if ang > max_a:
            rot = rot * (max_a / ang)
        self.pose.rotation = self.pose.rotation @ rotvec_to_matrix(rot)
        self.gripper += float(np.clip(self.gripper_target - self.gripper, -0.5, 0.5))

    def read_state(self) -> RobotState:
        """Pose after one more tick of tracking."""
        if not self.connected:
            raise ControllerError("kinematic backend is not connected")
        with self._lock:
            return RobotState(self.pose.copy(), self.gripper, np.zeros(0))

    def command_ee(self, pose: EEPose, gripper: float) -> None:
        """Set the target and track it for one tick; faults if an error was injected."""
        with self._lock:
            if self.failures_pending > 0:
                self.failures_pending -= 1
                self.error = "injected reflex"
                raise ControllerError("kinematic backend: injected reflex (cartesian_reflex)")
            if self.error is not None:
                raise ControllerError(f"kinematic backend: error not cleared: {self.error}")
            self.target, self.gripper_target = pose.copy(), float(gripper)
            self._advance()

    def stop(self) -> None:
        """Freeze at the current pose."""
        with self._lock:
            self.halted = True
            self.target = self.pose.copy()

    def resume(self) -> None:
        """Allow tracking again."""
        with self._lock:
            self.halted = False

    def recover(self) -> None:
        """Clear the error (or fail if it was injected as unrecoverable)."""
        self.recoveries += 1
        if self.unrecoverable:
            raise ControllerError("kinematic backend: error cannot be cleared (unrecoverable)")
        self.error = None

    def home(self, pose: EEPose, gripper: float, speed: float) -> None:
        """Jump to ``pose`` (a real arm would move there at ``speed``)."""
        with self._lock:
            if self.error is not None:
                raise ControllerError(f"kinematic backend: error not cleared: {self.error}")
            self.pose, self.target = pose.copy(), pose.copy()
            self.gripper = self.gripper_target = float(gripper)
