"""Trajectory data on disk: one folder per trajectory, read and written here.

* :class:`Trajectory` - frames of one episode plus task, quality label, per-frame progress/success.
* :func:`write_trajectory` / :func:`read_trajectory` - the on-disk format (below).
* :class:`TrajectoryDataset` - every trajectory folder under a root, frames loaded lazily.
* :func:`load_dataset` - a dataset from a folder of trajectories or a LeRobot v3 dataset on local disk.

On-disk layout of one trajectory (``<root>/<episode_id>/``)::

    meta.json     {"format": "rlrm-trajectory/1", "task": "reach the red target",
                   "task_id": "fetch_reach", "quality": "success"|"suboptimal"|"failure",
                   "num_frames": T, "progress": [T floats in [0,1]] | null,
                   "success": [T 0/1] | null, "episode_id": "...", "source": "...", "extra": {}}
    frames.npz    (T, H, W, 3) uint8 under key "frames" (compressed), or
    frames.npy    the same array uncompressed, or
    frames.mp4    any video OpenCV can read (lossy: prefer npz for training data)

``task`` is the instruction the episode was recorded with; ``task_id`` groups phrasings of one
task (Kendall tau and the confusion matrix are per ``task_id``). ``progress`` is the true
per-frame progress when known; ``success`` the per-frame ground-truth success.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlrm.types import validate_frames

__all__ = [
    "QUALITY_LABELS",
    "Trajectory",
    "TrajectoryDataset",
    "write_trajectory",
    "read_trajectory",
    "read_video",
    "load_dataset",
]

log = logging.getLogger(__name__)

FORMAT = "rlrm-trajectory/1"
#: Quality labels, worst first; their index is the rank Kendall tau compares final progress to.
QUALITY_LABELS = ("failure", "suboptimal", "success")
_FRAME_FILES = ("frames.npz", "frames.npy", "frames.mp4")


@dataclass
class Trajectory:
    """One recorded episode with its labels.

    Args:
        frames: (T, H, W, 3) uint8, oldest first.
        task: the instruction the episode was recorded with.
        quality: one of :data:`QUALITY_LABELS`.
        progress: (T,) float32 in [0, 1], true progress per frame, or None when unknown.
        success: (T,) float32 0/1, true per-frame success, or None (derived from ``quality``).
        task_id: groups instruction phrasings of one task; defaults to ``task``.
        episode_id: name of the trajectory (its folder name on disk).
        source: where it came from (``"fetch_reach_scripted"``, a LeRobot repo id, ...).
        extra: anything else (controller gains, seeds, ...), JSON-serialisable.

    >>> import numpy as np
    >>> t = Trajectory(np.zeros((4, 8, 8, 3), np.uint8), "reach the target", "success")
    >>> t.success_labels().tolist()
    [0.0, 0.0, 0.0, 1.0]
    """

    frames: np.ndarray
    task: str
    quality: str
    progress: np.ndarray | None = None
    success: np.ndarray | None = None
    task_id: str = ""
    episode_id: str = ""
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_frames(self.frames)
        if not isinstance(self.task, str) or not self.task.strip():
            raise ValueError(f"task must be a non-empty instruction string, got {self.task!r}")
        if self.quality not in QUALITY_LABELS:
            raise ValueError(f"quality must be one of {QUALITY_LABELS}, got {self.quality!r}")
        t = self.num_frames
        if self.progress is not None:
            self.progress = np.asarray(self.progress, dtype=np.float32).reshape(-1)
            if self.progress.shape != (t,):
                raise ValueError(f"progress must have shape ({t},) to match frames, got {self.progress.shape}")
            if not np.all((self.progress >= 0) & (self.progress <= 1)):
                raise ValueError(
                    f"progress must lie in [0, 1], got min {self.progress.min()} max {self.progress.max()}"
                )
        if self.success is not None:
            self.success = np.asarray(self.success, dtype=np.float32).reshape(-1)
            if self.success.shape != (t,):
                raise ValueError(f"success must have shape ({t},) to match frames, got {self.success.shape}")
        if not self.task_id:
            self.task_id = self.task

    @property
    def num_frames(self) -> int:
        """T, the number of frames."""
        return int(self.frames.shape[0])

    def progress_targets(self) -> np.ndarray:
        """(T,) float32 progress labels: the stored ones, else frame index / (T-1) for successes.

        Robometer's default label ("absolute_first_frame") for successful demonstrations is the
        linear ramp; failed/suboptimal episodes without stored progress get zeros (and are never
        used as progress targets by the trainer anyway).
        """
        if self.progress is not None:
            return self.progress
        if self.quality == "success":
            return np.linspace(0.0, 1.0, self.num_frames, dtype=np.float32)
        return np.zeros(self.num_frames, dtype=np.float32)

    def success_labels(self) -> np.ndarray:
        """(T,) float32 0/1 per-frame success labels: stored, else 1 on the last frame of a success."""
        if self.success is not None:
            return self.success
        labels = np.zeros(self.num_frames, dtype=np.float32)
        if self.quality == "success":
            labels[-1] = 1.0
        return labels

    def meta(self) -> dict[str, Any]:
        """The JSON-serialisable metadata written to ``meta.json``."""
        return {
            "format": FORMAT,
            "task": self.task,
            "task_id": self.task_id,
            "quality": self.quality,
            "num_frames": self.num_frames,
            "progress": None if self.progress is None else [round(float(p), 6) for p in self.progress],
            "success": None if self.success is None else [int(s > 0.5) for s in self.success],
            "episode_id": self.episode_id,
            "source": self.source,
            "extra": self.extra,
        }


def write_trajectory(traj: Trajectory, root: str | os.PathLike, frames_format: str = "npz") -> Path:
    """Write ``traj`` to ``root/<episode_id>/`` (``frames_format``: npz, npy or mp4) and return the folder."""
    if frames_format not in ("npz", "npy", "mp4"):
        raise ValueError(f"frames_format must be 'npz', 'npy' or 'mp4', got {frames_format!r}")
    if not traj.episode_id:
        raise ValueError("traj.episode_id must be set to name its folder, got ''")
    folder = Path(root) / traj.episode_id
    folder.mkdir(parents=True, exist_ok=True)
    for name in _FRAME_FILES:  # never leave two frame files that disagree
        (folder / name).unlink(missing_ok=True)
    if frames_format == "npz":
        np.savez_compressed(folder / "frames.npz", frames=traj.frames)
    elif frames_format == "npy":
        np.save(folder / "frames.npy", traj.frames)
    else:
        _write_mp4(folder / "frames.mp4", traj.frames)
    tmp = folder / "meta.json.tmp"
    tmp.write_text(json.dumps(traj.meta(), indent=1))
    tmp.replace(folder / "meta.json")
    return folder


def _write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> None:
    import cv2

    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV could not open an mp4 writer for {path}")
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    finally:
        writer.release()


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Read frames from .npz (key ``frames``), .npy or any OpenCV-readable video as (T, H, W, 3) uint8 RGB."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no frames file at {path}")
    if path.suffix == ".npz":
        with np.load(path) as z:
            if "frames" not in z:
                raise ValueError(f"{path} must hold an array named 'frames', has {sorted(z.files)}")
            frames = z["frames"]
    elif path.suffix == ".npy":
        frames = np.load(path)
    else:
        import cv2

        cap = cv2.VideoCapture(str(path))
        out = []
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                out.append(frame[:, :, ::-1])
        finally:
            cap.release()
        if not out:
            raise ValueError(f"OpenCV read no frames from {path}")
        frames = np.stack(out)
    return validate_frames(np.ascontiguousarray(frames), name=str(path))


def _read_meta(folder: Path) -> dict[str, Any]:
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{folder} is not a trajectory folder: no meta.json")
    meta = json.loads(meta_path.read_text())
    if meta.get("format", FORMAT) != FORMAT:
        raise ValueError(f"{meta_path}: unknown format {meta.get('format')!r}, expected {FORMAT!r}")
    for key in ("task", "quality"):
        if key not in meta:
            raise ValueError(f"{meta_path} must have a {key!r} field, has {sorted(meta)}")
    return meta


def _frames_file(folder: Path) -> Path:
    for name in _FRAME_FILES:
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder} has no frames file: expected one of {_FRAME_FILES}")


def read_trajectory(folder: str | os.PathLike) -> Trajectory:
    """Read the trajectory stored in ``folder`` (see the module docstring for the layout)."""
    folder = Path(folder)
    meta = _read_meta(folder)
    frames = read_video(_frames_file(folder))
    if meta.get("num_frames") not in (None, len(frames)):
        raise ValueError(f"{folder}: meta.json says {meta['num_frames']} frames, frames file has {len(frames)}")
    return Trajectory(
        frames=frames,
        task=meta["task"],
        quality=meta["quality"],
        progress=meta.get("progress"),
        success=meta.get("success"),
        task_id=meta.get("task_id") or meta["task"],
        episode_id=meta.get("episode_id") or folder.name,
        source=meta.get("source", ""),
        extra=meta.get("extra") or {},
    )


class TrajectoryDataset(Sequence):
    """All trajectory folders directly under ``root``, sorted by name; frames are read on access.

    Metadata (task, quality, labels) is read once up front so samplers can group trajectories
    without touching frames; ``cache=True`` keeps frames in RAM after the first read.

    >>> ds = TrajectoryDataset("outputs/demo_model/data/train")  # doctest: +SKIP
    >>> ds[0].task, ds.qualities()[:3]  # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike, cache: bool = True) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"trajectory dataset root {self.root} is not a directory")
        self.folders = sorted(p.parent for p in self.root.glob("*/meta.json"))
        if not self.folders:
            raise ValueError(f"{self.root} holds no trajectory folders (expected <root>/<episode>/meta.json)")
        self.metas = [_read_meta(f) for f in self.folders]
        self.cache = cache
        self._cache: dict[int, Trajectory] = {}

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, i: int) -> Trajectory:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(f"trajectory index {i} out of range for {len(self)} trajectories")
        i %= len(self)
        if i in self._cache:
            return self._cache[i]
        traj = read_trajectory(self.folders[i])
        if self.cache:
            self._cache[i] = traj
        return traj

    def __iter__(self) -> Iterator[Trajectory]:
        return (self[i] for i in range(len(self)))

    def qualities(self) -> list[str]:
        """Quality label of every trajectory, in index order."""
        return [m["quality"] for m in self.metas]

    def tasks(self) -> list[str]:
        """Instruction of every trajectory, in index order."""
        return [m["task"] for m in self.metas]

    def task_ids(self) -> list[str]:
        """Task id of every trajectory, in index order."""
        return [m.get("task_id") or m["task"] for m in self.metas]


def load_dataset(source: str | os.PathLike, **kwargs: Any) -> Sequence[Trajectory]:
    """Open trajectory data: a folder of trajectory folders, or a LeRobot v3 dataset on disk.

    A LeRobot dataset (a folder with ``meta/info.json``) is read with pyarrow (video cameras need ``lerobot``); see
    :func:`rlrm.train.lerobot_data.read_lerobot_dataset` for its keyword arguments.
    """
    path = Path(source)
    if (path / "meta" / "info.json").exists():
        from rlrm.train.lerobot_data import read_lerobot_dataset

        return read_lerobot_dataset(path, **kwargs)
    return TrajectoryDataset(path, **kwargs)
