"""Run inside the LeRobot venv: save an ACT or diffusion policy with LeRobot, act through LeRobotPolicy and
through LeRobot's own pipeline (preprocessor -> select_action -> postprocessor), print JSON of the gaps.

Usage: python policy_parity.py {act|diffusion} OUT_DIR [N_OBS]
The policy has random weights and non-trivial dataset statistics; the env-style observations are
(H, W, 3) uint8 images and a float state under rlrm-style keys ("front", "state").
"""

import json
import sys

import numpy as np
import torch
from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
from lerobot.policies.factory import get_policy_class, make_pre_post_processors

from rlrm.bridges.lerobot_policy import LeRobotPolicy

torch.set_num_threads(1)
kind, out = sys.argv[1], sys.argv[2]
n_obs = int(sys.argv[3]) if len(sys.argv) > 3 else 50
H, W, S, A = 64, 64, 6, 4
IMG, STATE = "observation.images.front", "observation.state"

inputs = {IMG: PolicyFeature(FeatureType.VISUAL, (3, H, W)), STATE: PolicyFeature(FeatureType.STATE, (S,))}
outputs = {"action": PolicyFeature(FeatureType.ACTION, (A,))}
if kind == "act":
    from lerobot.policies.act.configuration_act import ACTConfig

    cfg = ACTConfig(input_features=inputs, output_features=outputs, chunk_size=10, n_action_steps=8,
                    dim_model=64, dim_feedforward=128, n_heads=4, n_encoder_layers=1, n_decoder_layers=1,
                    use_vae=False, pretrained_backbone_weights=None, device="cpu")
elif kind == "diffusion":
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

    cfg = DiffusionConfig(input_features=inputs, output_features=outputs, n_obs_steps=2, horizon=16,
                          n_action_steps=8, down_dims=(32, 64), kernel_size=3, n_groups=8,
                          diffusion_step_embed_dim=32, crop_shape=(56, 56), pretrained_backbone_weights=None,
                          use_group_norm=True, spatial_softmax_num_keypoints=8, num_inference_steps=4,
                          device="cpu")
else:
    raise SystemExit(f"unknown policy kind {kind!r}; expected 'act' or 'diffusion'")

# non-trivial statistics: far from zero mean / unit std, so a missed normalisation shows
rng = np.random.default_rng(0)
stats = {
    STATE: {"mean": rng.normal(2.0, 1.0, S), "std": rng.uniform(0.2, 3.0, S),
            "min": np.full(S, -5.0), "max": np.full(S, 9.0)},
    IMG: {"mean": rng.uniform(0.3, 0.6, (3, 1, 1)), "std": rng.uniform(0.1, 0.3, (3, 1, 1)),
          "min": np.zeros((3, 1, 1)), "max": np.ones((3, 1, 1))},
    "action": {"mean": rng.normal(3.0, 0.5, A), "std": rng.uniform(0.5, 2.0, A),
               "min": np.full(A, -1.0), "max": np.full(A, 7.0)},
}
stats = {k: {s: torch.tensor(v, dtype=torch.float32) for s, v in d.items()} for k, d in stats.items()}
if kind == "diffusion":  # diffusion normalises state and action by MIN_MAX: make those ranges matter too
    cfg.normalization_mapping = {"VISUAL": NormalizationMode.MEAN_STD, "STATE": NormalizationMode.MIN_MAX,
                                 "ACTION": NormalizationMode.MIN_MAX}

torch.manual_seed(0)
policy = get_policy_class(cfg.type)(cfg)
pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
policy.save_pretrained(out)
pre.save_pretrained(out)
post.save_pretrained(out)

# LeRobot's own inference, from the saved folder
ref_policy = get_policy_class(cfg.type).from_pretrained(out)
ref_policy.eval()
ref_pre, ref_post = make_pre_post_processors(ref_policy.config, pretrained_path=out)
ours = LeRobotPolicy(out, device="cpu", policy_type=kind)

obs_rng = np.random.default_rng(1)
observations = [{"front": obs_rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                 "state": obs_rng.normal(2.0, 2.0, S).astype(np.float32),
                 "achieved_goal": np.zeros(3)} for _ in range(n_obs)]
episode_starts = {0, 29}  # a new episode mid-chunk (29 is not a multiple of n_action_steps)

ref_actions, our_actions, raw_actions = [], [], []
for i, obs in enumerate(observations):
    if i in episode_starts:
        ref_policy.reset()
        ref_pre.reset()
        ref_post.reset()
        ours.reset()
    batch = {IMG: torch.from_numpy(obs["front"]).float().div(255).permute(2, 0, 1).unsqueeze(0),
             STATE: torch.from_numpy(obs["state"]).unsqueeze(0), "task": "", "robot_type": ""}
    seed = 1000 + i
    torch.manual_seed(seed)
    with torch.inference_mode():
        ref = ref_post(ref_policy.select_action(ref_pre(batch)))
    torch.manual_seed(seed)
    our_actions.append(ours.act(obs).tolist())
    ref_actions.append(ref.squeeze(0).numpy().tolist())

ref_a, our_a = np.array(ref_actions), np.array(our_actions)
# what the pre-0.4 adapter did: select_action on raw observations, no processors
raw_policy = get_policy_class(cfg.type).from_pretrained(out)
raw_policy.eval()
for i, obs in enumerate(observations[:8]):
    torch.manual_seed(1000 + i)
    with torch.inference_mode():
        raw = raw_policy.select_action({IMG: torch.from_numpy(obs["front"]).float().div(255).permute(2, 0, 1)[None],
                                        STATE: torch.from_numpy(obs["state"])[None]})
    raw_actions.append(raw.squeeze(0).numpy().tolist())

errors = {}
for name, bad in {"wrong_image": {"front": np.zeros((32, 32, 3), np.uint8), "state": np.zeros(S, np.float32)},
                  "wrong_state": {"front": observations[0]["front"], "state": np.zeros(S + 1, np.float32)}}.items():
    try:
        ours.act(bad)
    except ValueError as e:
        errors[name] = str(e)
try:
    LeRobotPolicy(out, device="cpu").act({"state": observations[0]["state"]})
except ValueError as e:
    errors["missing"] = str(e)

print(json.dumps({
    "errors": errors,
    "kind": kind,
    "n": len(our_actions),
    "n_action_steps": cfg.n_action_steps,
    "max_abs_diff": float(np.abs(ref_a - our_a).max()),
    "unprocessed_gap": float(np.abs(np.array(raw_actions) - ref_a[:8]).max()),
    "distinct_actions": int(len({tuple(np.round(a, 6)) for a in our_actions})),
    "action_shape": list(our_a.shape),
}))
