"""``rlrm score``: score a recorded video against a task with a reward model.

* :func:`read_video` - mp4/avi (OpenCV) or .npy (T, H, W, 3) uint8 -> frames + frame rate.
* :func:`coerce_frames` - a .npy array as (T, H, W, 3) uint8: grayscale and float/integer value
  ranges converted with a warning, other layouts refused with the conversion to apply.
* :func:`select_frames` - which frames to score: the dense reward's prefix sampling (first, last and
  a linspace between; :func:`rlrm.sampling.sample_indices`) or every frame, after optional fps resampling.
* :func:`score_figure` / :func:`plot_scores` - progress and success over the video's frame index,
  with thumbnails, titled with the task and the model (a random-weight model is flagged); as a PNG.
* :data:`RANDOM_WEIGHT_MODELS` - model names whose scores carry no meaning (test models).
* ``add_arguments`` / ``run`` - the subcommand.

Example::

    rlrm score episode.mp4 --task "reach the red target" --model tiny --json out.json --plot out.png
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from rlrm.types import ModelInfo, RewardQuery, validate_frames

__all__ = ["read_video", "coerce_frames", "select_frames", "score_figure", "plot_scores", "add_arguments", "run",
           "RANDOM_WEIGHT_MODELS"]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
RANDOM_WEIGHT_MODELS = ("tiny",)
"""Registered models with random weights (for tests and plumbing): their scores mean nothing."""


def read_video(path: str | Path) -> tuple[np.ndarray, float | None]:
    """Frames (T, H, W, 3) uint8 RGB and the container's fps (None for .npy) of a video file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        frames = np.load(path, allow_pickle=False)
        return coerce_frames(frames, name=f"{path.name} contents"), None
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"unsupported video type {suffix!r} for {str(path)!r}; expected .npy or one of {VIDEO_SUFFIXES}")
    # FFmpeg would print its own line ("moov atom not found") before ours; ours names the file and the fix
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"OpenCV cannot open {str(path)!r}; expected a readable {suffix} video")
    fps = float(capture.get(cv2.CAP_PROP_FPS)) or None
    frames = []
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"{str(path)!r} holds no decodable frames")
    return np.stack(frames), fps


def coerce_frames(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    """``frames`` as (T, H, W, 3) uint8, converting the unambiguous cases with a logged warning.

    Converted: grayscale (T, H, W) or (T, H, W, 1) -> three equal channels; RGBA -> RGB; floats in
    [0, 1] -> x255, floats in [0, 255] or other integers in [0, 255] -> rounded uint8, floats in
    [-1, 1] -> (x + 1) x 127.5. Refused with a ValueError naming the shape or the value range and the
    conversion to apply: channel-first arrays, a single (H, W, 3) image, NaN/inf, other ranges.

    >>> coerce_frames(np.full((2, 4, 4, 3), 0.5, np.float32))[0, 0, 0]
    array([128, 128, 128], dtype=uint8)
    >>> coerce_frames(np.zeros((2, 4, 4), np.uint8)).shape
    (2, 4, 4, 3)
    """
    if not isinstance(frames, np.ndarray) or (frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3):
        return validate_frames(frames, name=name)
    got = f"{name} must be uint8 (T,H,W,3), got {frames.dtype} {tuple(frames.shape)}"
    steps: list[tuple[str, str]] = []  # (what was found, the expression that converts it)
    if frames.ndim == 3 and frames.shape[-1] == 3:
        raise ValueError(f"{got}: that is one (H,W,3) image; for a 1-frame video use frames[None]")
    if frames.ndim == 4 and frames.shape[1] in (1, 3, 4) and frames.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{got} (looks channel-first: use frames.transpose(0, 2, 3, 1))")
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
        steps.append(("grayscale (T,H,W)", "np.repeat(frames[..., None], 3, axis=-1)"))
    elif frames.ndim == 4 and frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
        steps.append(("grayscale (T,H,W,1)", "np.repeat(frames, 3, axis=-1)"))
    elif frames.ndim == 4 and frames.shape[-1] == 4:
        frames = frames[..., :3]
        steps.append(("RGBA (T,H,W,4)", "frames[..., :3]"))
    if frames.ndim != 4 or frames.shape[-1] != 3:
        return validate_frames(frames, name=name)  # raises, naming the shape
    if frames.dtype != np.uint8:
        frames, step = _to_uint8(frames, got)
        steps.append(step)
    if steps:
        log.warning("%s: %s; converted with %s (save (T,H,W,3) uint8 frames to skip this)", name,
                    ", ".join(found for found, _ in steps), "; then ".join(expr for _, expr in steps))
    return validate_frames(frames, name=name)


def _to_uint8(frames: np.ndarray, got: str) -> tuple[np.ndarray, tuple[str, str]]:
    """Frames of another dtype as uint8 by their value range, and (what was found, the conversion)."""
    if frames.dtype.kind not in "fiub" or frames.size == 0:
        raise ValueError(f"{got}: expected uint8 values 0..255")
    if frames.dtype.kind == "f" and not np.isfinite(frames).all():
        raise ValueError(f"{got} holding NaN or inf values; replace them first, e.g. np.nan_to_num(frames)")
    lo, hi = float(frames.min()), float(frames.max())
    found = f"{frames.dtype} values in [{lo:g}, {hi:g}]"
    if frames.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        return (frames * 255.0).round().astype(np.uint8), (f"{found} read as 0..1", "(frames * 255).round().astype(np.uint8)")
    if lo >= 0.0 and hi <= 255.0:
        if frames.dtype.kind == "f":
            return frames.round().astype(np.uint8), (f"{found} read as 0..255", "frames.round().astype(np.uint8)")
        return frames.astype(np.uint8), (found, "frames.astype(np.uint8)")
    if frames.dtype.kind == "f" and lo >= -1.0 and hi <= 1.0:
        return (((frames + 1.0) * 127.5).round().astype(np.uint8),
                (f"{found} read as -1..1", "((frames + 1) * 127.5).round().astype(np.uint8)"))
    raise ValueError(
        f"{got} with values in [{lo:g}, {hi:g}]; expected uint8 0..255 (or floats in [0, 1] or [0, 255]): "
        "rescale first, e.g. ((frames - frames.min()) / np.ptp(frames) * 255).round().astype(np.uint8)"
    )


def select_frames(
    num_frames: int,
    max_frames: int = 8,
    all_frames: bool = False,
    fps: float | None = None,
    source_fps: float | None = None,
) -> np.ndarray:
    """Indices of the frames to score, increasing, first and last frame always included.

    Args:
        num_frames: frames in the video.
        max_frames: how many to score (prefix sampling, as the dense reward does).
        all_frames: score every frame (after fps resampling) instead.
        fps / source_fps: if ``fps`` is given, first resample the video from ``source_fps`` to ``fps``.
    """
    from rlrm.sampling import sample_indices

    candidates = np.arange(num_frames)
    if fps is not None:
        if not source_fps:
            raise ValueError("--fps needs the video's own frame rate: pass --source-fps for .npy input")
        if fps <= 0:
            raise ValueError(f"--fps must be > 0, got {fps}")
        step = source_fps / fps
        candidates = np.unique(np.rint(np.arange(0, num_frames - 1e-9, max(step, 1.0))).astype(np.int64))
        candidates = np.union1d(candidates[candidates < num_frames], [num_frames - 1])
    if all_frames:
        return candidates
    return candidates[sample_indices(len(candidates), max_frames, mode="prefix")]


def score_figure(
    frames: np.ndarray,
    indices: np.ndarray,
    progress: np.ndarray,
    success: np.ndarray,
    task: str,
    model: ModelInfo | str | None = None,
    max_thumbnails: int = 8,
) -> Any:
    """Matplotlib figure: thumbnails of the scored frames above progress and success over the frame index.

    Titled with the task and ``model`` (its name; a model in :data:`RANDOM_WEIGHT_MODELS` is flagged
    in red). The curves differ in line style, width and marker, so both stay visible where they coincide.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    thumbs = np.unique(np.rint(np.linspace(0, len(indices) - 1, min(max_thumbnails, len(indices)))).astype(int))
    fig = Figure(figsize=(max(6.0, 1.1 * len(thumbs)), 4.8), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, len(thumbs), height_ratios=[1, 2.2])
    for col, i in enumerate(thumbs):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(frames[indices[i]])
        ax.set_title(f"#{indices[i]}", fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    # progress: wide solid line with big dots underneath; success: thin dashed line with small hollow
    # squares on top, so where the two coincide both are still seen
    ax.plot(indices, progress, "o-", color="tab:green", linewidth=3.0, markersize=8, zorder=2, label="progress")
    ax.plot(indices, success, "s--", color="tab:orange", linewidth=1.5, markersize=5, markerfacecolor="white",
            zorder=3, label="success probability")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("video frame index")
    ax.set_ylabel("model output")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    name = model.name if isinstance(model, ModelInfo) else model
    if name is not None:
        random_weights = name in RANDOM_WEIGHT_MODELS
        label = f"model: {name}" + (" (random weights: these scores mean nothing)" if random_weights else "")
        ax.set_title(label, fontsize=8, color="tab:red" if random_weights else "black")
    fig.suptitle(textwrap.shorten(task, 180, placeholder=" ..."), fontsize=9, wrap=True)
    fig.tight_layout()
    return fig


def plot_scores(
    path: str | Path,
    frames: np.ndarray,
    indices: np.ndarray,
    progress: np.ndarray,
    success: np.ndarray,
    task: str,
    max_thumbnails: int = 8,
    model: ModelInfo | str | None = None,
) -> Path:
    """Write :func:`score_figure` (thumbnails above progress and success curves, titled with task and model) as a PNG."""
    fig = score_figure(frames, indices, progress, success, task, model=model, max_thumbnails=max_thumbnails)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rlrm score``."""
    parser.add_argument("video", help="mp4/avi video or .npy array (T,H,W,3) uint8")
    parser.add_argument("--task", required=True, help="the instruction, e.g. 'reach the red target'")
    parser.add_argument("--model", default="robometer/Robometer-4B",
                        help="reward model spec: tiny, demo, a checkpoint dir or a hub id (default: %(default)s)")
    parser.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    parser.add_argument("--max-frames", type=int, default=8, help="frames to score, prefix sampling (default 8)")
    parser.add_argument("--all-frames", action="store_true", help="score every frame instead of --max-frames")
    parser.add_argument("--fps", type=float, default=None, help="resample the video to this frame rate first")
    parser.add_argument("--source-fps", type=float, default=None, help="frame rate of .npy input (for --fps)")
    parser.add_argument("--json", dest="json_out", default=None, help="write the scores as JSON here")
    parser.add_argument("--plot", default=None, help="write a PNG of progress and success over the frames")
    parser.add_argument("--video-out", default=None, help="write an mp4 of the scored frames with the curves")


def run(args: argparse.Namespace) -> int:
    """Score the video and print, save and plot the per-frame progress and success."""
    from rich.console import Console
    from rich.table import Table

    from rlrm.models import make_reward_model

    if not args.task or not args.task.strip():
        raise ValueError(f"--task must be a non-empty instruction, got {args.task!r}")
    try:  # a wrong file or an unreachable checkpoint is the user's to fix: its message, not a traceback
        frames, container_fps = read_video(args.video)
        source_fps = args.source_fps or container_fps
        indices = select_frames(len(frames), args.max_frames, args.all_frames, args.fps, source_fps)
        kwargs: dict[str, Any] = {"device": args.device} if args.device else {}
        model = make_reward_model(args.model, **kwargs)
    except (ValueError, FileNotFoundError) as e:
        if os.environ.get("RLRM_DEBUG", "0") not in ("", "0"):
            raise
        print(f"rlrm score: {e}", file=sys.stderr)
        return 2
    info = model.info()
    if info.name in RANDOM_WEIGHT_MODELS:
        log.warning("model %r has random weights (a test model): its scores mean nothing; pass --model with "
                    "a trained checkpoint, e.g. robometer/Robometer-4B", info.name)
    query = RewardQuery(np.ascontiguousarray(frames[indices]), args.task, frame_index=indices)
    result = model.score([query])[0]

    console = Console()
    # the title on its own line: as the table's title it wraps at the narrow table's width, mid-phrase
    console.print(f"{Path(args.video).name}: {args.task} (model {info.name})", markup=False, highlight=False,
                  soft_wrap=True)
    table = Table()
    for col in ("frame", "time s", "progress", "success"):
        table.add_column(col, justify="right")
    for i, p, s in zip(indices, result.progress, result.success, strict=True):
        t = f"{i / source_fps:.2f}" if source_fps else "-"
        table.add_row(str(int(i)), t, f"{p:.3f}", f"{s:.3f}")
    console.print(table)

    report = {
        "video": str(args.video),
        "task": args.task,
        "model": info.to_dict(),
        "num_video_frames": int(len(frames)),
        "source_fps": source_fps,
        "frame_index": [int(i) for i in indices],
        "progress": [float(v) for v in result.progress],
        "success": [float(v) for v in result.success],
    }
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2))
        log.info("wrote %s", args.json_out)
    if args.plot:
        plot_scores(args.plot, frames, indices, result.progress, result.success, args.task, model=info)
        log.info("wrote %s", args.plot)
    if args.video_out:
        from rlrm.wrappers.video import write_reward_video

        write_reward_video(args.video_out, frames[indices], result.progress, result.success,
                           fps=2.0, task=args.task, curves_png=False)
    return 0
