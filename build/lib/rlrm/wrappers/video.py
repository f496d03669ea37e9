"""Episode videos with the reward model's progress and success curves drawn under the frames.

* :func:`write_reward_video` - one mp4 (OpenCV ``VideoWriter``, ``mp4v``): each frame above a
  panel plotting progress and success probability up to that frame, with the model's success decision
  beside the env's own ``is_success`` (so a false positive shows); used by ``rlrm score`` too.
* :func:`write_reward_curves` - a PNG of the curves (matplotlib, Agg canvas).
* :func:`wrap_text` - split a task text into lines that fit a width in pixels (OpenCV font).
* :class:`RewardVideoRecorder` - a wrapper writing every n-th episode of a reward-wrapped env as
  ``<prefix>-<episode>.mp4`` plus ``.png``, one video frame per step.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from rlrm.types import validate_frames
from rlrm.wrappers.frames import check_frame

__all__ = ["write_reward_video", "write_reward_curves", "wrap_text", "RewardVideoRecorder"]

log = logging.getLogger(__name__)

_PROGRESS_BGR = (80, 200, 60)
_SUCCESS_BGR = (40, 140, 255)
_YES_BGR = (40, 200, 40)  # a success verdict: filled green box
_NO_BGR = (50, 50, 210)  # no success (yet): filled red box
_MIN_WIDTH = 320
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TASK_SCALE = 0.35
_TASK_LINE_PX = 12


def wrap_text(text: str, width_px: int, scale: float = _TASK_SCALE, thickness: int = 1) -> list[str]:
    """``text`` split at spaces into lines no wider than ``width_px`` in OpenCV's Hershey simplex font.

    A word wider than the whole line is cut into pieces that fit.

    >>> wrap_text("put the red cube in the blue bowl", 100)
    ['put the red cube', 'in the blue bowl']
    """
    def fits(line: str) -> bool:
        return cv2.getTextSize(line, _FONT, scale, thickness)[0][0] <= width_px

    lines: list[str] = []
    current = ""
    for word in text.split():
        while not fits(word) and len(word) > 1:  # a word wider than a line: cut it where it stops fitting
            cut = max(1, max(k for k in range(1, len(word) + 1) if fits(word[:k]) or k == 1))
            if current:
                lines.append(current)
                current = ""
            lines.append(word[:cut])
            word = word[cut:]
        candidate = f"{current} {word}" if current else word
        if fits(candidate) or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


def _curve_array(name: str, values: Any, length: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.shape[0] != length:
        raise ValueError(f"{name} must have one value per frame ({length}), got {arr.shape[0]}")
    return arr


def _polyline(values: np.ndarray, upto: int, x0: int, y0: int, w: int, h: int, n: int) -> list[np.ndarray]:
    """Pixel polylines of values[:upto+1] (NaN breaks the line) in the box (x0, y0, w, h) for n steps."""
    pieces, current = [], []
    for t in range(upto + 1):
        v = values[t]
        if not math.isfinite(v):
            if current:
                pieces.append(np.array(current, np.int32))
            current = []
            continue
        x = x0 + (t * (w - 1)) // max(n - 1, 1)
        y = y0 + int(round((1.0 - min(max(v, 0.0), 1.0)) * (h - 1)))
        current.append((x, y))
    if current:
        pieces.append(np.array(current, np.int32))
    return pieces


def _verdict(panel: np.ndarray, x: int, y: int, label: str, value: float) -> None:
    """A filled box (green: success, red: not) and its label at (x, y) (text baseline); nothing for NaN."""
    if not math.isfinite(value):
        return
    cv2.rectangle(panel, (x, y - 9), (x + 9, y), _YES_BGR if value >= 0.5 else _NO_BGR, -1)
    cv2.putText(panel, label, (x + 13, y), _FONT, 0.4, (220, 220, 220), 1, cv2.LINE_AA)


def _panel(width: int, height: int, t: int, progress: np.ndarray, success: np.ndarray,
           threshold: float | None, model_success: np.ndarray | None = None,
           env_success: np.ndarray | None = None) -> np.ndarray:
    """The curve panel under frame t, BGR uint8 (height, width, 3): values, verdicts, curves."""
    panel = np.full((height, width, 3), 24, np.uint8)
    n = len(progress)
    verdicts = [(label, values[t]) for label, values in (("model success", model_success),
                                                          ("env is_success", env_success))
                if values is not None and np.isfinite(values).any()]
    pad, top = 6, 34 if verdicts else 18
    for i, (label, value) in enumerate(verdicts):  # side by side under the values, one half of the width each
        _verdict(panel, pad + i * (width // 2), 29, label, float(value))
    x0, y0, w, h = pad, top, width - 2 * pad, height - top - pad
    cv2.rectangle(panel, (x0, y0), (x0 + w - 1, y0 + h - 1), (90, 90, 90), 1)
    if threshold is not None:
        ty = y0 + int(round((1.0 - threshold) * (h - 1)))
        for xs in range(x0, x0 + w, 8):
            cv2.line(panel, (xs, ty), (min(xs + 3, x0 + w - 1), ty), (140, 140, 140), 1)
    xt = x0 + (t * (w - 1)) // max(n - 1, 1)
    cv2.line(panel, (xt, y0), (xt, y0 + h - 1), (70, 70, 70), 1)
    for values, color in ((success, _SUCCESS_BGR), (progress, _PROGRESS_BGR)):
        for piece in _polyline(values, t, x0, y0, w, h, n):
            if len(piece) == 1:
                cv2.circle(panel, tuple(int(c) for c in piece[0]), 1, color, -1)
            else:
                cv2.polylines(panel, [piece], False, color, 1, cv2.LINE_AA)

    def fmt(v: float) -> str:
        return f"{v:.2f}" if math.isfinite(v) else "-"

    cv2.putText(panel, f"progress {fmt(progress[t])}", (pad, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                _PROGRESS_BGR, 1, cv2.LINE_AA)
    cv2.putText(panel, f"success {fmt(success[t])}", (pad + width // 2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                _SUCCESS_BGR, 1, cv2.LINE_AA)
    return panel


def write_reward_video(
    path: str | Path,
    frames: np.ndarray,
    progress: Any,
    success: Any,
    fps: float = 10.0,
    threshold: float | None = None,
    task: str | None = None,
    curves_png: bool = True,
    model_success: Any = None,
    env_success: Any = None,
) -> Path:
    """Write ``frames`` as an mp4 with the progress and success curves drawn under them; returns the path.

    Args:
        path: output ``.mp4`` path (parent directories are created).
        frames: (T, H, W, 3) uint8 RGB, one video frame each.
        progress / success: (T,) values in [0, 1] for each frame (NaN = no value yet, not drawn).
        fps: video frame rate.
        threshold: success threshold drawn as a dashed line, or None.
        task: instruction written on the frame (wrapped to its width) and the PNG title.
        curves_png: also write the curves as ``<path>.png`` (same stem).
        model_success: (T,) the reward model's success decision per frame (1/0, NaN unknown), drawn as a
            green/red box; None: not shown.
        env_success: (T,) the env's own ``info["is_success"]`` per frame, drawn beside the model's so a
            false positive of the reward model is visible; None (the env has none): not shown.

    >>> import numpy as np, tempfile, os
    >>> frames = np.zeros((5, 48, 64, 3), np.uint8)
    >>> out = write_reward_video(os.path.join(tempfile.mkdtemp(), "ep.mp4"), frames,
    ...                          np.linspace(0, 1, 5), np.full(5, 0.1))
    >>> out.suffix, out.with_suffix(".png").exists()
    ('.mp4', True)
    """
    frames = validate_frames(frames)
    n, h, w = frames.shape[:3]
    progress = _curve_array("progress", progress, n)
    success = _curve_array("success", success, n)
    model_success = None if model_success is None else _curve_array("model_success", model_success, n)
    env_success = None if env_success is None else _curve_array("env_success", env_success, n)
    if not (isinstance(fps, (int, float)) and fps > 0):
        raise ValueError(f"fps must be > 0, got {fps!r}")
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"video path must end in .mp4, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = max(1, math.ceil(_MIN_WIDTH / w))
    out_w, img_h = w * scale, h * scale
    out_w += out_w % 2
    panel_h = max(80, out_w // 3)
    out_h = img_h + panel_h
    out_h += out_h % 2
    task_lines = wrap_text(task, out_w - 8) if task else []
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (out_w, out_h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV could not open an mp4v VideoWriter for {str(path)!r} at {out_w}x{out_h}")
    try:
        for t in range(n):
            canvas = np.zeros((out_h, out_w, 3), np.uint8)
            image = cv2.resize(frames[t], (w * scale, img_h), interpolation=cv2.INTER_NEAREST)
            canvas[:img_h, : w * scale] = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            for i, line in enumerate(task_lines):  # dark outline keeps the text readable on bright frames
                for color, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
                    cv2.putText(canvas, line, (4, 12 + i * _TASK_LINE_PX), _FONT, _TASK_SCALE, color, thickness,
                                cv2.LINE_AA)
            canvas[img_h : img_h + panel_h] = _panel(out_w, panel_h, t, progress, success, threshold,
                                                     model_success, env_success)
            writer.write(canvas)
    finally:
        writer.release()
    if curves_png:
        write_reward_curves(path.with_suffix(".png"), progress, success, threshold=threshold, task=task,
                            env_success=env_success)
    log.info("wrote %s (%d frames)", path, n)
    return path


def write_reward_curves(path: str | Path, progress: Any, success: Any, threshold: float | None = None,
                        task: str | None = None, env_success: Any = None) -> Path:
    """Write a PNG plotting progress and success probability (and the env's ``is_success``) against the step."""
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    progress = np.asarray(progress, dtype=np.float64).reshape(-1)
    success = _curve_array("success", success, len(progress))
    fig = Figure(figsize=(6, 3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    steps = np.arange(len(progress))
    ax.plot(steps, progress, color="tab:green", label="progress")
    ax.plot(steps, success, color="tab:orange", label="success probability")
    if env_success is not None and np.isfinite(np.asarray(env_success, dtype=np.float64)).any():
        env_success = _curve_array("env_success", env_success, len(progress))
        ax.step(steps, env_success, where="post", color="tab:blue", linestyle=":", label="env is_success")
    if threshold is not None:
        ax.axhline(threshold, color="gray", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("model output")
    if task:
        ax.set_title("\n".join(textwrap.wrap(task, 90)), fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


class RewardVideoRecorder(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Writes every ``every_n_episodes``-th episode as an mp4 with its reward curves, plus a PNG.

    Goes on top of :class:`RobometerReward` or :class:`SuccessTermination` (anything publishing
    ``info["rlrm"]``). Each ``step`` adds one video frame (the frame the reward model saw, taken
    from the reward wrapper's frame buffer, else ``env.render()``) with that step's progress,
    success probability and success decision, beside the env's own ``info["is_success"]`` when the
    env reports one; the episode is written when it terminates or is truncated (or at the next
    ``reset``/``close`` if abandoned). The reset frame is not in the video.

    >>> import gymnasium as gym, tempfile
    >>> from rlrm.models import make_reward_model
    >>> from rlrm.wrappers import RobometerReward
    >>> env = RobometerReward(gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=3),
    ...                       "balance the pole", make_reward_model("tiny"))
    >>> env = RewardVideoRecorder(env, tempfile.mkdtemp())
    >>> _ = env.reset(seed=0)
    >>> while not any(env.step(0)[2:4]): pass
    >>> [p.suffix for p in env.written]
    ['.mp4', '.png']
    >>> env.close()

    Args:
        env: a reward-wrapped env.
        video_dir: directory for ``<name_prefix>-<episode>.mp4`` / ``.png``.
        every_n_episodes: record episodes 0, n, 2n, ...
        fps: video frame rate; None uses ``env.metadata["render_fps"]`` or 10.
        name_prefix: file name prefix.
    """

    def __init__(self, env: gym.Env, video_dir: str | Path, every_n_episodes: int = 1, fps: float | None = None,
                 name_prefix: str = "episode") -> None:
        gym.utils.RecordConstructorArgs.__init__(self, video_dir=video_dir, every_n_episodes=every_n_episodes,
                                                 fps=fps, name_prefix=name_prefix)
        gym.Wrapper.__init__(self, env)
        if isinstance(every_n_episodes, bool) or not isinstance(every_n_episodes, int) or every_n_episodes < 1:
            raise ValueError(f"every_n_episodes must be an int >= 1, got {every_n_episodes!r}")
        self.video_dir = Path(video_dir)
        self.every_n_episodes = every_n_episodes
        self.fps = float(fps or env.metadata.get("render_fps") or 10)
        self.name_prefix = name_prefix
        self.written: list[Path] = []
        try:
            self._buffer = env.get_wrapper_attr("frame_buffer")
        except AttributeError:
            self._buffer = None
        self._episode = -1
        self._reset_recording()

    def _reset_recording(self) -> None:
        self._frames: list[np.ndarray] = []
        self._progress: list[float] = []
        self._success: list[float] = []
        self._model_success: list[float] = []
        self._env_success: list[float] = []
        self._threshold: float | None = None

    @property
    def recording(self) -> bool:
        """Whether the current episode is being recorded."""
        return self._episode >= 0 and self._episode % self.every_n_episodes == 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Write an unfinished recorded episode, then reset and start the next one."""
        self._flush()
        self._episode += 1
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        """Step and, if this episode is recorded, keep the frame and the reward model's outputs."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.recording:
            published = info.get("rlrm") if isinstance(info, dict) else None
            if not isinstance(published, dict):
                raise KeyError("RewardVideoRecorder needs info['rlrm']: put it on top of RobometerReward")
            frame = self._buffer.last if self._buffer is not None else check_frame(self.env.render(), "env.render()")
            self._frames.append(np.array(frame, copy=True))
            self._progress.append(float(published.get("progress", math.nan)))
            self._success.append(float(published.get("success_prob", math.nan)))
            self._model_success.append(float(published["success"]) if "success" in published else math.nan)
            self._env_success.append(float(bool(info["is_success"])) if "is_success" in info else math.nan)
            detector = published.get("detector")
            if detector:
                self._threshold = float(detector["threshold"])
            if terminated or truncated:
                self._flush()
        return obs, reward, terminated, truncated, info

    def _flush(self) -> None:
        if self._frames:
            stem = self.video_dir / f"{self.name_prefix}-{self._episode:05d}"
            try:
                task = self.env.get_wrapper_attr("task")
            except AttributeError:
                task = None
            video = write_reward_video(stem.with_suffix(".mp4"), np.stack(self._frames), self._progress,
                                       self._success, fps=self.fps, threshold=self._threshold,
                                       task=task if isinstance(task, str) else None,
                                       model_success=self._model_success, env_success=self._env_success)
            self.written.extend([video, video.with_suffix(".png")])
        self._reset_recording()

    def close(self) -> None:
        """Write an unfinished recorded episode and close the env."""
        try:
            self._flush()
        finally:
            super().close()
