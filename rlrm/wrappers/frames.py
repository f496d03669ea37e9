"""Where a wrapper's frames come from and where an episode's frames are kept.

* :func:`check_frame` - validate one (H, W, 3) uint8 image, with a hint on how to fix a
  float, channel-first, RGBA or grayscale image.
* :func:`frame_from_observation` - pull an image out of a dict observation by key (``"a/b"``
  for nested dicts); a missing key lists the keys there are.
* :class:`FrameSource` - one env's frames: ``env.render()`` (``camera=None``) or an image key
  of its dict observation; checks the first frame fully, later ones cheaply.
* :class:`FrameBuffer` - every frame of the current episode in RAM, reset frame first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_frame", "frame_from_observation", "FrameSource", "FrameBuffer"]


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
        hint = "; float images in [0,1]: use (np.clip(frame, 0, 1) * 255).astype(np.uint8)"
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


class FrameSource:
    """Reads the current frame of one env: ``env.render()`` when ``camera`` is None, else ``obs[camera]``.

    The first frame is checked fully (:func:`check_frame`); later frames must keep its shape.

    Args:
        env: the env to render (used only when ``camera`` is None).
        camera: an image key of the dict observation (``"a/b"`` for nested), or None.

    >>> import gymnasium as gym
    >>> env = gym.make("CartPole-v1", render_mode="rgb_array")
    >>> obs, _ = env.reset(seed=0)
    >>> FrameSource(env).read(obs).shape
    (400, 600, 3)
    """

    def __init__(self, env: Any, camera: str | None = None) -> None:
        self.env = env
        self.camera = camera
        self._shape: tuple[int, ...] | None = None
        if camera is None:
            mode = getattr(env, "render_mode", None)
            if mode is not None and mode != "rgb_array":
                raise ValueError(
                    f"frames come from env.render(), which needs render_mode='rgb_array', got {mode!r}; "
                    "recreate the env with gym.make(id, render_mode='rgb_array') or pass camera=<image key>"
                )
        elif not isinstance(camera, str) or not camera:
            raise ValueError(f"camera must be an image key of the observation (str) or None, got {camera!r}")

    @property
    def where(self) -> str:
        """Human-readable origin of the frames, for error messages."""
        return "env.render()" if self.camera is None else f"observation[{self.camera!r}]"

    def read(self, observation: Any) -> np.ndarray:
        """The current (H, W, 3) uint8 frame; ``observation`` is what reset/step just returned."""
        frame = self.env.render() if self.camera is None else frame_from_observation(observation, self.camera)
        return self.check(frame)

    def check(self, frame: Any) -> np.ndarray:
        """Validate ``frame`` (fully the first time, by shape afterwards) and return it."""
        if (
            self._shape is not None
            and isinstance(frame, np.ndarray)
            and frame.shape == self._shape
            and frame.dtype == np.uint8
        ):
            return frame
        frame = check_frame(frame, self.where)
        if self._shape is not None and frame.shape != self._shape:
            raise ValueError(
                f"{self.where} changed image size mid-run: got {frame.shape}, earlier frames were {self._shape}; "
                "keep the render/camera resolution fixed"
            )
        self._shape = frame.shape
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
