"""Simulated manipulation benchmarks as plain gymnasium envs; ``import envs`` registers them.

Registered ids (entry points are imported lazily, on ``gym.make``):

* ``rlrm/FetchReach-v0``, ``rlrm/FetchPush-v0``, ``rlrm/FetchSlide-v0``,
  ``rlrm/FetchPickAndPlace-v0`` - gymnasium-robotics Fetch (:mod:`envs.fetch`).
* ``rlrm/MetaWorld-v0`` - one MetaWorld v3 task, ``task_name="reach-v3"`` (:mod:`envs.metaworld`).
* ``rlrm/LIBERO-v0`` - one LIBERO task, ``suite=..., task_id=...`` (:mod:`envs.libero`).

Every env: ``render()`` returns an upright (image_size, image_size, 3) uint8 frame
(``image_size=128`` by default, ``fast_render=True``), ``env.unwrapped.task`` and
``info["task"]`` hold the instruction, ``info["is_success"]`` is the ground-truth success (bool).
"""

from __future__ import annotations

import os
import sys

import gymnasium as gym

# Frames are rendered offscreen; without a display MuJoCo needs EGL (or OSMesa). Set MUJOCO_GL
# yourself (glfw, osmesa) before importing envs to choose another backend. MuJoCo reads it once, when
# it is first imported: if something (gymnasium_robotics, dm_control) imported it before us, setting it
# here changes nothing, and envs.rendering explains the resulting GL error.
MUJOCO_GL_SET_TOO_LATE = "mujoco" in sys.modules and "MUJOCO_GL" not in os.environ
if MUJOCO_GL_SET_TOO_LATE and not os.environ.get("DISPLAY"):
    import logging

    logging.getLogger(__name__).warning(
        "mujoco was imported before `import envs` with MUJOCO_GL unset: it will try glfw, which needs a display, "
        "and offscreen frames will fail. Import envs first, or run with MUJOCO_GL=egl in the environment")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

from envs._compat import patch_gymnasium_robotics_on_import

__all__ = ["FETCH_IDS", "register_envs"]

FETCH_IDS = {
    "rlrm/FetchReach-v0": "FetchReach",
    "rlrm/FetchPush-v0": "FetchPush",
    "rlrm/FetchSlide-v0": "FetchSlide",
    "rlrm/FetchPickAndPlace-v0": "FetchPickAndPlace",
}


def register_envs() -> None:
    """Register the rlrm env ids with gymnasium (idempotent)."""
    for env_id, task_name in FETCH_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="envs.fetch:FetchEnv",
                kwargs={"task_name": task_name},
                max_episode_steps=50,
            )
    if "rlrm/MetaWorld-v0" not in gym.registry:
        gym.register(id="rlrm/MetaWorld-v0", entry_point="envs.metaworld:MetaWorldEnv", max_episode_steps=500)
    if "rlrm/LIBERO-v0" not in gym.registry:
        # No TimeLimit here: the limit depends on the suite, so LiberoEnv truncates itself.
        gym.register(id="rlrm/LIBERO-v0", entry_point="envs.libero:LiberoEnv")


register_envs()
patch_gymnasium_robotics_on_import()  # gymnasium-robotics' own Fetch/Hand envs need it with this MuJoCo too
