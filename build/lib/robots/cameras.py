"""Cameras that always hand out their latest frame, read by a background thread.

* :class:`CameraConfig` - source, capture size/fps, MJPG, crop and output size, stale limit.
* :class:`OpenCVCamera` - USB/V4L2 camera via OpenCV (buffer size 1), latest frame + timestamp.
* :class:`RealSenseCamera` - Intel RealSense colour stream via ``pyrealsense2`` (optional).
* :class:`SimCamera` - frames drawn by a function (simulated backends), same interface.
* :class:`StaleFrameError` - the newest frame is older than ``max_age_s``.
* :func:`make_camera` - camera from a config.

Every camera: ``connect()``, ``read() -> (H, W, 3) uint8 RGB`` (the newest frame, cropped and
resized), ``timestamp`` (``time.monotonic()`` of that frame), ``shape``, ``disconnect()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = ["CameraConfig", "OpenCVCamera", "RealSenseCamera", "SimCamera", "StaleFrameError", "make_camera"]

logger = logging.getLogger(__name__)


class StaleFrameError(RuntimeError):
    """No new camera frame within ``max_age_s``: the camera stalled or was unplugged."""


@dataclass
class CameraConfig:
    """One camera.

    Args:
        type: ``"opencv"``, ``"realsense"`` or ``"sim"``.
        source: OpenCV index or device path (``0``, ``"/dev/video2"``); RealSense serial number or None.
        width, height, fps: capture settings requested from the device.
        mjpg: ask OpenCV for MJPG (needed by many USB cameras for 30 fps at 640x480 and above).
        crop: ``[top, left, height, width]`` in capture pixels, applied before resizing; None keeps all.
        size: ``[H, W]`` of the frames handed to the env.
        max_age_s: ``read()`` raises StaleFrameError when the newest frame is older than this.
    """

    type: str = "opencv"
    source: int | str | None = 0
    width: int = 640
    height: int = 480
    fps: int = 30
    mjpg: bool = True
    crop: list[int] | None = None
    size: list[int] = field(default_factory=lambda: [128, 128])
    max_age_s: float = 0.5


def _crop_resize(frame: np.ndarray, crop: list[int] | None, size: list[int]) -> np.ndarray:
    """Crop ``[top, left, h, w]`` then resize to ``size`` ``[H, W]`` (INTER_AREA)."""
    if crop is not None:
        top, left, h, w = crop
        frame = frame[top : top + h, left : left + w]
    if frame.shape[:2] != tuple(size):
        frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame, dtype=np.uint8)


class _ThreadedCamera:
    """Shared machinery: a thread calls ``_grab()`` and keeps only the newest frame."""

    def __init__(self, config: CameraConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._frame: np.ndarray | None = None
        self.timestamp = float("-inf")
        self._lock = threading.Lock()
        self._new_frame = threading.Event()
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of the frames :meth:`read` returns."""
        return (int(self.config.size[0]), int(self.config.size[1]), 3)

    def _open(self) -> None:
        raise NotImplementedError

    def _grab(self) -> np.ndarray:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def connect(self, timeout_s: float = 5.0) -> None:
        """Open the device, start the reader thread and wait for the first frame."""
        self._open()
        self._running.set()
        self._thread = threading.Thread(target=self._loop, name=f"camera-{self.config.source}", daemon=True)
        self._thread.start()
        if not self._new_frame.wait(timeout_s):
            self.disconnect()
            raise StaleFrameError(f"camera {self.config.source!r}: no frame within {timeout_s} s of connecting")

    def _loop(self) -> None:
        while self._running.is_set():
            try:
                frame = self._grab()
            except Exception as exc:  # surfaced by read(); the thread must not die silently
                self.error = exc
                logger.error("camera %r: %s", self.config.source, exc)
                time.sleep(0.05)
                continue
            frame = _crop_resize(frame, self.config.crop, self.config.size)
            with self._lock:
                self._frame, self.timestamp = frame, self.clock()
            self._new_frame.set()

    def read(self) -> np.ndarray:
        """The newest frame (H, W, 3) uint8 RGB; raises StaleFrameError if it is older than max_age_s."""
        with self._lock:
            frame, stamp = self._frame, self.timestamp
        age = self.clock() - stamp
        if frame is None or age > self.config.max_age_s:
            cause = f" (last error: {self.error})" if self.error else ""
            raise StaleFrameError(
                f"camera {self.config.source!r}: newest frame is {age:.2f} s old, limit "
                f"max_age_s={self.config.max_age_s}{cause}"
            )
        return frame

    def disconnect(self) -> None:
        """Stop the thread and release the device."""
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self._close()


class OpenCVCamera(_ThreadedCamera):
    """A V4L2/USB camera through OpenCV with a 1-frame buffer, so ``read()`` never returns old frames.

    >>> cam = OpenCVCamera(CameraConfig(source=0, size=[96, 128]))  # doctest: +SKIP
    >>> cam.connect(); cam.read().shape  # doctest: +SKIP
    (96, 128, 3)
    """

    def _open(self) -> None:
        cfg = self.config
        self._cap = cv2.VideoCapture(cfg.source)
        if not self._cap.isOpened():
            raise ConnectionError(f"OpenCV could not open camera source {cfg.source!r} (check `v4l2-ctl --list-devices`)")
        if cfg.mjpg:
            self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
        self._cap.set(cv2.CAP_PROP_FPS, cfg.fps)
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)

    def _grab(self) -> np.ndarray:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise ConnectionError(f"OpenCV camera {self.config.source!r} returned no frame")
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _close(self) -> None:
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()


class RealSenseCamera(_ThreadedCamera):
    """Colour stream of an Intel RealSense (``pip install pyrealsense2``); ``source`` is the serial or None."""

    def _open(self) -> None:
        try:
            import pyrealsense2 as rs
        except ImportError as exc:
            raise ImportError(
                "RealSenseCamera needs pyrealsense2 (not in any rlrm extra: wheels lag new Pythons): pip install pyrealsense2"
            ) from exc
        cfg = self.config
        self._pipeline = rs.pipeline()
        rs_config = rs.config()
        if cfg.source not in (None, "", 0):
            rs_config.enable_device(str(cfg.source))
        rs_config.enable_stream(rs.stream.color, cfg.width, cfg.height, rs.format.rgb8, cfg.fps)
        self._pipeline.start(rs_config)

    def _grab(self) -> np.ndarray:
        frames = self._pipeline.wait_for_frames(timeout_ms=1000)
        return np.asanyarray(frames.get_color_frame().get_data()).copy()

    def _close(self) -> None:
        pipeline = getattr(self, "_pipeline", None)
        if pipeline is not None:
            pipeline.stop()
            self._pipeline = None


class SimCamera:
    """Frames drawn on demand by ``render_fn() -> (h, w, 3) uint8`` (simulated backends), then cropped/resized.

    >>> cam = SimCamera(lambda: np.zeros((60, 80, 3), np.uint8), CameraConfig(type="sim", size=[32, 32]))
    >>> cam.connect(); cam.read().shape
    (32, 32, 3)
    """

    def __init__(self, render_fn: Callable[[], np.ndarray], config: CameraConfig | None = None) -> None:
        self.render_fn = render_fn
        self.config = config or CameraConfig(type="sim")
        self.timestamp = float("-inf")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of the frames :meth:`read` returns."""
        return (int(self.config.size[0]), int(self.config.size[1]), 3)

    def connect(self) -> None:
        """Nothing to open."""

    def read(self) -> np.ndarray:
        """Render now (a simulated camera is never stale)."""
        frame = np.asarray(self.render_fn())
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"render_fn must return (H, W, 3) uint8, got {frame.dtype} {frame.shape}")
        self.timestamp = time.monotonic()
        return _crop_resize(frame, self.config.crop, self.config.size)

    def disconnect(self) -> None:
        """Nothing to release."""


def make_camera(config: CameraConfig | dict, render_fn: Callable[[], np.ndarray] | None = None):
    """Build a camera from its config; ``type: sim`` needs the backend's ``render_fn``."""
    if isinstance(config, dict):
        config = CameraConfig(**config)
    if config.type == "opencv":
        return OpenCVCamera(config)
    if config.type == "realsense":
        return RealSenseCamera(config)
    if config.type == "sim":
        if render_fn is None:
            raise ValueError("a camera of type 'sim' needs a simulated backend (make_robot_env(..., sim=True))")
        return SimCamera(render_fn, config)
    raise ValueError(f"camera type must be 'opencv', 'realsense' or 'sim', got {config.type!r}")
