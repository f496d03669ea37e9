"""A real robot as a gymnasium env, with all safety handling in one place.

* :class:`RobotEnvConfig` - task, control rate, action mode, step sizes, safety, home/reset, what the policy
  observes (Hydra-fillable).
* :class:`RobotEnv` - end-effector (or joint, ``action_mode="joints"``) delta actions in [-1, 1] -> safe
  targets -> a :class:`RobotBackend`.
* :class:`RobotStoppedError` - ``reset()`` after ``stop()`` without ``resume()``.

Per step: teleop may replace the action -> NaN/inf check (robot holds, error raised) -> scale by
step sizes -> :class:`~robots.safety.SafetyFilter` (orientation range, per-step limits, workspace
box) -> :class:`~robots.safety.ReachFilter` (the tool path the backend predicts for the target, e.g. the
FK of the SO-101's joint goals, inside the box; in joint mode :class:`~robots.safety.JointSafetyFilter`:
joint limits, per-step joint limit, FK inside the box) -> backend (with bounded controller-error
recovery) -> rate limiter -> observation.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from robots.backend import ControllerError, RobotBackend, RobotError, RobotState
from robots.geometry import EEPose, matrix_to_rotvec, rpy_to_matrix
from robots.safety import (
    JointSafetyFilter,
    RateLimiter,
    ReachFilter,
    SafetyConfig,
    SafetyFilter,
    UnsafeActionError,
    check_action,
)

__all__ = ["RobotEnvConfig", "RobotEnv", "RobotStoppedError", "ACTION_MODES", "POLICY_OBS"]

logger = logging.getLogger(__name__)

# action layout before the gripper entry: which end-effector axes the policy moves
ACTION_MODES = {"xyz": 3, "xyz_yaw": 4, "xyz_rpy": 6}
# joint-space action: one delta per body joint (count from the backend's joint limits) + gripper
JOINT_MODE = "joints"
# what the policy observes: proprioception only, or camera images as well (the reward model sees cameras either way)
POLICY_OBS = ("state", "images")


class RobotStoppedError(RuntimeError):
    """The env was stopped (``env.stop()``, stop key, signal) and must be resumed explicitly."""


@dataclass
class RobotEnvConfig:
    """What every robot env needs, independent of the SDK.

    Args:
        task: instruction text, exposed as ``env.unwrapped.task`` and ``info["task"]``.
        fps: control rate (Hz); each ``step`` takes one period.
        action_mode: ``"xyz"``, ``"xyz_yaw"``, ``"xyz_rpy"`` (end effector) or ``"joints"`` (per-joint
            deltas; backends with ``command_joints``, i.e. SO-101); the gripper is always the last entry.
        step_size_m: end-effector translation for action 1.0 (m per step).
        step_size_rad: rotation for action 1.0 (rad per step).
        joint_step_deg: per-joint change for action 1.0 (deg per step), ``action_mode="joints"`` only.
        safety: workspace box and per-step limits (:class:`SafetyConfig`).
        home_pose: ``[x, y, z, roll, pitch, yaw]`` (m, rad) reached on reset; must lie in the workspace.
        home_speed: fraction (0, 1] of the arm's speed limits used for resets.
        reset_randomize_m: (3,) half-widths (m) of a box around home to start episodes from.
        wait_for_person: ask on stdin (Enter) before each episode so a person can reset the scene.
        max_recover_attempts: controller-error recoveries tried per call before raising RobotError.
        max_episode_steps: steps after which ``step`` returns ``truncated=True`` (None: never).
        seed: seed of the reset randomisation.
        policy_obs: ``"state"`` (default): the observation holds ``ee_pose``/``gripper``/``joints`` only and
            camera frames are read through ``render()`` / ``render_camera(name)`` (what the reward model
            sees); ``"images"``: each camera's frame is in the observation too. A CPU cannot train SAC on
            128 px images at a robot's control rate (~0.9 s per gradient step against a 67 ms period).
    """

    task: str = "do the task"
    fps: float = 10.0
    action_mode: str = "xyz"
    step_size_m: float = 0.01
    step_size_rad: float = 0.05
    joint_step_deg: list[float] = field(default_factory=lambda: [3.0] * 5)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    home_pose: list[float] = field(default_factory=lambda: [0.45, 0.0, 0.25, np.pi, 0.0, 0.0])
    home_speed: float = 0.1
    reset_randomize_m: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    wait_for_person: bool = False
    max_recover_attempts: int = 3
    max_episode_steps: int | None = 200
    seed: int | None = None
    policy_obs: str = "state"

    def __post_init__(self) -> None:
        if isinstance(self.safety, dict):
            self.safety = SafetyConfig(**self.safety)
        if self.action_mode not in ACTION_MODES and self.action_mode != JOINT_MODE:
            raise ValueError(
                f"action_mode must be one of {sorted(ACTION_MODES) + [JOINT_MODE]}, got {self.action_mode!r}"
            )
        if self.policy_obs not in POLICY_OBS:
            raise ValueError(f"policy_obs must be one of {list(POLICY_OBS)}, got {self.policy_obs!r}")
        if not all(float(s) > 0 for s in self.joint_step_deg):
            raise ValueError(f"joint_step_deg must be > 0 (deg per step), got {self.joint_step_deg}")
        if len(self.home_pose) != 6:
            raise ValueError(f"home_pose must be [x, y, z, roll, pitch, yaw] (m, rad), got {self.home_pose}")
        if not self.safety.contains(self.home_pose[:3]):
            raise ValueError(
                f"home_pose position {list(self.home_pose[:3])} is outside the workspace "
                f"{self.safety.workspace_low}..{self.safety.workspace_high}"
            )
        if not 0 < self.home_speed <= 1:
            raise ValueError(f"home_speed must be in (0, 1], got {self.home_speed}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.step_size_m > self.safety.max_step_m:
            logger.warning(
                "step_size_m=%.3f exceeds safety.max_step_m=%.3f: full actions will be clipped",
                self.step_size_m,
                self.safety.max_step_m,
            )


class RobotEnv(gym.Env):
    """A robot arm as a gymnasium env: EE-delta actions, camera + proprio observations, safe by construction.

    Action: ``(k + 1,)`` float in [-1, 1]: ``k`` end-effector axes (see ``action_mode``) scaled by
    ``step_size_m`` / ``step_size_rad``, then the gripper (-1 closed, +1 open, absolute). With
    ``action_mode="joints"``: one delta per body joint scaled by ``joint_step_deg``, then the gripper.
    Observation: dict with ``ee_pose`` (6,) float32 ``[x, y, z, roll, pitch, yaw]``, ``gripper`` (1,)
    float32 in [0, 1], ``joints`` (n,) float32, and with ``policy_obs="images"`` one ``(H, W, 3)`` uint8 image
    per camera. Every camera is read each step either way: ``render_camera(name)`` returns its latest
    frame (``camera_names`` lists them), ``render()`` the first camera's.
    Reward is always 0.0 here: wrap with ``rlrm.wrappers.RobometerReward``.

    >>> from robots import make_robot_env
    >>> env = make_robot_env("xarm", sim=True, fps=1000)
    >>> obs, info = env.reset(seed=0)
    >>> obs, r, term, trunc, info = env.step(env.action_space.sample())
    >>> info["task"] == env.unwrapped.task, info["intervention"]
    (True, False)
    >>> env.close()

    Args:
        backend: the robot (:class:`RobotBackend`); connected here.
        config: :class:`RobotEnvConfig`.
        cameras: name -> camera with ``read() -> (H, W, 3) uint8``, ``shape``, ``connect()``, ``disconnect()``.
        teleop: optional human interface with ``poll() -> TeleopCommand`` (:mod:`robots.teleop`).
        reset_callback: called as ``reset_callback(env)`` after homing instead of the stdin prompt.
        clock, sleep: injectable time source for the rate limiter (tests).
    """

    metadata = {"render_modes": ["rgb_array"]}
    ground_truth_success = False
    """``info["is_success"]`` is only a person's success key, not a measurement: evaluations report it as a label."""

    def __init__(
        self,
        backend: RobotBackend,
        config: RobotEnvConfig | None = None,
        cameras: dict[str, Any] | None = None,
        teleop: Any = None,
        reset_callback: Callable[[RobotEnv], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        render_mode: str | None = "rgb_array",
    ) -> None:
        self.config = config or RobotEnvConfig()
        self.backend = backend
        self.cameras = dict(cameras or {})
        self.teleop = teleop
        self.reset_callback = reset_callback
        self.render_mode = render_mode
        self.task = self.config.task
        self._home = EEPose.from_vector(self.config.home_pose)
        self.safety = SafetyFilter(self.config.safety, self._home.rotation)
        self.reach = ReachFilter(self.config.safety)
        self.joint_safety: JointSafetyFilter | None = None
        self._joint_target: np.ndarray | None = None
        self.backend.connect()
        if self.config.action_mode == JOINT_MODE:
            self.joint_safety = self._make_joint_safety()
            self._n_axes = len(self.joint_safety.low)
        else:
            self._n_axes = ACTION_MODES[self.config.action_mode]
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self._n_axes + 1,), np.float32)
        self.rate = RateLimiter(self.config.fps, clock=clock, sleep=sleep)
        self._stopped = threading.Event()
        self._command_lock = threading.Lock()
        self._target: EEPose | None = None
        self._gripper_target = 1.0
        self._intervening = False
        self._last_frames: dict[str, np.ndarray] = {}
        self._rng = np.random.default_rng(self.config.seed)
        for cam in self.cameras.values():
            cam.connect()
        spaces = {}
        if self.config.policy_obs == "images":
            spaces = {name: gym.spaces.Box(0, 255, tuple(cam.shape), np.uint8) for name, cam in self.cameras.items()}
        spaces["ee_pose"] = gym.spaces.Box(-np.inf, np.inf, (6,), np.float32)
        spaces["gripper"] = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        spaces["joints"] = gym.spaces.Box(-np.inf, np.inf, (self.backend.num_joints,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)

    # ------------------------------------------------------------------ stop path
    def stop(self) -> None:
        """Halt the robot now (any thread); ``step`` then holds and ``reset`` needs :meth:`resume`."""
        self._stopped.set()
        logger.warning("robot stop requested")
        with self._command_lock:  # after any in-flight command, so stop is the last word
            self.backend.stop()

    def resume(self) -> None:
        """Allow motion again after :meth:`stop` (call once the scene is safe)."""
        self.backend.resume()
        self._stopped.clear()

    def install_sigint_stop(self) -> None:
        """Make the first Ctrl-C stop the robot (``env.stop()``); a second Ctrl-C raises KeyboardInterrupt.

        Call from the main thread (Python delivers signals there). The previous handler is restored by
        the second Ctrl-C and by :meth:`close`.
        """
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self.stopped:
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            logger.warning("Ctrl-C: stopping the robot (press again to interrupt the program)")
            self.stop()

        signal.signal(signal.SIGINT, handler)
        self._previous_sigint = previous

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called and not yet resumed."""
        return self._stopped.is_set()

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Home slowly, optionally randomise the start in a box, optionally wait for a person."""
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if self.stopped:
            raise RobotStoppedError("the robot was stopped (env.stop()); call env.resume() once the scene is safe")
        speed = self.config.home_speed
        self._with_recovery("home", lambda: self.backend.home(self._home, 1.0, speed))
        start = self._home.copy()
        half = np.asarray(self.config.reset_randomize_m, dtype=float)
        if np.any(half > 0):
            offset = self._rng.uniform(-half, half)
            start.position = np.clip(start.position + offset, self.config.safety.low, self.config.safety.high)
            self._with_recovery("home", lambda: self.backend.home(start, 1.0, speed))
        if self.reset_callback is not None:
            self.reset_callback(self)
        elif self.config.wait_for_person:
            input(f"[robots] reset the scene for: {self.task!r}, then press Enter ")
        state = self._read_state()
        if not self.config.safety.contains(state.pose.position, tol=0.01):
            raise RobotError(
                f"after reset the end effector is at {state.pose.position.round(3).tolist()}, outside the "
                f"workspace {self.config.safety.workspace_low}..{self.config.safety.workspace_high}: "
                "check home_pose and the workspace box"
            )
        self._target = EEPose(np.clip(state.pose.position, self.config.safety.low, self.config.safety.high),
                              state.pose.rotation)
        self._joint_target = None
        if self.joint_safety is not None:
            self._joint_target = np.asarray(state.joints[: self._n_axes], dtype=float).copy()
        self._gripper_target = 1.0
        self._intervening = False
        self._elapsed_steps = 0
        self.rate.reset()
        obs = self._observe(state)
        return obs, {"task": self.task, "intervention": False, "home_pose": self._home.as_vector()}

    def step(self, action):
        """Apply one (possibly teleop-replaced) action safely and wait for the next control tick."""
        if self._target is None:
            raise RuntimeError("Cannot call env.step() before calling env.reset()")
        info: dict[str, Any] = {"task": self.task, "stopped": False, "recovered": 0}
        policy_action = action
        command = self.teleop.poll() if self.teleop is not None else None
        was_intervening = self._intervening
        self._intervening = bool(command is not None and command.active)
        if self._intervening:
            action = command.action
        info["intervention"] = self._intervening
        info["intervention_started"] = self._intervening and not was_intervening
        info["intervention_ended"] = was_intervening and not self._intervening
        try:
            info["policy_action"] = np.array(policy_action, dtype=np.float32)
        except (TypeError, ValueError):  # a malformed action is reported by check_action below
            info["policy_action"] = policy_action
        if command is not None and command.stop:
            self.stop()
        if self.stopped:
            state = self._read_state()
            info.update(stopped=True, is_success=False, action=np.zeros(self.action_space.shape, np.float32))
            return self._observe(state), 0.0, False, True, info

        try:
            action = check_action(action, self.action_space.shape[0])
        except UnsafeActionError:
            self._hold()
            raise
        action = np.clip(action, -1.0, 1.0)
        if self.joint_safety is not None:
            return self._step_joints(action, info, command)
        state = self._read_state()
        desired = self._desired_pose(state.pose, action[: self._n_axes])
        safe = self.safety.apply(desired, self._target)
        # where the tool really goes for this target (FK of the joints the backend would send) must be in the box too
        pose, clipped_reach = self.reach.apply(safe.pose, self._target, lambda p: self.backend.ee_path(p, state))
        gripper = float((action[-1] + 1.0) / 2.0)
        sent = self._sent_action(state.pose, self._target.rotation, pose, gripper)
        with self._command_lock:
            if not self.stopped:
                info["recovered"] = self._with_recovery("command", lambda: self.backend.command_ee(pose, gripper))
                self._target, self._gripper_target = pose, gripper
        info["overrun_s"] = self.rate.wait()
        state = self._read_state()
        obs = self._observe(state)
        info.update(
            action=sent,
            commanded_pose=pose.as_vector(),
            clipped=safe.clipped or clipped_reach,
            clipped_workspace=safe.clipped_workspace or clipped_reach,
            clipped_reach=clipped_reach,
            clipped_step=safe.clipped_step,
            clipped_rotation=safe.clipped_rotation,
            stopped=self.stopped,
        )
        return self._finish_step(obs, info, command)

    def _finish_step(self, obs, info: dict[str, Any], command):
        """Episode bookkeeping shared by both action spaces: truncation and a person's labels."""
        terminated = False
        self._elapsed_steps += 1
        limit = self.config.max_episode_steps
        truncated = limit is not None and self._elapsed_steps >= limit
        info["is_success"] = False  # no ground truth on a real robot: only a person's success key sets it
        if command is not None and (command.success or command.failure):
            terminated = True
            info["human_label"] = "success" if command.success else "failure"
            info["is_success"] = bool(command.success)
        return obs, 0.0, terminated, truncated, info

    def render(self):
        """The first camera's latest frame, (H, W, 3) uint8, or None without cameras."""
        if not self.cameras:
            return None
        return self.render_camera(next(iter(self.cameras)))

    @property
    def camera_names(self) -> list[str]:
        """Names :meth:`render_camera` accepts (the configured cameras)."""
        return list(self.cameras)

    def render_camera(self, name: str) -> np.ndarray:
        """Camera ``name``'s frame of the latest observation (read now before the first one), (H, W, 3) uint8."""
        if name not in self.cameras:
            raise ValueError(f"unknown camera {name!r}; this robot has {self.camera_names}")
        if name not in self._last_frames:
            return self.cameras[name].read()
        return self._last_frames[name]

    def close(self) -> None:
        """Stop cameras and teleop, then disconnect the robot (which stops it); safe to call twice."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        previous = getattr(self, "_previous_sigint", None)
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)
            self._previous_sigint = None
        for cam in self.cameras.values():
            cam.disconnect()
        if self.teleop is not None and hasattr(self.teleop, "close"):
            self.teleop.close()
        self.backend.disconnect()

    # ------------------------------------------------------------------ internals
    def _make_joint_safety(self) -> JointSafetyFilter:
        """The joint filter from the backend's limits, FK and quantisation; clear error if it has none."""
        needed = ("joint_limits_deg", "joint_pose", "command_joints")
        missing = [m for m in needed if not hasattr(self.backend, m)]
        if missing:
            raise ValueError(
                f"action_mode='joints' needs a backend with {list(needed)}; {self.backend.name} lacks {missing} "
                f"(use one of {sorted(ACTION_MODES)})"
            )
        low, high = self.backend.joint_limits_deg()
        if len(self.config.joint_step_deg) != len(low):
            raise ValueError(
                f"joint_step_deg must have {len(low)} values (deg per step, one per joint), got {self.config.joint_step_deg}"
            )
        return JointSafetyFilter(self.config.safety, self.backend.joint_pose, low, high,
                                 quantize=getattr(self.backend, "quantize_joints", None))

    def _step_joints(self, action: np.ndarray, info: dict[str, Any], command):
        """Joint-space step: target := previous joint target + scaled deltas, through the joint filter."""
        n = self._n_axes
        desired = self._joint_target + action[:n] * np.asarray(self.config.joint_step_deg, dtype=float)
        safe = self.joint_safety.apply(desired, self._joint_target)
        gripper = float((action[-1] + 1.0) / 2.0)
        sent = np.zeros(self.action_space.shape, np.float32)
        sent[:n] = (safe.joints - self._joint_target) / np.asarray(self.config.joint_step_deg, dtype=float)
        sent[-1] = gripper * 2.0 - 1.0
        with self._command_lock:
            if not self.stopped:
                info["recovered"] = self._with_recovery(
                    "command", lambda: self.backend.command_joints(safe.joints, gripper)
                )
                self._joint_target, self._gripper_target = safe.joints.copy(), gripper
                self._target = safe.pose
        info["overrun_s"] = self.rate.wait()
        obs = self._observe(self._read_state())
        info.update(
            action=np.clip(sent, -1.0, 1.0),
            commanded_joints=safe.joints.copy(),
            commanded_pose=safe.pose.as_vector(),
            clipped=safe.clipped,
            clipped_limits=safe.clipped_limits,
            clipped_workspace=safe.clipped_workspace,
            clipped_step=safe.clipped_step,
            clipped_rotation=False,
            stopped=self.stopped,
        )
        return self._finish_step(obs, info, command)

    def _desired_pose(self, current: EEPose, axes: np.ndarray) -> EEPose:
        """Measured pose + scaled delta (translation in the base frame, rotation pre-multiplied)."""
        position = current.position + axes[:3] * self.config.step_size_m
        rotation = self._target.rotation
        if self._n_axes == 4:
            rotation = rpy_to_matrix([0.0, 0.0, axes[3] * self.config.step_size_rad]) @ rotation
        elif self._n_axes == 6:
            rotation = rpy_to_matrix(axes[3:6] * self.config.step_size_rad) @ rotation
        return EEPose(position, rotation)

    def _sent_action(
        self, measured: EEPose, prev_rotation: np.ndarray, pose: EEPose, gripper: float
    ) -> np.ndarray:
        """The normalised action equivalent to what was commanded (for replay buffers)."""
        sent = np.zeros(self.action_space.shape, np.float32)
        sent[:3] = (pose.position - measured.position) / self.config.step_size_m
        if self._n_axes > 3:
            rotvec = matrix_to_rotvec(pose.rotation @ prev_rotation.T)
            sent[3 : self._n_axes] = (rotvec[2:] if self._n_axes == 4 else rotvec) / self.config.step_size_rad
        sent[-1] = gripper * 2.0 - 1.0
        return np.clip(sent, -1.0, 1.0)

    def _hold(self) -> None:
        """Re-command the last safe target so the robot holds where it was told to be."""
        if self._target is not None and not self.stopped:
            # a failed earlier motion surfaces on the next command, this one included: recover as step() does,
            # so the caller sees the refusal that brought it here (UnsafeActionError), not a controller error
            if self._joint_target is not None:
                joints, gripper = self._joint_target, self._gripper_target
                send = lambda: self.backend.command_joints(joints, gripper)  # noqa: E731
            else:
                pose, gripper = self._target, self._gripper_target
                send = lambda: self.backend.command_ee(pose, gripper)  # noqa: E731
            with self._command_lock:
                self._with_recovery("hold", send)

    def _read_state(self) -> RobotState:
        holder: list[RobotState] = []
        self._with_recovery("read", lambda: holder.append(self.backend.read_state()))
        return holder[-1]

    def _with_recovery(self, what: str, fn: Callable[[], Any]) -> int:
        """Run ``fn``; on ControllerError recover and retry up to max_recover_attempts; return recoveries."""
        attempts = self.config.max_recover_attempts
        last_error: ControllerError | None = None
        for attempt in range(attempts + 1):
            try:
                fn()
                return attempt
            except ControllerError as exc:
                last_error = exc
                if attempt == attempts:
                    break
                logger.warning("controller error during %s (%s); recovery %d/%d", what, exc, attempt + 1, attempts)
                try:
                    self.backend.recover()
                except ControllerError as rec_exc:
                    last_error = rec_exc
        raise RobotError(
            f"{self.backend.name}: controller error during {what} not cleared after {attempts} recovery "
            f"attempts: {last_error}. Check the robot (e-stop, collisions, limits) and restart."
        ) from last_error

    def _observe(self, state: RobotState) -> dict[str, np.ndarray]:
        self._last_frames = {name: cam.read() for name, cam in self.cameras.items()}
        obs: dict[str, np.ndarray] = dict(self._last_frames) if self.config.policy_obs == "images" else {}
        obs["ee_pose"] = state.pose.as_vector().astype(np.float32)
        obs["gripper"] = np.array([state.gripper], dtype=np.float32)
        obs["joints"] = np.asarray(state.joints, dtype=np.float32).reshape(self.backend.num_joints)
        return obs
