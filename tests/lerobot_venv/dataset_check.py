"""Run inside the LeRobot venv: load a dataset with LeRobot's LeRobotDataset and print what it holds as JSON.

Usage: python dataset_check.py DATASET_DIR
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

root = Path(sys.argv[1])
ds = LeRobotDataset(f"local/{root.name}", root=root)
frames = [ds[i] for i in range(len(ds))]


def column(name):
    return [float(f[name].item()) if torch.is_tensor(f[name]) else f[name] for f in frames]


images = {k: [float(f[k].float().mean()) for f in frames] for k in ds.meta.camera_keys}
image_shapes = {k: list(frames[0][k].shape) for k in ds.meta.camera_keys}
print(json.dumps({
    "num_frames": len(ds), "num_episodes": ds.num_episodes, "fps": ds.fps,
    "camera_keys": list(ds.meta.camera_keys), "image_shapes": image_shapes, "image_means": images,
    "episode_index": column("episode_index"), "frame_index": column("frame_index"),
    "reward": column("next.reward"), "progress": [None if np.isnan(x) else x for x in column("next.progress")],
    "label": column("label"), "evaluation": column("evaluation"), "intervention": column("intervention"),
    "success": column("next.success"), "done": column("next.done"), "task": [f["task"] for f in frames],
    "action": [f["action"].tolist() for f in frames],
    "state_shape": list(frames[0]["observation.state"].shape) if "observation.state" in frames[0] else None,
    "stats_keys": sorted(ds.meta.stats or {}),
}))
