"""SO-101 follower arm (six STS3215 servos) with end-effector control through its kinematics.

* :data:`SO101_MOTORS` - LeRobot's motor names and ids.
* :class:`SO101Kinematics` - forward/inverse kinematics of the arm with the gripper pointing down.
* :class:`SO101Config` - serial port, LeRobot calibration file, kinematic zero offsets, joint step limit.
* :class:`SO101Backend` - reads/writes positions by sync read/write; EE targets -> IK -> goals, or
  joint targets (``action_mode="joints"``) straight to goals. Goals go out as coordinated moves (per-servo
  speed and acceleration in proportion to each joint's travel, so all joints arrive together and the
  arm follows the joint-space line), and :meth:`SO101Backend.ee_path` predicts the tool positions on
  that line so that the env can check them against the workspace box before anything is sent.

Joint units are LeRobot's: degrees (0 at the middle of the calibrated range) for the body, 0..100 for
the gripper, so existing LeRobot calibrations and datasets line up. Link lengths come from the SO-101
URDF joint origins (upper arm 0.116 m, forearm 0.135 m), planarised: pan about z, then three pitch joints.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from robots.backend import ControllerError, RobotBackend, RobotState
from robots.feetech import FeetechBus, MotorCalibration, load_calibration, normalize, unnormalize
from robots.geometry import EEPose, matrix_to_rpy, rpy_to_matrix

__all__ = ["SO101_MOTORS", "SO101Kinematics", "SO101Config", "SO101Backend"]

logger = logging.getLogger(__name__)

SO101_MOTORS = {
    "shoulder_pan": 1,
    "shoulder_lift": 2,
    "elbow_flex": 3,
    "wrist_flex": 4,
    "wrist_roll": 5,
    "gripper": 6,
}
BODY = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"]


@dataclass
class SO101Kinematics:
    """Planar-chain kinematics of the SO-101 with a fixed tool pitch (gripper pointing down by default).

    Kinematic angles (rad): pan about z; lift = upper arm's angle from vertical; elbow and wrist
    relative pitch. The tool's angle from vertical is ``lift + elbow + wrist`` (pi = pointing down).

    >>> k = SO101Kinematics()
    >>> q = k.inverse([0.2, 0.05, 0.1], yaw=0.3)
    >>> np.allclose(k.forward(q).position, [0.2, 0.05, 0.1], atol=1e-6)
    True
    """

    base_height: float = 0.119
    upper_arm: float = 0.116
    forearm: float = 0.135
    tool: float = 0.10
    tool_angle: float = math.pi

    def forward(self, q) -> EEPose:
        """Pose of the gripper tip from kinematic angles ``[pan, lift, elbow, wrist, roll]`` (rad)."""
        pan, lift, elbow, wrist, roll = (float(v) for v in q)
        a1, a2, a3 = lift, lift + elbow, lift + elbow + wrist
        r = self.upper_arm * math.sin(a1) + self.forearm * math.sin(a2) + self.tool * math.sin(a3)
        z = self.base_height + self.upper_arm * math.cos(a1) + self.forearm * math.cos(a2) + self.tool * math.cos(a3)
        position = np.array([r * math.cos(pan), r * math.sin(pan), z])
        # tool frame: x forward along the arm's plane, z along the tool; pointing down at a3 = pi
        rotation = rpy_to_matrix([math.pi, math.pi - a3, pan - roll])
        return EEPose(position, rotation)

    def inverse(self, position, yaw: float) -> np.ndarray:
        """Kinematic angles reaching ``position`` (m) with the tool at ``tool_angle`` and gripper ``yaw`` (rad).

        Raises ValueError when the point is out of reach (the env's workspace must lie within reach).
        """
        x, y, z = (float(v) for v in position)
        pan = math.atan2(y, x)
        r = math.hypot(x, y)
        a3 = self.tool_angle
        rw = r - self.tool * math.sin(a3)
        zw = z - self.base_height - self.tool * math.cos(a3)
        d2 = rw * rw + zw * zw
        c2 = (d2 - self.upper_arm**2 - self.forearm**2) / (2 * self.upper_arm * self.forearm)
        if not -1.0 <= c2 <= 1.0:
            raise ValueError(
                f"SO-101 cannot reach {[round(v, 4) for v in (x, y, z)]} m with the tool at "
                f"{self.tool_angle:.2f} rad (wrist distance {math.sqrt(d2):.3f} m, reach "
                f"{self.upper_arm + self.forearm:.3f} m)"
            )
        elbow = math.acos(c2)  # elbow up
        lift = math.atan2(rw, zw) - math.atan2(self.forearm * math.sin(elbow), self.upper_arm + self.forearm * math.cos(elbow))
        wrist = a3 - lift - elbow
        roll = pan - yaw
        return np.array([pan, lift, elbow, wrist, roll])


@dataclass
class SO101Config:
    """How to reach and drive one SO-101 follower.

    Args:
        port: serial device of the bus adapter.
        calibration_path: LeRobot calibration JSON (``.../calibration/robots/so101_follower/<id>.json``).
        joint_sign, joint_offset_deg: kinematic angle = sign * (LeRobot degrees) + offset, per body joint;
            check them once with ``python -m robots.check so101`` (the printed pose must match the arm).
        max_joint_step_deg: largest change of any joint goal from the present position per command (second fence
            after the env's limits; a longer move is cut short along its joint-space line and finished by later commands).
        joint_limits_deg: optional ``[[low, high]] * 5`` (LeRobot deg) narrowing the calibrated ranges.
        home_step_s: period of the joint-space interpolation used for homing.
        kinematics: link lengths and tool pitch.
        max_speed_steps_s: Goal_Velocity (steps/s, 4096 per turn) of the joint with the largest travel in a
            coordinated move; the other tip joints get proportionally less, so all arrive together. Keep it below
            what the servos reach under load (STS3215: ~3000 steps/s at 7.4 V), or the fast joint lags and the
            arm leaves the joint-space line.
        acceleration: Acceleration register (100 steps/s^2, 1..254; LeRobot writes 254) of that joint, scaled
            like the speed for the others.
        path_samples: points along the joint-space line at which :meth:`SO101Backend.ee_path` predicts the tool.
    """

    port: str = "/dev/ttyACM0"
    calibration_path: str = "~/.cache/huggingface/lerobot/calibration/robots/so101_follower/my_so101.json"
    joint_sign: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0, 1.0])
    joint_offset_deg: list[float] = field(default_factory=lambda: [0.0, 0.0, 90.0, 0.0, 0.0])
    max_joint_step_deg: float = 10.0
    joint_limits_deg: list[list[float]] | None = None
    home_step_s: float = 0.02
    kinematics: SO101Kinematics = field(default_factory=SO101Kinematics)
    max_speed_steps_s: int = 2000
    acceleration: int = 254
    path_samples: int = 8

    def __post_init__(self) -> None:
        if isinstance(self.kinematics, dict):
            self.kinematics = SO101Kinematics(**self.kinematics)
        if not 1 <= int(self.max_speed_steps_s) <= 32767:
            raise ValueError(f"max_speed_steps_s must be in 1..32767 (steps/s), got {self.max_speed_steps_s}")
        if not 1 <= int(self.acceleration) <= 254:
            raise ValueError(f"acceleration must be in 1..254 (100 steps/s^2), got {self.acceleration}")
        if int(self.path_samples) < 1:
            raise ValueError(f"path_samples must be >= 1, got {self.path_samples}")
        if self.joint_limits_deg is not None:
            lim = np.asarray(self.joint_limits_deg, dtype=float)
            if lim.shape != (5, 2) or not np.all(lim[:, 0] < lim[:, 1]):
                raise ValueError(
                    f"joint_limits_deg must be [[low, high]] for the 5 body joints {BODY} (deg, low < high), "
                    f"got {self.joint_limits_deg}"
                )


class SO101Backend(RobotBackend):
    """SO-101 follower over a Feetech bus; ``port`` may be an emulated port object for tests.

    >>> from robots.sim.feetech_bus import EmulatedServoPort
    >>> from robots.sim.so101_sim import sim_calibration, sim_port
    >>> arm = SO101Backend(SO101Config(), port=sim_port(), calibration=sim_calibration())
    >>> arm.connect(); arm.read_state().joints.shape
    (6,)
    """

    name = "so101"
    num_joints = 6

    def __init__(
        self,
        config: SO101Config | None = None,
        port=None,
        calibration: dict[str, MotorCalibration] | None = None,
        sleep=time.sleep,
    ) -> None:
        self.config = config or SO101Config()
        self.bus = FeetechBus(port if port is not None else self.config.port, SO101_MOTORS)
        self.calibration = calibration
        self.sleep = sleep
        self.kin = self.config.kinematics
        # goals (5,) deg planned by ee_path since the last command/stop/home, by pose: command_ee sends exactly these
        self._planned: dict[bytes, np.ndarray] = {}

    # -- units
    def _to_degrees(self, raw: dict[str, int]) -> np.ndarray:
        body = [normalize(raw[m], self.calibration[m], "degrees") for m in BODY]
        return np.array([*body, normalize(raw["gripper"], self.calibration["gripper"], "range_0_100")])

    def _to_kinematic(self, degrees: np.ndarray) -> np.ndarray:
        sign, off = np.asarray(self.config.joint_sign), np.asarray(self.config.joint_offset_deg)
        return np.radians(sign * degrees[:5] + off)

    def _from_kinematic(self, q: np.ndarray) -> np.ndarray:
        sign, off = np.asarray(self.config.joint_sign), np.asarray(self.config.joint_offset_deg)
        deg = (np.degrees(q) - off) / sign
        deg[4] = (deg[4] + 180.0) % 360.0 - 180.0  # wrist roll: nearest equivalent angle
        return deg

    # -- lifecycle
    def connect(self) -> None:
        """Open the bus, write the LeRobot calibration to the servos, enable torque."""
        if self.calibration is None:
            self.calibration = load_calibration(self.config.calibration_path)
        missing = set(SO101_MOTORS) - set(self.calibration)
        if missing:
            raise ValueError(f"calibration lacks motors {sorted(missing)}; expected {list(SO101_MOTORS)}")
        self.bus.connect()
        self.bus.set_torque(False)
        self.bus.write_calibration(self.calibration)
        present = self.bus.sync_read("Present_Position")
        # hold where it is before torque comes on, at top speed (a previous session may have left slow speeds)
        self.bus.sync_write_moves({m: (t, 0, self.config.acceleration) for m, t in present.items()})
        self.bus.set_torque(True)

    def disconnect(self) -> None:
        """Hold position and close the port (torque stays on so the arm does not fall)."""
        self.stop()
        self.bus.disconnect()

    def read_state(self) -> RobotState:
        """Joints in LeRobot units ``[5 body joints in deg, gripper 0..100]``, FK pose, gripper in [0, 1]."""
        degrees = self._to_degrees(self.bus.sync_read("Present_Position"))
        pose = self.kin.forward(self._to_kinematic(degrees))
        return RobotState(pose, float(degrees[5] / 100.0), degrees)

    def joint_target(self, pose: EEPose) -> np.ndarray:
        """Body-joint goals (5,) LeRobot deg that put the tool at ``pose``: IK, rounded to servo ticks.

        Raises ControllerError when ``pose`` is out of reach.
        """
        yaw = float(matrix_to_rpy(pose.rotation)[2])
        try:
            q = self.kin.inverse(pose.position, yaw)
        except ValueError as exc:
            raise ControllerError(f"so101 IK failed: {exc}") from exc
        return self.quantize_joints(self._from_kinematic(q))

    def metered(self, goals_deg, present_deg) -> np.ndarray:
        """The goals (5,) deg one command may send toward ``goals_deg``: at most ``max_joint_step_deg`` per joint.

        The step of the four joints that place the tip is scaled as a whole, so a goal cut short still lies
        on the joint-space line to ``goals_deg`` (the way :meth:`ee_path` checked); the roll is clipped alone.
        """
        goals, present = np.asarray(goals_deg, dtype=float), np.asarray(present_deg, dtype=float)[:5]
        step = goals - present
        lim = self.config.max_joint_step_deg
        longest = float(np.max(np.abs(step[:4])))
        if longest <= lim and abs(step[4]) <= lim:
            return goals
        if longest > lim:
            step[:4] *= lim / longest
        step[4] = np.clip(step[4], -lim, lim)
        return self.quantize_joints(present + step)

    def ee_path(self, pose: EEPose, state: RobotState) -> np.ndarray:
        """(k, 3) m: the tool's way from where ``state`` has it (first row) to where the goals for ``pose`` put it (last).

        A coordinated move follows the joint-space line from the present joints to the goals, so the tool
        passes through the FK of points on that line (``path_samples`` of them), not along the Cartesian
        segment; a goal metered by the per-command joint limit (:meth:`metered`) lies on it and is included.
        The goals are remembered: :meth:`command_ee` with the same pose sends exactly them.
        """
        present = np.asarray(state.joints, dtype=float)[:5]
        goals = self.joint_target(pose)
        sent = self.metered(goals, present)
        self._planned[_pose_key(pose)] = sent
        fractions = np.linspace(0.0, 1.0, int(self.config.path_samples) + 1)
        way = [self.joint_pose(present + f * (goals - present)).position for f in fractions]
        return np.array([*way[:-1], self.joint_pose(sent).position, way[-1]])

    def _move(self, goals_deg, gripper: float, present_deg: np.ndarray) -> None:
        """One sync write: body goals as a coordinated move from ``present_deg``, the gripper at top speed."""
        goals_deg = np.asarray(goals_deg, dtype=float)
        travel = np.abs(goals_deg - present_deg[:5])
        cfg = self.config
        longest = float(travel[:4].max())  # pan, lift, elbow, wrist flex place the tip; the roll only turns it
        share = travel / longest if longest > 0 else np.ones(5)
        moves = {}
        for i, m in enumerate(BODY):
            speed, acc = (0, cfg.acceleration) if i == 4 else (
                max(1, round(cfg.max_speed_steps_s * share[i])), max(1, round(cfg.acceleration * share[i])))
            moves[m] = (unnormalize(float(goals_deg[i]), self.calibration[m], "degrees"), speed, acc)
        grip = unnormalize(float(np.clip(gripper, 0, 1)) * 100.0, self.calibration["gripper"], "range_0_100")
        moves["gripper"] = (grip, 0, cfg.acceleration)
        self.bus.sync_write_moves(moves)

    # -- joint-space control (RobotEnv action_mode="joints")
    def joint_limits_deg(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) (5,) LeRobot degrees of the body joints: calibrated ranges, narrowed by the config."""
        low = np.array([normalize(self.calibration[m].range_min, self.calibration[m], "degrees") for m in BODY])
        high = np.array([normalize(self.calibration[m].range_max, self.calibration[m], "degrees") for m in BODY])
        low, high = np.minimum(low, high), np.maximum(low, high)  # drive_mode 1 flips the sign
        if self.config.joint_limits_deg is not None:
            lim = np.asarray(self.config.joint_limits_deg, dtype=float)
            low, high = np.maximum(low, lim[:, 0]), np.minimum(high, lim[:, 1])
        return low, high

    def quantize_joints(self, degrees) -> np.ndarray:
        """The body-joint degrees (5,) the servos will really hold for ``degrees`` (tick rounding, ranges)."""
        return np.array([
            normalize(unnormalize(float(d), self.calibration[m], "degrees"), self.calibration[m], "degrees")
            for m, d in zip(BODY, degrees, strict=True)
        ])

    def joint_pose(self, degrees) -> EEPose:
        """Forward kinematics of body-joint LeRobot degrees (5,)."""
        return self.kin.forward(self._to_kinematic(np.asarray(degrees, dtype=float)))

    def command_joints(self, degrees, gripper: float) -> None:
        """One coordinated move to body-joint goals (5,) deg (already safe) and the gripper opening in [0, 1]."""
        with self.bus.lock:
            present = self._to_degrees(self.bus.sync_read("Present_Position"))
            self._move(self.metered(degrees, present), gripper, present)

    def command_ee(self, pose: EEPose, gripper: float) -> None:
        """One coordinated move to the goals for ``pose``: those :meth:`ee_path` checked, else IK from the present."""
        with self.bus.lock:
            present = self._to_degrees(self.bus.sync_read("Present_Position"))
            goals = self._planned.get(_pose_key(pose))
            if goals is None:
                goals = self.metered(self.joint_target(pose), present)
            self._planned.clear()
            self._move(goals, gripper, present)

    def stop(self) -> None:
        """Goals := present positions (the arm holds; torque stays on)."""
        self._planned.clear()  # planned from a state the arm is no longer heading from
        with self.bus.lock:
            self.bus.sync_write("Goal_Position", self.bus.sync_read("Present_Position"))

    def recover(self) -> None:
        """Torque off/on clears an overload; re-hold the present position."""
        self._planned.clear()
        with self.bus.lock:
            self.bus.set_torque(False)
            self.bus.sync_write("Goal_Position", self.bus.sync_read("Present_Position"))
            self.bus.set_torque(True)

    def home(self, pose: EEPose, gripper: float, speed: float, max_steps: int = 2000) -> None:
        """Move to ``pose`` along a straight Cartesian line (IK per waypoint) at ``speed`` and block.

        Waypoints advance ``speed * 5 mm`` per bus cycle, so the path stays between start and home
        (joint-space interpolation would bow out of the workspace). Falls back to joint-space
        interpolation only where a waypoint is out of reach (e.g. starting from the folded rest pose).
        """
        self._planned.clear()
        yaw = float(matrix_to_rpy(pose.rotation)[2])
        try:
            target_deg = self._from_kinematic(self.kin.inverse(pose.position, yaw))
        except ValueError as exc:
            raise ControllerError(f"so101 home pose unreachable: {exc}") from exc
        step_m = max(0.0005, speed * 0.005)
        step_deg = max(0.5, speed * self.config.max_joint_step_deg)
        for _ in range(max_steps):
            state = self.read_state()
            present = state.joints
            if np.max(np.abs(target_deg - present[:5])) < 1.0 and abs(present[5] - gripper * 100) < 2.0:
                return
            delta = pose.position - state.pose.position
            dist = float(np.linalg.norm(delta))
            waypoint = pose.position if dist <= step_m else state.pose.position + delta * (step_m / dist)
            try:
                goal_deg = self._from_kinematic(self.kin.inverse(waypoint, yaw))
            except ValueError:
                goal_deg = target_deg
            goal_deg = present[:5] + np.clip(goal_deg - present[:5], -step_deg, step_deg)
            self._move(goal_deg, gripper, present)
            self.sleep(self.config.home_step_s)
        raise ControllerError(
            f"so101 did not reach home {np.round(target_deg, 1).tolist()} deg within {max_steps} steps"
        )


def _pose_key(pose: EEPose) -> bytes:
    """Exact identity of a pose (position and rotation bytes), to find the goals planned for it."""
    return pose.position.tobytes() + pose.rotation.tobytes()
