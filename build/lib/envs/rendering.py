"""Offscreen RGB rendering of MuJoCo scenes for reward models, with a fast mode for RL.

* :class:`CameraView` - a free camera aimed at a point (lookat, distance, azimuth, elevation).
* :class:`FrameRenderer` - renders (H, W, 3) uint8 frames of a model/data pair from a named,
  numbered or free camera, optionally flipped upright, optionally with fast settings.
* :func:`apply_fast_render` - model settings that make CPU rendering cheap (no multisampling).
* :func:`gl_context_advice` - what to do when MuJoCo cannot create a GL context (MUJOCO_GL chosen too late).

Why a fast mode: with software/EGL rendering on CPU, MuJoCo's default shadow map, multisample
anti-aliasing, reflections and skybox dominate the cost of a frame. A reward model looking at
64-224 px frames does not need any of them, so RL uses ``fast=True`` by default
(``rlrm bench envs`` measures the gain).
"""

from __future__ import annotations

import atexit
import logging
import weakref
from dataclasses import dataclass

import mujoco
import numpy as np

__all__ = ["CameraView", "FrameRenderer", "apply_fast_render", "gl_context_advice"]

logger = logging.getLogger(__name__)

# Renderers still open at interpreter exit are closed before the GL backend shuts down;
# otherwise their __del__ runs after EGL is terminated and prints EGLError tracebacks.
# The hook is registered after the first GL context exists, so that it runs before the
# backend's own atexit hook (atexit runs last-registered first).
_OPEN_RENDERERS: weakref.WeakSet = weakref.WeakSet()
_EXIT_HOOK_REGISTERED = False


def gl_context_advice(error: str) -> str:
    """The message for a failed OpenGL context: which backend MuJoCo picked, why, and what to do instead."""
    import os
    import sys

    backend = os.environ.get("MUJOCO_GL")
    envs_module = sys.modules.get("envs")
    too_late = bool(getattr(envs_module, "MUJOCO_GL_SET_TOO_LATE", False))
    if too_late:
        why = ("mujoco was imported before `import envs` (e.g. by `import gymnasium_robotics`), with MUJOCO_GL "
               "unset, so it chose its default backend (glfw, which needs a display); envs sets MUJOCO_GL=egl "
               "only while MuJoCo is not loaded yet. Import envs first, or start Python with MUJOCO_GL=egl in "
               "the environment (`MUJOCO_GL=egl python ...`)")
    else:
        why = (f"MUJOCO_GL={backend!r}" if backend else "MUJOCO_GL is unset") + (
            f", DISPLAY={os.environ.get('DISPLAY')!r}. Without a display set MUJOCO_GL=egl (or osmesa) in the "
            "environment before anything imports mujoco")
    return f"MuJoCo could not create an OpenGL context for offscreen frames ({error.strip()}): {why}."


def _close_open_renderers() -> None:
    for renderer in list(_OPEN_RENDERERS):
        renderer.close()


@dataclass(frozen=True)
class CameraView:
    """A free camera looking at ``lookat`` (m, world frame) from ``distance`` (m).

    Args:
        lookat: (3,) world point the camera aims at.
        distance: metres from the camera to ``lookat``.
        azimuth: degrees around the vertical axis.
        elevation: degrees above (positive) / below (negative) the horizon; negative looks down.
    """

    lookat: tuple[float, float, float]
    distance: float
    azimuth: float
    elevation: float

    def to_mjv(self) -> mujoco.MjvCamera:
        """The equivalent ``mujoco.MjvCamera`` of type FREE."""
        cam = mujoco.MjvCamera()
        cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        cam.lookat[:] = np.asarray(self.lookat, dtype=np.float64)
        cam.distance = float(self.distance)
        cam.azimuth = float(self.azimuth)
        cam.elevation = float(self.elevation)
        return cam


def apply_fast_render(model: mujoco.MjModel) -> None:
    """Set model visual options for cheap offscreen frames: no multisampling, no shadow map.

    Must run before a rendering context is created for ``model`` (the context sizes its
    buffers from these values).
    """
    model.vis.quality.offsamples = 0
    model.vis.quality.shadowsize = 0


def camera_names(model: mujoco.MjModel) -> list[str]:
    """Names of the fixed cameras defined in ``model``."""
    return [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]


class FrameRenderer:
    """Renders square RGB frames of one MuJoCo model from one camera.

    Args:
        model, data: the simulation to draw (``data`` is read, never stepped).
        image_size: output side in pixels; frames are (image_size, image_size, 3) uint8.
        camera: a :class:`CameraView`, a fixed camera name, or a fixed camera id.
        fast: no shadows, reflections, skybox or multisampling (see module docstring).
        flip: rotate the raw frame by 180 degrees (cameras mounted upside down, e.g.
            MetaWorld's corner cameras).
        geom_groups: geom groups to draw; None keeps MuJoCo's default (0, 1, 2). robosuite
            scenes put collision meshes in group 0 and visual meshes in group 1, so use (1,).

    >>> import mujoco
    >>> m = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1 1 .1' type='plane'/></worldbody></mujoco>")
    >>> r = FrameRenderer(m, mujoco.MjData(m), 64, CameraView((0, 0, 0), 3.0, 90.0, -45.0))
    >>> r.render().shape
    (64, 64, 3)
    >>> r.close()
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        data: mujoco.MjData,
        image_size: int = 128,
        camera: CameraView | str | int = -1,
        fast: bool = True,
        flip: bool = False,
        geom_groups: tuple[int, ...] | None = None,
    ) -> None:
        if not isinstance(image_size, (int, np.integer)) or image_size < 16:
            raise ValueError(f"image_size must be an int >= 16 (pixels), got {image_size!r}")
        self.model, self.data = model, data
        self.image_size = int(image_size)
        self.fast, self.flip = bool(fast), bool(flip)
        self._camera = self._resolve_camera(camera)
        if fast:
            apply_fast_render(model)
        # The offscreen buffer must be at least the frame size.
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), self.image_size)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), self.image_size)
        try:
            self._renderer = mujoco.Renderer(model, self.image_size, self.image_size)
        except mujoco.FatalError as e:
            raise RuntimeError(gl_context_advice(str(e))) from None
        _OPEN_RENDERERS.add(self)
        global _EXIT_HOOK_REGISTERED
        if not _EXIT_HOOK_REGISTERED:
            atexit.register(_close_open_renderers)
            _EXIT_HOOK_REGISTERED = True
        self._option = mujoco.MjvOption()
        if geom_groups is not None:
            if not all(0 <= g < len(self._option.geomgroup) for g in geom_groups):
                raise ValueError(f"geom_groups must be in [0, {len(self._option.geomgroup)}), got {geom_groups}")
            self._option.geomgroup[:] = 0
            for group in geom_groups:
                self._option.geomgroup[group] = 1
        if fast:
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False

    def _resolve_camera(self, camera: CameraView | str | int) -> CameraView | int:
        if isinstance(camera, CameraView):
            return camera
        names = camera_names(self.model)
        if isinstance(camera, str):
            if camera not in names:
                raise ValueError(f"camera {camera!r} is not in this model; available cameras: {names}")
            return names.index(camera)
        if isinstance(camera, (int, np.integer)) and -1 <= camera < self.model.ncam:
            return int(camera)
        raise ValueError(
            f"camera must be a CameraView, a camera name in {names} or an id in [-1, {self.model.ncam}), "
            f"got {camera!r}"
        )

    def render(self, camera: CameraView | str | int | None = None) -> np.ndarray:
        """Draw the current state: (image_size, image_size, 3) uint8, upright.

        ``camera`` draws from another view than the renderer's own (same context, same size),
        e.g. the second view of a multi-camera reward.
        """
        if self._renderer is None:
            raise RuntimeError("FrameRenderer.render() called after close(); make a new renderer")
        view = self._camera if camera is None else self._resolve_camera(camera)
        camera = view.to_mjv() if isinstance(view, CameraView) else view
        self._renderer.update_scene(self.data, camera=camera, scene_option=self._option)
        frame = self._renderer.render()
        if self.flip:
            frame = frame[::-1, ::-1]
        return np.ascontiguousarray(frame)

    def close(self) -> None:
        """Free the rendering context."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        _OPEN_RENDERERS.discard(self)
