"""UFACTORY xArm (5/6/7, Lite 6) through ``xarm-python-sdk``.

* :class:`XArmConfig` - controller IP, gripper, speed limits, controller-side fence.
* :class:`XArmBackend` - servo Cartesian mode (mode 1) streamed at the control rate; the
  controller's reduced-mode TCP boundary is set to the env's workspace box as a second fence;
  errors are cleared with clean_error -> motion_enable -> set_mode -> set_state.

Units at the SDK: mm and rad (``is_radian=True``); in the env: m and rad.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robots.backend import ControllerError, RobotBackend, RobotState
from robots.geometry import EEPose, rpy_to_matrix

__all__ = ["XArmConfig", "XArmBackend"]

logger = logging.getLogger(__name__)

SERVO_MODE = 1  # servo Cartesian streaming
POSITION_MODE = 0
STATE_READY, STATE_STOP = 0, 4
GRIPPER_MAX = 850.0  # xArm gripper position units at fully open


@dataclass
class XArmConfig:
    """How to reach and drive one xArm.

    Args:
        ip: controller address (the robot's control box).
        gripper: drive the xArm gripper.
        home_speed_mm_s: TCP speed (mm/s) of homing moves at ``speed=1``; the env scales it by home_speed.
        reduced_tcp_speed_mm_s: controller-side TCP speed cap in reduced mode.
        fence: set the controller's reduced-mode TCP boundary to the workspace box and turn it on.
        fence_margin_m: the controller fence sits this far outside the env's box (so it only trips on a bug).
        workspace_low, workspace_high: (3,) m, filled from the env's safety config by ``make_robot_env``.
    """

    ip: str = "192.168.1.185"
    gripper: bool = True
    home_speed_mm_s: float = 200.0
    reduced_tcp_speed_mm_s: float = 250.0
    fence: bool = True
    fence_margin_m: float = 0.02
    workspace_low: tuple[float, float, float] = (0.2, -0.3, 0.05)
    workspace_high: tuple[float, float, float] = (0.5, 0.3, 0.4)


def _code(ret) -> int:
    """The SDK returns either ``code`` or ``(code, value)``."""
    return int(ret[0] if isinstance(ret, (tuple, list)) else ret)


class XArmBackend(RobotBackend):
    """An xArm streamed in servo Cartesian mode; ``api_factory`` swaps in a fake controller for tests.

    >>> from robots.sim.fake_xarm import FakeXArmAPI
    >>> arm = XArmBackend(XArmConfig(), api_factory=lambda ip: FakeXArmAPI(ip))
    >>> arm.connect(); arm.read_state().pose.position.round(3).tolist()
    [0.3, 0.0, 0.3]
    """

    name = "xarm"

    def __init__(self, config: XArmConfig | None = None, api_factory: Callable[[str], object] | None = None) -> None:
        self.config = config or XArmConfig()
        self._api_factory = api_factory
        self.api = None
        self._last_gripper: float | None = None
        self.num_joints = 7

    def _call(self, method: str, *args, **kwargs):
        """Call an SDK method; a non-zero code becomes ControllerError naming the controller's error code."""
        ret = getattr(self.api, method)(*args, **kwargs)
        code = _code(ret)
        if code != 0:
            raise ControllerError(
                f"xArm {method} returned code {code} (controller error_code={self.api.error_code}, "
                f"warn_code={self.api.warn_code}, state={self.api.state}, mode={self.api.mode})"
            )
        return ret[1] if isinstance(ret, (tuple, list)) and len(ret) > 1 else None

    def connect(self) -> None:
        """Connect, clear errors, set the TCP fence, enable the gripper, enter servo mode."""
        if self._api_factory is not None:
            self.api = self._api_factory(self.config.ip)
        else:
            try:
                from xarm.wrapper import XArmAPI
            except ImportError as exc:
                raise ImportError("XArmBackend needs xarm-python-sdk: pip install 'rlrm[robots]'") from exc
            self.api = XArmAPI(self.config.ip, is_radian=True)
        if not self.api.connected:
            raise ConnectionError(f"could not connect to the xArm controller at {self.config.ip}")
        self.api.clean_warn()
        self.api.clean_error()
        self._call("motion_enable", enable=True)
        self._call("set_mode", POSITION_MODE)
        self._call("set_state", STATE_READY)
        if self.config.fence:
            m = self.config.fence_margin_m
            lo = (np.asarray(self.config.workspace_low) - m) * 1000.0
            hi = (np.asarray(self.config.workspace_high) + m) * 1000.0
            self._call("set_reduced_tcp_boundary", [hi[0], lo[0], hi[1], lo[1], hi[2], lo[2]])
            self._call("set_reduced_max_tcp_speed", self.config.reduced_tcp_speed_mm_s)
            self._call("set_reduced_mode", True)
            self._call("set_fence_mode", True)
        if self.config.gripper:
            self._call("set_gripper_mode", 0)
            self._call("set_gripper_enable", True)
        self._enter_servo_mode()
        angles = self._call("get_servo_angle", is_radian=True)
        self.num_joints = len(angles)

    def _enter_servo_mode(self) -> None:
        self._call("motion_enable", enable=True)
        self._call("set_mode", SERVO_MODE)
        self._call("set_state", STATE_READY)

    def disconnect(self) -> None:
        """Stop motion and close the connection."""
        if self.api is not None:
            self.api.set_state(STATE_STOP)
            self.api.disconnect()
            self.api = None

    def read_state(self) -> RobotState:
        """TCP pose (mm -> m), joint angles (rad), gripper (0 closed .. 1 open)."""
        pos = np.asarray(self._call("get_position", is_radian=True), dtype=float)
        angles = np.asarray(self._call("get_servo_angle", is_radian=True), dtype=float)
        gripper = 1.0
        if self.config.gripper:
            gripper = float(np.clip(self._call("get_gripper_position") / GRIPPER_MAX, 0.0, 1.0))
        return RobotState(EEPose(pos[:3] / 1000.0, rpy_to_matrix(pos[3:6])), gripper, angles)

    def command_ee(self, pose: EEPose, gripper: float) -> None:
        """Stream one servo Cartesian target; move the gripper when its target changes by > 5%."""
        mvpose = [*(pose.position * 1000.0).tolist(), *pose.rpy.tolist()]
        self._call("set_servo_cartesian", mvpose, is_radian=True)
        if self.config.gripper and (self._last_gripper is None or abs(gripper - self._last_gripper) > 0.05):
            self._call("set_gripper_position", gripper * GRIPPER_MAX, wait=False)
            self._last_gripper = gripper

    def stop(self) -> None:
        """Controller stop state (4): motion halts, the arm holds."""
        if self.api is not None:
            self.api.set_state(STATE_STOP)

    def resume(self) -> None:
        """Back to servo mode after a stop."""
        self._enter_servo_mode()

    def recover(self) -> None:
        """clean_error -> clean_warn -> motion_enable -> set_mode(1) -> set_state(0); raise if still faulted."""
        code, (err, warn) = self.api.get_err_warn_code()
        logger.warning("xArm recovering from error_code=%s warn_code=%s", err, warn)
        self.api.clean_error()
        self.api.clean_warn()
        self._enter_servo_mode()
        if self.api.error_code != 0 or self.api.state == STATE_STOP:
            raise ControllerError(
                f"xArm error_code={self.api.error_code} (state={self.api.state}) persists after clean_error"
            )

    def home(self, pose: EEPose, gripper: float, speed: float) -> None:
        """Position-mode move to ``pose`` at ``speed * home_speed_mm_s`` and wait, then back to servo mode."""
        self._call("set_mode", POSITION_MODE)
        self._call("set_state", STATE_READY)
        x, y, z = (pose.position * 1000.0).tolist()
        roll, pitch, yaw = pose.rpy.tolist()
        self._call(
            "set_position", x=x, y=y, z=z, roll=roll, pitch=pitch, yaw=yaw,
            speed=speed * self.config.home_speed_mm_s, is_radian=True, wait=True,
        )
        if self.config.gripper:
            self._call("set_gripper_position", gripper * GRIPPER_MAX, wait=True)
            self._last_gripper = gripper
        self._enter_servo_mode()
