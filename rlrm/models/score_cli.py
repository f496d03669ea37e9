"""``rlrm score``: score a recorded video against a task with a reward model.

* :func:`read_video` - mp4/avi (OpenCV) or .npy (T, H, W, 3) uint8 -> frames + frame rate.
* :func:`select_frames` - which frames to score: the dense reward's prefix sampling (first, last and
  a linspace between; :func:`rlrm.sampling.sample_indices`) or every frame, after optional fps resampling.
* :func:`plot_scores` - PNG of progress and success over the video's frame index, with thumbnails.
* ``add_arguments`` / ``run`` - the subcommand.

Example::

    rlrm score episode.mp4 --task "reach the red target" --model tiny --json out.json --plot out.png
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from rlrm.types import RewardQuery, validate_frames

__all__ = ["read_video", "select_frames", "plot_scores", "add_arguments", "run"]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def read_video(path: str | Path) -> tuple[np.ndarray, float | None]:
    """Frames (T, H, W, 3) uint8 RGB and the container's fps (None for .npy) of a video file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        frames = np.load(path, allow_pickle=False)
        return validate_frames(frames, name=f"{path.name} contents"), None
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"unsupported video type {suffix!r} for {str(path)!r}; expected .npy or one of {VIDEO_SUFFIXES}")
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


def plot_scores(
    path: str | Path,
    frames: np.ndarray,
    indices: np.ndarray,
    progress: np.ndarray,
    success: np.ndarray,
    task: str,
    max_thumbnails: int = 8,
) -> Path:
    """PNG with thumbnails of the scored frames above progress and success curves over the frame index."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    thumbs = np.unique(np.rint(np.linspace(0, len(indices) - 1, min(max_thumbnails, len(indices)))).astype(int))
    fig = Figure(figsize=(max(6.0, 1.1 * len(thumbs)), 4.6), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, len(thumbs), height_ratios=[1, 2.2])
    for col, i in enumerate(thumbs):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(frames[indices[i]])
        ax.set_title(f"#{indices[i]}", fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    ax.plot(indices, progress, "o-", color="tab:green", label="progress")
    ax.plot(indices, success, "s-", color="tab:orange", label="success probability")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("video frame index")
    ax.set_ylabel("model output")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(task[:90], fontsize=9)
    fig.tight_layout()
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
    frames, container_fps = read_video(args.video)
    source_fps = args.source_fps or container_fps
    indices = select_frames(len(frames), args.max_frames, args.all_frames, args.fps, source_fps)
    kwargs: dict[str, Any] = {"device": args.device} if args.device else {}
    model = make_reward_model(args.model, **kwargs)
    query = RewardQuery(np.ascontiguousarray(frames[indices]), args.task, frame_index=indices)
    result = model.score([query])[0]

    table = Table(title=f"{Path(args.video).name}: {args.task}")
    for col in ("frame", "time s", "progress", "success"):
        table.add_column(col, justify="right")
    for i, p, s in zip(indices, result.progress, result.success, strict=True):
        t = f"{i / source_fps:.2f}" if source_fps else "-"
        table.add_row(str(int(i)), t, f"{p:.3f}", f"{s:.3f}")
    Console().print(table)

    report = {
        "video": str(args.video),
        "task": args.task,
        "model": model.info().to_dict(),
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
        plot_scores(args.plot, frames, indices, result.progress, result.success, args.task)
        log.info("wrote %s", args.plot)
    if args.video_out:
        from rlrm.wrappers.video import write_reward_video

        write_reward_video(args.video_out, frames[indices], result.progress, result.success,
                           fps=2.0, task=args.task, curves_png=False)
    return 0
