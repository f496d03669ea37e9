"""MetaWorld v3 tasks as rlrm envs: one task, its instruction, upright corner-camera frames.

* :data:`METAWORLD_TASKS` - MetaWorld v3 env name -> instruction sentence (all 50 tasks).
* :data:`UPSIDE_DOWN_CAMERAS` - MetaWorld cameras whose raw frames are upside down.
* :class:`MetaWorldEnv` - one MT1 task (``task_name="reach-v3"``); ``info["is_success"]`` is
  MetaWorld's ``success``.

Registered by ``import envs`` as ``rlrm/MetaWorld-v0`` (500 steps, MetaWorld's path length).
Needs ``pip install 'rlrm[metaworld]'``.
"""

from __future__ import annotations

import logging

import gymnasium as gym
import numpy as np

from envs.rendering import CameraView, FrameRenderer

__all__ = ["METAWORLD_TASKS", "METAWORLD_VIEWS", "UPSIDE_DOWN_CAMERAS", "MetaWorldEnv"]

logger = logging.getLogger(__name__)

METAWORLD_TASKS: dict[str, str] = {
    "assembly-v3": "pick up the nut and place it onto the peg",
    "basketball-v3": "dunk the basketball into the basket",
    "bin-picking-v3": "grasp the puck from one bin and place it into the other bin",
    "box-close-v3": "grasp the cover and close the box with it",
    "button-press-topdown-v3": "press the button from the top",
    "button-press-topdown-wall-v3": "bypass the wall and press the button from the top",
    "button-press-v3": "press the button",
    "button-press-wall-v3": "bypass the wall and press the button",
    "coffee-button-v3": "push the button on the coffee machine",
    "coffee-pull-v3": "pull the mug from the coffee machine",
    "coffee-push-v3": "push the mug under the coffee machine",
    "dial-turn-v3": "rotate the dial 180 degrees",
    "disassemble-v3": "pick the nut off the peg",
    "door-close-v3": "close the door",
    "door-lock-v3": "lock the door by rotating the lock clockwise",
    "door-open-v3": "open the door",
    "door-unlock-v3": "unlock the door by rotating the lock counter-clockwise",
    "hand-insert-v3": "insert the gripper into the hole",
    "drawer-close-v3": "push the drawer closed",
    "drawer-open-v3": "open the drawer",
    "faucet-open-v3": "rotate the faucet counter-clockwise",
    "faucet-close-v3": "rotate the faucet clockwise",
    "hammer-v3": "hammer the nail into the wall",
    "handle-press-side-v3": "press the handle down sideways",
    "handle-press-v3": "press the handle down",
    "handle-pull-side-v3": "pull the handle up sideways",
    "handle-pull-v3": "pull the handle up",
    "lever-pull-v3": "pull the lever down 90 degrees",
    "pick-place-wall-v3": "pick up the puck, bypass the wall and place it at the goal",
    "pick-out-of-hole-v3": "pick up the puck out of the hole",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "plate-slide-v3": "slide the plate into the cabinet",
    "plate-slide-side-v3": "slide the plate sideways into the cabinet",
    "plate-slide-back-v3": "get the plate out of the cabinet",
    "plate-slide-back-side-v3": "get the plate out of the cabinet sideways",
    "peg-insert-side-v3": "insert the peg sideways into the hole",
    "peg-unplug-side-v3": "unplug the peg sideways",
    "soccer-v3": "kick the soccer ball into the goal",
    "stick-push-v3": "grasp the stick and push the box with it",
    "stick-pull-v3": "grasp the stick and pull the box with it",
    "push-v3": "push the puck to the goal",
    "push-wall-v3": "bypass the wall and push the puck to the goal",
    "push-back-v3": "push the puck back to the goal",
    "reach-v3": "reach the goal position with the gripper",
    "reach-wall-v3": "bypass the wall and reach the goal position",
    "shelf-place-v3": "pick up the puck and place it onto the shelf",
    "sweep-into-v3": "sweep the puck into the hole",
    "sweep-v3": "sweep the puck off the table",
    "window-open-v3": "push the window open",
    "window-close-v3": "push the window closed",
}

# Their camera frames have the world's up pointing down: rotate by 180 degrees.
UPSIDE_DOWN_CAMERAS = frozenset({"corner", "corner2", "corner3"})

#: Named views for the reward model, closer than MetaWorld's own cameras (at 128 px the corner camera
#: shows the puck as ~3 pixels): ``front`` looks back at the robot across the goal region from the far
#: right, ``side`` along the table from the left. Tiled together, one of them sees the object and the goal
#: when the arm hides them in the other.
METAWORLD_VIEWS: dict[str, CameraView] = {
    "front": CameraView(lookat=(0.0, 0.75, 0.08), distance=0.85, azimuth=-60.0, elevation=-35.0),
    "side": CameraView(lookat=(0.0, 0.75, 0.08), distance=0.85, azimuth=180.0, elevation=-30.0),
}


def _import_metaworld():
    try:
        import metaworld
    except ImportError as err:
        raise ImportError(
            "rlrm/MetaWorld-v0 needs MetaWorld v3: pip install 'rlrm[metaworld]' (metaworld==3.0.0)"
        ) from err
    from envs._compat import fix_metaworld_weld_data

    fix_metaworld_weld_data()
    return metaworld


class MetaWorldEnv(gym.Env):
    """One MetaWorld v3 task (MT1) with its instruction, upright frames and MetaWorld's success.

    ``reset`` picks one of MetaWorld's 50 fixed goal/object layouts of the task (at random
    from the env's generator, or always ``task_index``); ``step`` is MetaWorld's, with
    ``info["is_success"] = bool(info["success"])`` and ``info["task"]``. The 39-D state
    observation and MetaWorld's dense reward (0..10) are unchanged.

    Args:
        task_name: a MetaWorld v3 env name, one of :data:`METAWORLD_TASKS`.
        image_size: side of rendered frames in pixels.
        fast_render: no shadows, reflections, skybox or multisampling.
        camera: MetaWorld camera: ``corner`` (default), ``corner2``, ``corner3``, ``topview``,
            ``behindGripper``, ``gripperPOV``. Corner cameras are rotated upright.
        task_index: None for a random layout per episode, or 0..49 for a fixed one (evaluation).
        benchmark_seed: seed MetaWorld uses to generate the 50 layouts.
        task_text: override the instruction sentence.
        render_mode: only ``"rgb_array"``.
        reward_type: ``"dense"`` (MetaWorld's shaped reward, 0..10) or ``"sparse"`` (1 in the success
            state, else 0); what ``reward=env_dense`` / ``reward=env_sparse`` select.

    >>> import gymnasium as gym, envs
    >>> env = gym.make("rlrm/MetaWorld-v0", task_name="reach-v3", image_size=64)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, info["task"]
    ((39,), 'reach the goal position with the gripper')
    >>> env.render().shape
    (64, 64, 3)
    >>> env.close()
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(
        self,
        task_name: str = "reach-v3",
        image_size: int = 128,
        fast_render: bool = True,
        camera: str = "corner",
        task_index: int | None = None,
        benchmark_seed: int = 0,
        task_text: str | None = None,
        render_mode: str | None = "rgb_array",
        reward_type: str = "dense",
    ) -> None:
        if reward_type not in ("dense", "sparse"):
            raise ValueError(f"reward_type must be 'dense' or 'sparse', got {reward_type!r}")
        self.reward_type = reward_type
        if task_name not in METAWORLD_TASKS:
            raise ValueError(
                f"unknown MetaWorld task {task_name!r}; expected a v3 task, one of {sorted(METAWORLD_TASKS)}"
            )
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' (or None), got {render_mode!r}")
        if task_text is not None and (not isinstance(task_text, str) or not task_text.strip()):
            raise ValueError(f"task_text must be a non-empty sentence, got {task_text!r}")
        metaworld = _import_metaworld()
        self.task_name = task_name
        self.task = task_text or METAWORLD_TASKS[task_name]
        self.render_mode = render_mode
        self.image_size = int(image_size)
        self.fast_render = bool(fast_render)
        self._benchmark = metaworld.MT1(task_name, seed=benchmark_seed)
        self._layouts = self._benchmark.train_tasks
        if task_index is not None and not (0 <= int(task_index) < len(self._layouts)):
            raise ValueError(f"task_index must be in [0, {len(self._layouts)}) or None, got {task_index!r}")
        self.task_index = task_index
        self._mw = self._benchmark.train_classes[task_name]()
        self._mw.set_task(self._layouts[task_index or 0])
        # MetaWorld recomputes this space in set_task (the goal becomes observed in MT1);
        # its gym observation_space keeps the stale one with zero goal bounds.
        self.observation_space = self._mw.sawyer_observation_space
        self.action_space = self._mw.action_space
        self.max_path_length = int(self._mw.max_path_length)
        self._renderer = FrameRenderer(
            self._mw.model,
            self._mw.data,
            self.image_size,
            camera,
            fast=self.fast_render,
            flip=camera in UPSIDE_DOWN_CAMERAS,
        )
        self.camera = camera

    @property
    def camera_names(self) -> list[str]:
        """Names :meth:`render_camera` accepts: :data:`METAWORLD_VIEWS` and the model's own cameras."""
        from envs.rendering import camera_names

        return sorted(METAWORLD_VIEWS) + camera_names(self._mw.model)

    def render_camera(self, name: str) -> np.ndarray:
        """The current frame from the named view (see :attr:`camera_names`): (image_size, image_size, 3) uint8."""
        if name not in self.camera_names:
            raise ValueError(f"unknown camera {name!r} for MetaWorld {self.task_name}; available: {self.camera_names}")
        frame = self._renderer.render(METAWORLD_VIEWS.get(name, name))
        # The renderer flips for its own (corner) camera; other views come out upright.
        if self._renderer.flip != (name in UPSIDE_DOWN_CAMERAS):
            frame = np.ascontiguousarray(frame[::-1, ::-1])
        return frame

    @property
    def model(self):
        """The MuJoCo model (``mujoco.MjModel``) of the MetaWorld env."""
        return self._mw.model

    @property
    def data(self):
        """The MuJoCo data (``mujoco.MjData``) of the MetaWorld env."""
        return self._mw.data

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Choose a layout, reset MetaWorld; ``info`` has ``task``, ``is_success`` (False) and ``layout``."""
        super().reset(seed=seed)
        layout = self.task_index
        if layout is None:
            layout = int(self.np_random.integers(len(self._layouts)))
        self._mw.set_task(self._layouts[layout])
        obs, _ = self._mw.reset()
        # MetaWorld clips step observations to its space but not the reset one.
        obs = np.clip(obs, self.observation_space.low, self.observation_space.high).astype(np.float64)
        # MetaWorld reports success only from step(); a fresh layout is never solved.
        return obs, {"task": self.task, "is_success": False, "layout": layout}

    def step(self, action):
        """MetaWorld's step; ``info["is_success"]`` is its ``success`` as a bool."""
        obs, reward, terminated, truncated, info = self._mw.step(np.asarray(action, dtype=np.float32))
        info = dict(info)
        info["is_success"] = bool(info.get("success", 0.0) > 0.5)
        info["task"] = self.task
        if self.reward_type == "sparse":
            reward = float(info["is_success"])
        return obs.astype(np.float64), float(reward), bool(terminated), bool(truncated), info

    def render(self) -> np.ndarray | None:
        """The current frame: (image_size, image_size, 3) uint8, upright."""
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode='rgb_array'; returning None")
            return None
        return self._renderer.render()

    def close(self) -> None:
        """Free the renderer and the MetaWorld env."""
        self._renderer.close()
        self._mw.close()
