"""A fake xArm controller with the SDK's method names, return codes and error behaviour.

* :class:`FakeXArmAPI` - stands in for ``xarm.wrapper.XArmAPI`` (no simulator exists on PyPI):
  integrates servo Cartesian targets at a bounded TCP speed, enforces modes/states, trips
  controller error C35 (safety boundary) when a target leaves the reduced-mode TCP fence, and
  needs clean_error -> motion_enable -> set_mode -> set_state to move again, like the real box.

Return codes follow ``xarm.x3.code.APIState``: 0 ok, 1 has error, 9 not ready, 51 mode wrong.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["FakeXArmAPI"]

OK, HAS_ERROR, NOT_READY, MODE_WRONG = 0, 1, 9, 51
ERROR_SAFETY_BOUNDARY = 35  # controller error C35: TCP left the safety boundary


class FakeXArmAPI:
    """Fake ``XArmAPI``: pose in mm/rad, 7 joints, gripper 0..850.

    Args:
        port: controller IP (ignored).
        servo_dt: seconds one ``set_servo_cartesian`` call integrates (the control period).
        max_tcp_speed: mm/s the TCP may move toward its servo target.

    >>> api = FakeXArmAPI("127.0.0.1")
    >>> api.motion_enable(True), api.set_mode(1), api.set_state(0)
    (0, 0, 0)
    >>> api.set_servo_cartesian([310, 0, 300, np.pi, 0, 0], is_radian=True), api.get_position(is_radian=True)[1][0]
    (0, 310.0)
    """

    def __init__(self, port: str = "127.0.0.1", servo_dt: float = 0.1, max_tcp_speed: float = 250.0, **_) -> None:
        self.port = port
        self.connected = True
        self.servo_dt, self.max_tcp_speed = servo_dt, max_tcp_speed
        self.error_code = 0
        self.warn_code = 0
        self.state = 4  # a freshly booted arm is stopped and disabled
        self.mode = 0
        self.enabled = False
        self._pose = np.array([300.0, 0.0, 300.0, np.pi, 0.0, 0.0])
        self.gripper_pos = 850.0
        self.gripper_enabled = False
        self.boundary: list[float] | None = None
        self.reduced_mode = False
        self.fence_on = False
        self.servo_log: list[np.ndarray] = []  # every set_servo_cartesian target (mm, rad)
        self.position_log: list[np.ndarray] = []  # every set_position target (mm, rad)
        self._lock = threading.Lock()

    # -- helpers
    def inject_error(self, code: int = 22) -> None:
        """Fault the controller with error ``code`` (e.g. 22 self-collision, 31 abnormal current)."""
        with self._lock:
            self.error_code, self.state, self.enabled = code, 4, False

    def _ready_code(self, need_mode: int | None = None) -> int:
        if self.error_code:
            return HAS_ERROR
        if not self.enabled or self.state == 4:
            return NOT_READY
        if need_mode is not None and self.mode != need_mode:
            return MODE_WRONG
        return OK

    def _outside_fence(self, xyz: np.ndarray) -> bool:
        if not (self.fence_on and self.boundary):
            return False
        x_max, x_min, y_max, y_min, z_max, z_min = self.boundary
        return not (x_min <= xyz[0] <= x_max and y_min <= xyz[1] <= y_max and z_min <= xyz[2] <= z_max)

    # -- connection and state machine
    def connect(self, *_, **__) -> None:
        """Mark connected."""
        self.connected = True

    def disconnect(self) -> None:
        """Mark disconnected."""
        self.connected = False

    def clean_error(self) -> int:
        """Clear the error; the arm stays disabled until motion_enable + set_state."""
        self.error_code = 0
        return OK

    def clean_warn(self) -> int:
        """Clear warnings."""
        self.warn_code = 0
        return OK

    def motion_enable(self, enable: bool = True, servo_id=None) -> int:
        """Enable/disable the joints (refused while an error is set)."""
        if self.error_code:
            return HAS_ERROR
        self.enabled = bool(enable)
        return OK

    def set_mode(self, mode: int = 0, detection_param: int = 0) -> int:
        """0 position, 1 servo; takes effect with set_state(0)."""
        self.mode = int(mode)
        return OK

    def set_state(self, state: int = 0) -> int:
        """0 ready (reported as 2, idle), 3 pause, 4 stop."""
        with self._lock:
            if state == 0:
                if self.error_code:
                    return HAS_ERROR
                self.state = 2 if self.enabled else 4
            else:
                self.state = int(state)
        return OK

    def get_state(self):
        """(code, state)."""
        return OK, self.state

    def get_err_warn_code(self, show: bool = False, lang: str = "en"):
        """(code, [error_code, warn_code])."""
        return OK, [self.error_code, self.warn_code]

    def emergency_stop(self) -> None:
        """Stop state."""
        self.state = 4

    # -- fences
    def set_reduced_tcp_boundary(self, boundary) -> int:
        """[x_max, x_min, y_max, y_min, z_max, z_min] mm."""
        b = [float(v) for v in boundary]
        if len(b) != 6 or b[0] <= b[1] or b[2] <= b[3] or b[4] <= b[5]:
            return 12  # PARAM_ERROR
        self.boundary = b
        return OK

    def set_reduced_max_tcp_speed(self, speed) -> int:
        """TCP speed cap (mm/s) in reduced mode."""
        self.reduced_tcp_speed = float(speed)
        return OK

    def set_reduced_mode(self, on) -> int:
        """Reduced mode on/off."""
        self.reduced_mode = bool(on)
        return OK

    def set_fence_mode(self, on) -> int:
        """Safety boundary on/off."""
        self.fence_on = bool(on)
        return OK

    # -- reading
    @property
    def position(self) -> list[float]:
        """Current TCP pose [x, y, z (mm), roll, pitch, yaw (rad)]."""
        return self._pose.tolist()

    def get_position(self, is_radian=None):
        """(code, [x, y, z, roll, pitch, yaw]) mm and rad (degrees unless is_radian)."""
        pose = self._pose.copy()
        if not is_radian:
            pose[3:] = np.degrees(pose[3:])
        return OK, pose.tolist()

    def get_servo_angle(self, servo_id=None, is_radian=None, is_real=False):
        """(code, 7 joint angles); derived from the pose so they move when the arm moves."""
        angles = np.concatenate([self._pose[:3] / 1000.0, self._pose[3:], [0.0]])
        return OK, (angles if is_radian else np.degrees(angles)).tolist()

    # -- motion
    def set_servo_cartesian(self, mvpose, speed=None, mvacc=None, mvtime=0, is_radian=None, is_tool_coord=False, **_):
        """Servo target (mode 1): the TCP integrates toward it for one ``servo_dt``."""
        with self._lock:
            code = self._ready_code(need_mode=1)
            if code:
                return code
            target = np.asarray(mvpose, dtype=float).copy()
            if not is_radian:
                target[3:] = np.radians(target[3:])
            self.servo_log.append(target.copy())
            if self._outside_fence(target[:3]):
                self.error_code, self.state, self.enabled = ERROR_SAFETY_BOUNDARY, 4, False
                return HAS_ERROR
            delta = target[:3] - self._pose[:3]
            max_d = self.max_tcp_speed * self.servo_dt
            dist = float(np.linalg.norm(delta))
            self._pose[:3] += delta if dist <= max_d else delta * (max_d / dist)
            self._pose[3:] = target[3:]
            self.state = 1
            return OK

    def set_position(self, x=None, y=None, z=None, roll=None, pitch=None, yaw=None, radius=None, speed=None,
                     mvacc=None, mvtime=None, relative=False, is_radian=None, wait=False, timeout=None, **_):
        """Position-mode move (mode 0); completes immediately in the fake."""
        with self._lock:
            code = self._ready_code(need_mode=0)
            if code:
                return code
            target = self._pose.copy()
            for i, v in enumerate((x, y, z)):
                if v is not None:
                    target[i] = v
            for i, v in enumerate((roll, pitch, yaw)):
                if v is not None:
                    target[3 + i] = v if is_radian else np.radians(v)
            self.position_log.append(target.copy())
            if self._outside_fence(target[:3]):
                self.error_code, self.state, self.enabled = ERROR_SAFETY_BOUNDARY, 4, False
                return HAS_ERROR
            self._pose = target
            return OK

    # -- gripper
    def set_gripper_mode(self, mode, **_) -> int:
        """0: position mode."""
        return OK

    def set_gripper_enable(self, enable, **_) -> int:
        """Enable the gripper."""
        self.gripper_enabled = bool(enable)
        return OK

    def set_gripper_position(self, pos, wait=False, speed=None, auto_enable=False, timeout=None, **_) -> int:
        """Move the gripper to ``pos`` (0..850)."""
        if self.error_code:
            return HAS_ERROR
        self.gripper_pos = float(np.clip(pos, 0.0, 850.0))
        return OK

    def get_gripper_position(self, **_):
        """(code, position 0..850)."""
        return OK, self.gripper_pos
