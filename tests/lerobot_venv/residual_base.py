"""Run inside the LeRobot venv: a LeRobot ACT policy as the frozen base of rlrm's ResidualAction on a real
gymnasium env (Pendulum-v1, its observation under two dict keys), built by make_base_policy(kind="lerobot") as run_rl.py does.
Prints JSON comparing every base action with LeRobot's own pipeline, over episodes (reset per episode).

Usage: python residual_base.py OUT_DIR
"""

import json
import sys

import gymnasium as gym
import numpy as np
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.factory import get_policy_class, make_pre_post_processors

from rlrm.rl.residual import ResidualAction, make_base_policy

torch.set_num_threads(1)
out = sys.argv[1]
ENV_STATE, STATE = "observation.environment_state", "observation.state"
cfg = ACTConfig(input_features={ENV_STATE: PolicyFeature(FeatureType.ENV, (3,)),
                                STATE: PolicyFeature(FeatureType.STATE, (3,))},
                output_features={"action": PolicyFeature(FeatureType.ACTION, (1,))},
                chunk_size=6, n_action_steps=5, dim_model=32, dim_feedforward=64, n_heads=2, n_encoder_layers=1,
                n_decoder_layers=1, use_vae=False, pretrained_backbone_weights=None, device="cpu")
stats = {ENV_STATE: {"mean": torch.tensor([0.5, -0.2, 1.0]), "std": torch.tensor([0.7, 0.7, 3.0])},
         STATE: {"mean": torch.tensor([-0.5, 0.2, 0.0]), "std": torch.tensor([0.3, 0.5, 2.0])},
         "action": {"mean": torch.tensor([0.3]), "std": torch.tensor([0.6])}}
torch.manual_seed(0)
policy = get_policy_class("act")(cfg)
pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
for part in (policy, pre, post):
    part.save_pretrained(out)

box = gym.make("Pendulum-v1", max_episode_steps=13)
env = gym.wrappers.TransformObservation(
    box, lambda o: {"state": o, "environment_state": o},
    gym.spaces.Dict({"state": box.observation_space, "environment_state": box.observation_space}))
wrapped = ResidualAction(env, make_base_policy({"kind": "lerobot", "path": out}, env.action_space), scale=0.3)
ref_policy = get_policy_class("act").from_pretrained(out)
ref_pre, ref_post = make_pre_post_processors(ref_policy.config, pretrained_path=out)


def reference(obs):
    """LeRobot's own action for a raw observation."""
    batch = {ENV_STATE: torch.from_numpy(obs["environment_state"].astype(np.float32))[None],
             STATE: torch.from_numpy(obs["state"].astype(np.float32))[None], "task": "", "robot_type": ""}
    with torch.inference_mode():
        return ref_post(ref_policy.select_action(ref_pre(batch))).squeeze(0).numpy()


gaps, steps, episodes = [], 0, 0
rng = np.random.default_rng(0)
for seed in range(3):
    for part in (ref_policy, ref_pre, ref_post):
        part.reset()
    obs, _ = wrapped.reset(seed=seed)
    expected = np.clip(reference(obs), -2, 2)
    gaps.append(float(np.abs(obs["base_action"] - expected).max()))
    done = False
    while not done:
        obs, _, terminated, truncated, info = wrapped.step(rng.uniform(-1, 1, 1).astype(np.float32))
        steps += 1
        done = terminated or truncated
        expected = np.clip(reference(obs), -2, 2)
        gaps.append(float(np.abs(obs["base_action"] - expected).max()))
    episodes += 1
shape_error = ""
try:
    make_base_policy({"kind": "lerobot", "path": out}, gym.spaces.Box(-1, 1, (2,)))
except ValueError as e:
    shape_error = str(e)
print(json.dumps({"max_abs_diff": max(gaps), "steps": steps, "episodes": episodes, "shape_error": shape_error}))
