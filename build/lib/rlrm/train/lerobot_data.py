"""LeRobot v3 datasets on local disk as rlrm trajectories.

* :func:`read_lerobot_dataset` - every episode of a local LeRobot dataset as a
  :class:`~rlrm.train.data.Trajectory` (one camera, the episode's task text).

Datasets with image features (LeRobot's ``use_videos=False`` layout, and every dataset rlrm records with
``record.dataset=DIR``) are read with pyarrow alone (:func:`rlrm.bridges.lerobot_dataset.read_lerobot_episodes`);
datasets that store cameras as video need ``lerobot`` (imported lazily; without it an ImportError names the
extra). LeRobot datasets carry no progress: episodes get the linear ramp Robometer uses by default. Their
quality is an episode's recorded human label (``label`` 1 -> success, 0 -> failure) where there is one,
else ``quality`` (demonstrations: ``"success"``). Tested against LeRobot 0.4.4 in CI
(``tests/test_lerobot_dataset.py``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from rlrm.train.data import Trajectory

__all__ = ["read_lerobot_dataset"]

log = logging.getLogger(__name__)


def _to_uint8_hwc(image) -> np.ndarray:
    """A LeRobot image (C, H, W) float in [0, 1] (torch or numpy) -> (H, W, 3) uint8."""
    arr = image.numpy() if hasattr(image, "numpy") else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


def _read_image_dataset(root: Path, info: dict, camera: str | None, quality: str, episodes: list[int] | None,
                        stride: int) -> list[Trajectory]:
    """:func:`read_lerobot_dataset` for datasets whose cameras are image features (pyarrow only)."""
    from rlrm.bridges.lerobot_dataset import read_lerobot_episodes

    cameras = [k for k, f in info["features"].items() if f["dtype"] == "image"]
    if not cameras:
        raise ValueError(f"LeRobot dataset at {root} has no camera features")
    camera = camera or cameras[0]
    if camera not in cameras:
        raise ValueError(f"camera {camera!r} not in the dataset; expected one of {cameras}")
    columns = [camera] + (["label"] if "label" in info["features"] else [])
    out = []
    for ep in read_lerobot_episodes(root, episodes=episodes, columns=columns):
        frames = ep["features"][camera][::stride]
        if len(frames) == 0:
            continue
        label = int(ep["features"]["label"][0]) if "label" in ep["features"] else -1
        ep_quality = {1: "success", 0: "failure"}.get(label, quality)
        out.append(Trajectory(frames, ep["task"] or "do the task", ep_quality,
                              episode_id=f"episode_{ep['episode_index']:06d}", source=str(root),
                              extra={"camera": camera, "stride": stride, "label": label}))
    log.info("read %d episodes from LeRobot dataset %s (camera %s)", len(out), root, camera)
    return out


def read_lerobot_dataset(
    root: str | Path,
    camera: str | None = None,
    quality: str = "success",
    episodes: list[int] | None = None,
    stride: int = 1,
    repo_id: str | None = None,
) -> list[Trajectory]:
    """Read episodes of the LeRobot dataset stored at ``root`` (a folder with ``meta/info.json``).

    Args:
        camera: image feature to use (e.g. ``"observation.images.front"``); default the first camera.
        quality: quality label of episodes without a recorded human label.
        episodes: episode indices to read (default all).
        stride: keep every ``stride``-th frame (long teleop episodes at 30 fps need few frames).
        repo_id: the dataset's id (only a name here; nothing is downloaded), default ``local/<folder>``.
    """
    root = Path(root)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    info = json.loads((root / "meta" / "info.json").read_text())
    if not any(f["dtype"] == "video" for f in info["features"].values()):
        return _read_image_dataset(root, info, camera, quality, episodes, stride)
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError as e:
        raise ImportError(
            f"{root} stores its cameras as video, which needs the lerobot package to decode: "
            "pip install 'rlrm[lerobot]'; or convert the episodes with rlrm.train.data.write_trajectory"
        ) from e
    ds = LeRobotDataset(repo_id or f"local/{root.name}", root=root)
    cameras = list(ds.meta.camera_keys)
    if not cameras:
        raise ValueError(f"LeRobot dataset at {root} has no camera features")
    camera = camera or cameras[0]
    if camera not in cameras:
        raise ValueError(f"camera {camera!r} not in the dataset; expected one of {cameras}")
    starts = ds.meta.episodes["dataset_from_index"]
    ends = ds.meta.episodes["dataset_to_index"]
    wanted = range(len(starts)) if episodes is None else episodes
    out = []
    for ep in wanted:
        items = [ds[i] for i in range(int(starts[ep]), int(ends[ep]), stride)]
        if not items:
            continue
        frames = np.stack([_to_uint8_hwc(item[camera]) for item in items])
        task = str(items[0].get("task") or "do the task")
        out.append(
            Trajectory(frames, task, quality, episode_id=f"episode_{ep:06d}", source=str(root),
                       extra={"camera": camera, "stride": stride})
        )
    log.info("read %d episodes from LeRobot dataset %s (camera %s)", len(out), root, camera)
    return out
