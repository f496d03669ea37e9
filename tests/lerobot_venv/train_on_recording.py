"""Run inside the LeRobot venv: `lerobot-train` an ACT policy on a dataset rlrm recorded, then act with the
checkpoint through rlrm's LeRobotPolicy (rlrm-style observations) and through LeRobot's own pipeline (dataset
items); print JSON with the gap.

Usage: python train_on_recording.py DATASET_DIR OUT_DIR
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.factory import get_policy_class, make_pre_post_processors

from rlrm.bridges.lerobot_policy import LeRobotPolicy

torch.set_num_threads(1)
dataset, out = Path(sys.argv[1]), Path(sys.argv[2])
cmd = [str(Path(sys.executable).parent / "lerobot-train"), f"--dataset.repo_id=local/{dataset.name}",
       f"--dataset.root={dataset}", "--policy.type=act", "--policy.device=cpu", "--policy.push_to_hub=false",
       "--policy.pretrained_backbone_weights=null", "--policy.dim_model=64", "--policy.dim_feedforward=128",
       "--policy.n_encoder_layers=1", "--policy.n_decoder_layers=1", "--policy.chunk_size=10",
       "--policy.n_action_steps=5", "--policy.use_vae=false", "--batch_size=4", "--steps=2", "--save_freq=2",
       "--log_freq=1", "--eval_freq=0", "--num_workers=0", "--wandb.enable=false", f"--output_dir={out}"]
proc = subprocess.run(cmd, capture_output=True, text=True)
if proc.returncode != 0:
    sys.stderr.write(proc.stderr[-5000:])
    raise SystemExit(f"lerobot-train failed with exit {proc.returncode}")
checkpoint = out / "checkpoints" / "last" / "pretrained_model"

ds = LeRobotDataset(f"local/{dataset.name}", root=dataset)
first = ds.meta.episodes[0]
items = [ds[i] for i in range(first["dataset_from_index"], first["dataset_to_index"])]  # episode 0, in order
ours = LeRobotPolicy(checkpoint)
ref_policy = get_policy_class("act").from_pretrained(checkpoint)
ref_pre, ref_post = make_pre_post_processors(ref_policy.config, pretrained_path=checkpoint)
gaps, inputs = [], sorted(ref_policy.config.input_features)
for item in items:
    # what rlrm's env gives: camera images (H, W, 3) uint8 by camera name, the Fetch dict keys
    obs = {k.removeprefix("observation.images."): (item[k].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
           for k in ds.meta.camera_keys}
    obs["observation"] = item["observation.state"].numpy()
    obs["achieved_goal"] = item["observation.achieved_goal"].numpy()
    obs["desired_goal"] = item["observation.desired_goal"].numpy()
    batch = {k: item[k][None] for k in inputs}
    batch.update(task="", robot_type="")
    with torch.inference_mode():
        ref = ref_post(ref_policy.select_action(ref_pre(batch))).squeeze(0).numpy()
    gaps.append(float(np.abs(ours.act(obs) - ref).max()))
print(json.dumps({"max_abs_diff": max(gaps), "n": len(gaps), "inputs": inputs,
                  "checkpoint_files": sorted(p.name for p in checkpoint.iterdir())}))
