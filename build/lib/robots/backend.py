"""The interface every robot backend implements, and the errors it raises.

* :class:`RobotState` - what a backend reads: end-effector pose, gripper opening, joint positions.
* :class:`RobotBackend` - connect / read_state / command_ee / stop / recover / home / disconnect, and
  ``ee_path``: where the tool will go for a target (checked against the box before it is sent).
* :class:`ControllerError` - the controller refused or faulted; :meth:`RobotBackend.recover` may fix it.
* :class:`RobotError` - a fault that recovery could not fix; a person has to look at the robot.
* :class:`RecordingBackend` - a proxy that records every commanded target (for tests and checks).

Backends do no safety filtering of their own beyond controller-side fences; the env
(:mod:`robots.base`) owns the limits so that all robots share one tested implementation.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from robots.geometry import EEPose

__all__ = ["RobotState", "RobotBackend", "ControllerError", "RobotError", "RecordingBackend"]


class ControllerError(RuntimeError):
    """The robot controller reported an error (reflex, limit, lost servo packet); recoverable."""


class RobotError(RuntimeError):
    """A robot fault that automatic recovery could not clear."""


@dataclass
class RobotState:
    """One reading of the robot.

    Args:
        pose: end-effector pose in the base frame (m, rotation matrix).
        gripper: opening in [0, 1] (0 closed, 1 fully open).
        joints: (n,) joint positions (rad for arms with rad joints, deg for SO-101's LeRobot units).
    """

    pose: EEPose
    gripper: float
    joints: np.ndarray = field(default_factory=lambda: np.zeros(0))


class RobotBackend(ABC):
    """A robot the env can drive; one subclass per SDK (franky, xArm, Feetech) plus fakes.

    Lifecycle (LeRobot-style): ``connect()`` -> ``read_state()`` / ``command_ee()`` at the control
    rate -> ``disconnect()``. ``stop()`` must be safe to call from any thread.
    """

    name: str = "robot"
    num_joints: int = 0

    @abstractmethod
    def connect(self) -> None:
        """Open the connection, enable motion, set up controller-side fences."""

    @abstractmethod
    def disconnect(self) -> None:
        """Stop motion and close the connection."""

    @abstractmethod
    def read_state(self) -> RobotState:
        """Current pose, gripper and joints; raises :class:`ControllerError` on a controller fault."""

    @abstractmethod
    def command_ee(self, pose: EEPose, gripper: float) -> None:
        """Stream one end-effector target (already safe) and gripper opening in [0, 1]; non-blocking."""

    @abstractmethod
    def stop(self) -> None:
        """Halt motion now and hold position; thread-safe."""

    @abstractmethod
    def recover(self) -> None:
        """Clear controller errors and re-enable motion; raises :class:`ControllerError` if it cannot."""

    @abstractmethod
    def home(self, pose: EEPose, gripper: float, speed: float) -> None:
        """Move to ``pose`` slowly (``speed`` in (0, 1], a fraction of the arm's limits) and block."""

    def resume(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Re-enable motion after :meth:`stop` (default: nothing to do)."""

    def ee_path(self, pose: EEPose, state: RobotState) -> np.ndarray:
        """(k, 3) m: the tool's way if ``pose`` is commanded now, from where ``state`` has it (first row) to the end.

        The last row is where the joints the backend solves for ``pose`` put the tool. Backends that solve the
        joints themselves (SO-101) return the forward kinematics of those joints and of the way to them; the
        default, for arms whose controller tracks the Cartesian pose itself (franky, xArm servo mode), is the
        straight segment's ends, measured position -> target. Raises ControllerError when ``pose`` is out of reach.
        """
        return np.stack([np.asarray(state.pose.position, dtype=float), np.asarray(pose.position, dtype=float)])


class RecordingBackend(RobotBackend):
    """Wraps a backend and records every target it is told to command.

    ``commands`` holds ``(kind, EEPose, gripper)`` with kind ``"step"`` or ``"home"``.

    >>> from robots.sim.kinematic import KinematicBackend
    >>> rec = RecordingBackend(KinematicBackend())
    >>> rec.connect(); rec.command_ee(rec.read_state().pose, 1.0); len(rec.commands)
    1
    """

    def __init__(self, inner: RobotBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.num_joints = inner.num_joints
        self.commands: list[tuple[str, EEPose, float]] = []
        self.stops = 0
        self._lock = threading.Lock()

    def connect(self) -> None:
        """Connect the wrapped backend."""
        self.inner.connect()

    def disconnect(self) -> None:
        """Disconnect the wrapped backend."""
        self.inner.disconnect()

    def read_state(self) -> RobotState:
        """Read the wrapped backend."""
        return self.inner.read_state()

    def command_ee(self, pose: EEPose, gripper: float) -> None:
        """Record, then forward."""
        with self._lock:
            self.commands.append(("step", pose.copy(), float(gripper)))
        self.inner.command_ee(pose, gripper)

    def stop(self) -> None:
        """Count, then forward."""
        self.stops += 1
        self.inner.stop()

    def recover(self) -> None:
        """Forward."""
        self.inner.recover()

    def home(self, pose: EEPose, gripper: float, speed: float) -> None:
        """Record, then forward."""
        with self._lock:
            self.commands.append(("home", pose.copy(), float(gripper)))
        self.inner.home(pose, gripper, speed)

    def resume(self) -> None:
        """Forward."""
        self.inner.resume()

    def ee_path(self, pose: EEPose, state: RobotState) -> np.ndarray:
        """Forward (the wrapped backend's prediction, not the default)."""
        return self.inner.ee_path(pose, state)

    def __getattr__(self, item):
        return getattr(self.inner, item)
