"""Fetch tasks of gymnasium-robotics as rlrm envs: dict observations, a task sentence, fast frames.

* :data:`FETCH_TASKS` - Fetch task name -> (gymnasium-robotics env class path, instruction).
* :data:`FETCH_VIEWS` - the default render camera of each task (arm and target in view).
* :data:`FETCH_CAMERAS` - named views of each task (``default``, ``front``, ``side``, ``top``) for
  multi-camera rewards: ``RobometerReward(env, camera=["front", "side"])``.
* :data:`GOAL_MARKERS` - how the target is drawn: Fetch's small ``site`` dot or a translucent
  ``success_ball`` whose radius is the success distance.
* :class:`FetchEnv` - one Fetch task (``FetchReach``, ``FetchPush``, ``FetchSlide``,
  ``FetchPickAndPlace``, v4 dynamics) with ``render()`` frames for a reward model.

Registered by ``import envs`` as ``rlrm/FetchReach-v0``, ``rlrm/FetchPush-v0``,
``rlrm/FetchSlide-v0`` and ``rlrm/FetchPickAndPlace-v0`` (50 steps, as upstream).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium_robotics.core import GoalEnv

from envs._compat import fix_gymnasium_robotics_joint_types
from envs.rendering import CameraView, FrameRenderer

__all__ = ["FETCH_TASKS", "FETCH_VIEWS", "FETCH_CAMERAS", "GOAL_MARKERS", "FetchEnv"]

logger = logging.getLogger(__name__)

FETCH_TASKS: dict[str, tuple[str, str]] = {
    "FetchReach": (
        "gymnasium_robotics.envs.fetch.reach:MujocoFetchReachEnv",
        "move the gripper to the red target",
    ),
    "FetchPush": (
        "gymnasium_robotics.envs.fetch.push:MujocoFetchPushEnv",
        "push the black block to the red target",
    ),
    "FetchSlide": (
        "gymnasium_robotics.envs.fetch.slide:MujocoFetchSlideEnv",
        "slide the black puck to the red target",
    ),
    "FetchPickAndPlace": (
        "gymnasium_robotics.envs.fetch.pick_and_place:MujocoFetchPickAndPlaceEnv",
        "pick up the black block and move it to the red target",
    ),
}

# Seen from the front-left of the table, looking down: the arm, the gripper and targets up to
# 0.15 m around the start gripper position stay in frame at 64-224 px.
FETCH_VIEWS: dict[str, CameraView] = {
    "FetchReach": CameraView(lookat=(1.28, 0.75, 0.52), distance=1.15, azimuth=140.0, elevation=-38.0),
    "FetchPush": CameraView(lookat=(1.34, 0.75, 0.42), distance=1.00, azimuth=200.0, elevation=-65.0),
    "FetchSlide": CameraView(lookat=(1.40, 0.75, 0.42), distance=1.70, azimuth=155.0, elevation=-52.0),
    "FetchPickAndPlace": CameraView(lookat=(1.34, 0.75, 0.45), distance=1.05, azimuth=200.0, elevation=-60.0),
}


def _views_around(lookat: tuple[float, float, float], distance: float) -> dict[str, CameraView]:
    """front (facing the robot: y and z), side (from the robot's right: x and z) and top (x and y) views."""
    return {
        "front": CameraView(lookat=lookat, distance=distance, azimuth=180.0, elevation=-12.0),
        "side": CameraView(lookat=lookat, distance=distance, azimuth=90.0, elevation=-12.0),
        "top": CameraView(lookat=lookat, distance=distance * 1.1, azimuth=180.0, elevation=-89.0),
    }


# Named views for multi-camera rewards. Two roughly orthogonal views remove the depth ambiguity of one
# camera ("at the target" vs "5-15 cm in front of it"): front + side sees x, y and z.
FETCH_CAMERAS: dict[str, dict[str, CameraView]] = {
    "FetchReach": {"default": FETCH_VIEWS["FetchReach"], **_views_around((1.34, 0.75, 0.55), 0.6)},
    "FetchPush": {"default": FETCH_VIEWS["FetchPush"], **_views_around((1.34, 0.75, 0.45), 0.85)},
    "FetchSlide": {"default": FETCH_VIEWS["FetchSlide"], **_views_around((1.40, 0.75, 0.45), 1.5)},
    "FetchPickAndPlace": {"default": FETCH_VIEWS["FetchPickAndPlace"], **_views_around((1.34, 0.75, 0.5), 0.9)},
}

GOAL_MARKERS = ("site", "success_ball")
SUCCESS_BALL_RGBA = (1.0, 0.0, 0.0, 0.35)


def _load_class(path: str) -> type:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


class FetchEnv(GoalEnv):
    """A Fetch task with Fetch's dict observation and reward, plus a task sentence and frames.

    ``step``/``reset`` are Fetch's (v4), unchanged except that ``info`` always carries
    ``"task"`` (the instruction) and ``"is_success"`` as a bool. ``render()`` returns an
    upright (image_size, image_size, 3) uint8 frame from :data:`FETCH_VIEWS` (or ``camera``).

    Args:
        task_name: one of :data:`FETCH_TASKS`.
        reward_type: ``"sparse"`` (-1 / 0 at 5 cm) or ``"dense"`` (negative distance), as Fetch.
        image_size: side of rendered frames in pixels.
        fast_render: no shadows, reflections, skybox or multisampling (much faster on CPU).
        camera: None for the task's default view, a :class:`CameraView` or a dict of its fields,
            or the name of a camera in the Fetch model (e.g. ``"head_camera_rgb"``).
        task_text: override the instruction sentence.
        goal_marker: ``"site"`` draws Fetch's own 2 cm target dot; ``"success_ball"`` a translucent red
            sphere whose radius is the success distance (``distance_threshold``, 0.05 m), so success
            means "the gripper (or block) is inside the ball" in every frame.
        render_mode: only ``"rgb_array"``.
        goal_rgba: colour of the target marker, (r, g, b, a) in [0, 1]; None keeps the marker's own (the success
            ball is translucent red). Another colour is a scene shift for a reward model trained on red.
        camera_offset: moves every view of this env (the default and the named :data:`FETCH_CAMERAS`):
            ``{azimuth, elevation, distance}`` added in degrees / metres, ``lookat`` (3,) added in metres.
            None or {} keeps them. Another shift for reward models (the camera was bumped).
        **fetch_kwargs: passed to the gymnasium-robotics env (e.g. ``distance_threshold``).

    >>> import gymnasium as gym, envs
    >>> env = gym.make("rlrm/FetchReach-v0", image_size=64)
    >>> obs, info = env.reset(seed=0)
    >>> sorted(obs), info["task"]
    (['achieved_goal', 'desired_goal', 'observation'], 'move the gripper to the red target')
    >>> env.render().shape
    (64, 64, 3)
    >>> env.close()
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(
        self,
        task_name: str = "FetchReach",
        reward_type: str = "sparse",
        image_size: int = 128,
        fast_render: bool = True,
        camera: CameraView | dict | str | None = None,
        task_text: str | None = None,
        render_mode: str | None = "rgb_array",
        goal_marker: str = "site",
        goal_rgba: Any = None,
        camera_offset: dict | None = None,
        **fetch_kwargs: Any,
    ) -> None:
        if goal_marker not in GOAL_MARKERS:
            raise ValueError(f"goal_marker must be one of {GOAL_MARKERS}, got {goal_marker!r}")
        if task_name not in FETCH_TASKS:
            raise ValueError(f"unknown Fetch task {task_name!r}; expected one of {sorted(FETCH_TASKS)}")
        if reward_type not in ("sparse", "dense"):
            raise ValueError(f"reward_type must be 'sparse' or 'dense', got {reward_type!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' (or None), got {render_mode!r}")
        if task_text is not None and (not isinstance(task_text, str) or not task_text.strip()):
            raise ValueError(f"task_text must be a non-empty sentence, got {task_text!r}")
        if goal_rgba is not None:
            goal_rgba = tuple(float(c) for c in goal_rgba)
            if len(goal_rgba) != 4 or not all(0.0 <= c <= 1.0 for c in goal_rgba):
                raise ValueError(f"goal_rgba must be 4 numbers (r, g, b, alpha) in [0, 1], got {goal_rgba!r}")
        offset = dict(camera_offset or {})
        unknown = set(offset) - {"azimuth", "elevation", "distance", "lookat"}
        if unknown:
            raise ValueError(f"camera_offset keys must be among azimuth, elevation, distance, lookat; got {sorted(unknown)}")
        self._camera_offset = offset
        class_path, default_task = FETCH_TASKS[task_name]
        self.task_name = task_name
        self.task = task_text or default_task
        self.reward_type = reward_type
        self.render_mode = render_mode
        self.image_size = int(image_size)
        self.fast_render = bool(fast_render)
        fix_gymnasium_robotics_joint_types()
        self._fetch = _load_class(class_path)(reward_type=reward_type, **fetch_kwargs)
        self.observation_space = self._fetch.observation_space
        self.action_space = self._fetch.action_space
        if camera is None:
            camera = FETCH_VIEWS[task_name]
        elif isinstance(camera, dict):
            camera = CameraView(**{k: (tuple(v) if k == "lookat" else v) for k, v in camera.items()})
        if isinstance(camera, CameraView):
            camera = self._shifted(camera)
        self._renderer = FrameRenderer(
            self._fetch.model, self._fetch.data, self.image_size, camera, fast=self.fast_render
        )
        self.goal_marker = goal_marker
        if goal_marker == "success_ball":
            self._draw_success_ball()
        if goal_rgba is not None:
            import mujoco

            site = mujoco.mj_name2id(self._fetch.model, mujoco.mjtObj.mjOBJ_SITE, "target0")
            self._fetch.model.site_rgba[site, :] = goal_rgba

    def _shifted(self, view: CameraView) -> CameraView:
        """``view`` moved by ``camera_offset``."""
        o = self._camera_offset
        if not o:
            return view
        lookat = tuple(a + b for a, b in zip(view.lookat, o.get("lookat", (0.0, 0.0, 0.0)), strict=True))
        return dataclasses.replace(view, lookat=lookat, distance=view.distance + float(o.get("distance", 0.0)),
                                   azimuth=view.azimuth + float(o.get("azimuth", 0.0)),
                                   elevation=view.elevation + float(o.get("elevation", 0.0)))

    def _draw_success_ball(self) -> None:
        import mujoco

        model = self._fetch.model
        site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "target0")
        if site < 0:
            raise RuntimeError(f"{self.task_name} has no 'target0' site to draw the success ball with")
        model.site_type[site] = mujoco.mjtGeom.mjGEOM_SPHERE
        model.site_size[site, :] = float(self._fetch.distance_threshold)
        model.site_rgba[site, :] = SUCCESS_BALL_RGBA

    @property
    def camera_names(self) -> list[str]:
        """Names :meth:`render_camera` accepts: this task's :data:`FETCH_CAMERAS` and the model's cameras."""
        from envs.rendering import camera_names

        return sorted(FETCH_CAMERAS[self.task_name]) + camera_names(self._fetch.model)

    def render_camera(self, name: str) -> np.ndarray:
        """The current frame from the named view (see :attr:`camera_names`): (image_size, image_size, 3) uint8."""
        views = FETCH_CAMERAS[self.task_name]
        if name not in self.camera_names:
            raise ValueError(f"unknown camera {name!r} for {self.task_name}; available: {self.camera_names}")
        self._fetch._render_callback()
        view = views.get(name, name)
        return self._renderer.render(self._shifted(view) if isinstance(view, CameraView) else view)

    @property
    def model(self):
        """The MuJoCo model (``mujoco.MjModel``) of the underlying Fetch env."""
        return self._fetch.model

    @property
    def data(self):
        """The MuJoCo data (``mujoco.MjData``) of the underlying Fetch env."""
        return self._fetch.data

    @property
    def goal(self) -> np.ndarray:
        """(3,) desired goal position in metres (world frame)."""
        return self._fetch.goal

    def _info(self, fetch_info: dict[str, Any]) -> dict[str, Any]:
        info = dict(fetch_info)
        info["is_success"] = bool(info.get("is_success", False))
        info["task"] = self.task
        return info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Fetch's reset; ``info`` has ``task`` and ``is_success``."""
        super().reset(seed=seed)
        # Derive Fetch's generator from ours so that reset(seed) is reproducible.
        fetch_seed = int(self.np_random.integers(2**31 - 1)) if seed is not None else None
        obs, fetch_info = self._fetch.reset(seed=fetch_seed, options=options)
        success = self._fetch._is_success(obs["achieved_goal"], self._fetch.goal)
        return obs, self._info({**fetch_info, "is_success": success})

    def step(self, action):
        """Fetch's step; ``info`` has ``task`` and ``is_success`` (bool)."""
        obs, reward, terminated, truncated, fetch_info = self._fetch.step(action)
        return obs, float(reward), bool(terminated), bool(truncated), self._info(fetch_info)

    def compute_reward(self, achieved_goal, desired_goal, info):
        """Fetch's goal-conditioned reward (for hindsight relabelling)."""
        return self._fetch.compute_reward(achieved_goal, desired_goal, info)

    def compute_terminated(self, achieved_goal, desired_goal, info):
        """Fetch tasks never terminate on their own."""
        return self._fetch.compute_terminated(achieved_goal, desired_goal, info)

    def compute_truncated(self, achieved_goal, desired_goal, info):
        """Fetch tasks truncate only through the time limit."""
        return self._fetch.compute_truncated(achieved_goal, desired_goal, info)

    def render(self) -> np.ndarray | None:
        """The current frame: (image_size, image_size, 3) uint8, upright, target drawn."""
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode='rgb_array'; returning None")
            return None
        self._fetch._render_callback()  # moves the target marker to the current goal
        return self._renderer.render()

    def close(self) -> None:
        """Free the renderer and the Fetch env."""
        self._renderer.close()
        self._fetch.close()
