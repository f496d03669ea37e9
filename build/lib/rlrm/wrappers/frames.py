"""Where a wrapper's frames come from and where an episode's frames are kept.

* :func:`check_frame` - validate one (H, W, 3) uint8 image, with a hint on how to fix a
  float, channel-first, RGBA or grayscale image.
* :func:`frame_from_observation` - pull an image out of a dict observation by key (``"a/b"``
  for nested dicts); a missing key lists the keys there are.
* :func:`camera_list` - the camera setting as a list of names (or None), checked.
* :class:`FrameSource` - one env's frames: ``env.render()`` (``camera=None``), image keys of its dict
  observation or its render cameras (several tiled); checks the first frame fully, later ones cheaply.
* :class:`FrameBuffer` - every frame of the current episode in RAM, reset frame first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlrm.types import float_frames_hint

__all__ = ["check_frame", "frame_from_observation", "camera_list", "FrameSource", "FrameBuffer"]


def check_frame(frame: Any, where: str) -> np.ndarray:
    """Return ``frame`` if it is an (H, W, 3) uint8 numpy image, else raise a ValueError saying how to fix it.

    ``where`` names the frame's origin in the message (e.g. ``"env.render()"``).
    """
    if frame is None:
        raise ValueError(
            f"{where} returned None instead of an image: create the env with render_mode='rgb_array' "
            "(e.g. gym.make(id, render_mode='rgb_array')) or pass camera=<image key of the observation>"
        )
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"{where} must be a numpy (H,W,3) uint8 image, got {type(frame).__name__}")
    if frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[-1] == 3 and frame.size > 0:
        return frame
    hint = ""
    if frame.ndim == 3 and frame.shape[0] in (1, 3) and frame.shape[-1] not in (1, 3, 4):
        hint = "; it looks channel-first (C,H,W): use frame.transpose(1, 2, 0)"
    elif frame.dtype.kind == "f":
        hint = "; " + float_frames_hint(frame, "frame")
    elif frame.ndim == 3 and frame.shape[-1] == 4:
        hint = "; RGBA: use frame[..., :3]"
    elif frame.ndim == 2 or (frame.ndim == 3 and frame.shape[-1] == 1):
        hint = "; grayscale: use np.repeat(frame.reshape(frame.shape[0], frame.shape[1], 1), 3, axis=-1)"
    elif frame.dtype != np.uint8:
        hint = "; use frame.astype(np.uint8) if its values are already 0..255"
    raise ValueError(f"{where} must be a uint8 (H,W,3) image, got {frame.dtype} {tuple(frame.shape)}{hint}")


def frame_from_observation(observation: Any, camera: str) -> Any:
    """The image under ``camera`` in a dict observation (``"a/b"`` reaches ``obs["a"]["b"]``)."""
    if not isinstance(observation, dict):
        raise ValueError(
            f"camera={camera!r} needs a dict observation, got {type(observation).__name__}; "
            "pass camera=None to use env.render() instead"
        )
    if camera in observation:
        return observation[camera]
    node: Any = observation
    for part in camera.split("/"):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(
                f"camera key {camera!r} is not in the observation; keys there are: {_list_keys(observation)}"
            )
        node = node[part]
    return node


def _list_keys(observation: dict, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for k, v in observation.items():
        if isinstance(v, dict):
            keys.extend(_list_keys(v, f"{prefix}{k}/"))
        else:
            keys.append(f"{prefix}{k}")
    return keys


def camera_list(camera: Any) -> list[str] | None:
    """None, or ``camera`` as a list of names (one name, or several to tile); a ValueError saying what is allowed."""
    if camera is None:
        return None
    names = [camera] if isinstance(camera, str) else camera
    try:
        names = list(names)
    except TypeError:
        names = []
    if not names or not all(isinstance(c, str) and c for c in names) or len(set(names)) != len(names):
        raise ValueError(
            f"camera must be None, an image key / camera name (str) or a non-empty list of distinct names, got {camera!r}"
        )
    return names


def _offscreen_renderer(env: Any, mode: str) -> Any:
    """The MuJoCo renderer of an env shown with ``render_mode="human"``: it also renders its camera offscreen.

    Gymnasium's ``MujocoRenderer`` (MuJoCo envs, gymnasium-robotics) keeps one viewer per mode, so the
    window a person watches and the frames the reward model scores come from the same camera and state.
    Any other env in a non-``rgb_array`` mode returns no frames: a ``ValueError`` says what to pass instead.
    """
    renderer = getattr(getattr(env, "unwrapped", env), "mujoco_renderer", None)
    if mode == "human" and renderer is not None and callable(getattr(renderer, "render", None)):
        if getattr(renderer, "width", None) and getattr(renderer, "height", None):
            return renderer
    raise ValueError(
        f"frames come from env.render(), which returns no image with render_mode={mode!r} "
        f"({type(getattr(env, 'unwrapped', env)).__name__} is not a MuJoCo env whose camera can also be rendered "
        "offscreen). Pass camera=<an image key of the observation, or a render camera of the env> to take the "
        "frames from there, or recreate the env with gym.make(id, render_mode='rgb_array')"
    )


class FrameSource:
    """Reads the current frame of one env from ``env.render()``, observation keys or named render cameras.

    ``camera`` is None (``env.render()``), one name, or a list of names. A name is an image key of
    the dict observation (``"a/b"`` for nested; robot envs put each camera there under its name) or,
    if no such key exists, a render camera of the env (``env.unwrapped.render_camera(name)``, e.g.
    ``"front"`` / ``"side"`` of rlrm's Fetch envs). Several cameras are tiled side by side into one
    frame (:func:`rlrm.views.tile_views`); :attr:`view_widths` says where each view is.

    The first frame is checked fully (:func:`check_frame`); later frames must keep its shape.

    With ``camera=None`` the env must render ``rgb_array`` frames, except a MuJoCo env made with
    ``render_mode="human"`` (a person watches its window): its frames are rendered offscreen from the same
    camera. Other envs in another mode raise a ``ValueError`` that names ``camera=``.

    Args:
        env: the env to read frames from.
        camera: None, a name, or a list of names (see above).

    >>> import gymnasium as gym
    >>> env = gym.make("CartPole-v1", render_mode="rgb_array")
    >>> obs, _ = env.reset(seed=0)
    >>> FrameSource(env).read(obs).shape
    (400, 600, 3)
    """

    def __init__(self, env: Any, camera: str | list[str] | tuple[str, ...] | None = None) -> None:
        self.env = env
        self.cameras = camera_list(camera)
        self.camera = camera if not isinstance(camera, (list, tuple)) else list(camera)
        self._shape: tuple[int, ...] | None = None
        self._kinds: list[str] | None = None  # per camera: "obs" or "render"
        self.view_widths: list[int] = []
        self._offscreen: Any = None  # a MuJoCo env shown in a window: its renderer, asked for rgb_array frames
        if camera is None:
            mode = getattr(env, "render_mode", None)
            if mode is not None and mode != "rgb_array":
                self._offscreen = _offscreen_renderer(env, mode)

    @property
    def where(self) -> str:
        """Human-readable origin of the frames, for error messages."""
        if self.cameras is None:
            return "env.render()"
        if len(self.cameras) == 1:
            return f"observation[{self.cameras[0]!r}]" if self._kinds != ["render"] else f"render_camera({self.cameras[0]!r})"
        return f"cameras {self.cameras}"

    def _resolve(self, observation: Any) -> list[str]:
        kinds = []
        render_names = None
        for name in self.cameras or []:
            try:
                frame_from_observation(observation, name)
                kinds.append("obs")
                continue
            except (KeyError, ValueError) as obs_error:
                base = getattr(self.env, "unwrapped", self.env)
                if render_names is None:
                    render_names = list(getattr(base, "camera_names", []) or [])
                if hasattr(base, "render_camera") and name in render_names:
                    kinds.append("render")
                    continue
                keys = _list_keys(observation) if isinstance(observation, dict) else []
                raise KeyError(
                    f"camera {name!r} is neither an image key of the observation (keys: {keys}) nor a render camera "
                    f"of {type(base).__name__} (cameras: {render_names or 'none'})"
                ) from obs_error
        return kinds

    def read(self, observation: Any) -> np.ndarray:
        """The current (H, W, 3) uint8 frame (views tiled); ``observation`` is what reset/step just returned."""
        if self.cameras is None:
            return self.check(self._offscreen.render("rgb_array") if self._offscreen is not None else self.env.render())
        if self._kinds is None:
            self._kinds = self._resolve(observation)
        base = getattr(self.env, "unwrapped", self.env)
        views = []
        for name, kind in zip(self.cameras, self._kinds, strict=True):
            frame = frame_from_observation(observation, name) if kind == "obs" else base.render_camera(name)
            views.append(frame if self._shape is not None else check_frame(frame, f"camera {name!r}"))
        return self.tile(views)

    def tile(self, views: list[np.ndarray], where: str | None = None) -> np.ndarray:
        """The views of one step (in camera order) side by side, validated as :meth:`check` does;
        the first call records :attr:`view_widths`."""
        if len(views) == 1:
            return self.check(views[0], where)
        from rlrm.views import tile_views

        if len(self.view_widths) <= 1:
            self.view_widths = [int(v.shape[1]) for v in views]
        return self.check(tile_views(views, self.cameras), where)

    def check(self, frame: Any, where: str | None = None) -> np.ndarray:
        """Validate ``frame`` (fully the first time, by shape afterwards) and return it.

        ``where`` names the frame's origin in errors (default :attr:`where`; a vector wrapper names the sub-env).
        """
        if (
            self._shape is not None
            and isinstance(frame, np.ndarray)
            and frame.shape == self._shape
            and frame.dtype == np.uint8
        ):
            return frame
        where = where or self.where
        frame = check_frame(frame, where)
        if self._shape is not None and frame.shape != self._shape:
            raise ValueError(
                f"{where} changed image size mid-run: got {frame.shape}, earlier frames were {self._shape}; "
                "keep the render/camera resolution fixed"
            )
        self._shape = frame.shape
        if not self.view_widths:
            self.view_widths = [int(frame.shape[1])]
        return frame


class FrameBuffer:
    """Every frame of the current episode, oldest (the reset frame) first, kept in RAM.

    Frames are copied on append, so envs that reuse their render buffer are safe.
    Memory is T * H * W * 3 bytes (1000 steps at 128x128 is 49 MB).

    >>> buf = FrameBuffer()
    >>> buf.append(np.zeros((4, 4, 3), np.uint8)); buf.append(np.ones((4, 4, 3), np.uint8))
    >>> len(buf), buf.gather([1]).shape
    (2, (1, 4, 4, 3))
    """

    def __init__(self) -> None:
        self._frames: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._frames)

    def append(self, frame: np.ndarray) -> None:
        """Add the newest frame (H, W, 3) uint8."""
        self._frames.append(np.array(frame, dtype=np.uint8, copy=True))

    def clear(self) -> None:
        """Drop the episode's frames."""
        self._frames.clear()

    def gather(self, indices: Any) -> np.ndarray:
        """Frames at ``indices`` (episode step numbers, reset = 0) stacked as (T, H, W, 3) uint8."""
        return np.stack([self._frames[int(i)] for i in indices])

    def frames(self) -> np.ndarray:
        """The whole episode so far as (T, H, W, 3) uint8."""
        return np.stack(self._frames)

    @property
    def last(self) -> np.ndarray:
        """The newest frame (H, W, 3) uint8."""
        return self._frames[-1]
