"""Evaluation episodes of a trained policy, judged by the env's own success signal.

* :func:`evaluate_policy` - run deterministic episodes and report the env's success rate
  (``info["is_success"]`` at the episode's last step, the Fetch / LIBERO convention) and the
  return of the training reward, separately from the reward model's own success decision.
"""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["evaluate_policy"]

log = logging.getLogger(__name__)


def evaluate_policy(model: Any, env: gym.Env, episodes: int, seed: int = 10_000,
                    deterministic: bool = True, obs_transform: Any = None,
                    keep_final_frames: bool = False) -> dict[str, Any]:
    """Run ``episodes`` episodes of ``model.predict`` on ``env`` (a single, non-vector env).

    Returns a dict with ``success_rate`` (fraction of episodes whose last step has
    ``info["is_success"]`` true; NaN if the env has no such signal), ``mean_return`` (of the
    env's returned reward), ``mean_length``, ``model_success_rate`` (the Robometer detector
    fired, when the env is reward-wrapped) and ``episodes`` (per-episode records).
    Episode i is reset with ``seed + i``, so runs with the same seed see the same goals.
    ``obs_transform`` maps each observation before ``predict`` (e.g. ``VecNormalize.normalize_obs``
    with frozen training statistics). ``keep_final_frames``: also return ``final_frames``, the last frame
    the reward wrapper saw in each episode ((episodes, H, W, 3) uint8; for reward-hacking audits).
    """
    if episodes < 0:
        raise ValueError(f"episodes must be >= 0, got {episodes}")
    records: list[dict[str, Any]] = []
    final_frames: list[np.ndarray] = []
    buffer_owner = env  # the reward wrapper, which keeps the episode's frames (wrappers do not forward attributes)
    while buffer_owner is not None and getattr(buffer_owner, "frame_buffer", None) is None:
        buffer_owner = getattr(buffer_owner, "env", None)
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        total, length, done = 0.0, 0, False
        while not done:
            action, _ = model.predict(obs if obs_transform is None else obs_transform(obs), deterministic=deterministic)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated
        rlrm = info.get("rlrm") or {}
        if keep_final_frames and buffer_owner is not None and len(buffer_owner.frame_buffer):
            final_frames.append(buffer_owner.frame_buffer.last.copy())
        records.append({
            "return": total,
            "length": length,
            "is_success": bool(info["is_success"]) if "is_success" in info else None,
            "model_success": bool(rlrm["success"]) if "success" in rlrm else None,
            "final_progress": float(rlrm["progress"]) if "progress" in rlrm else None,
            "final_success_prob": float(rlrm["success_prob"]) if "success_prob" in rlrm else None,
        })
        log.info("eval episode %d: return %.3f, length %d, env success %s", i, total, length,
                 records[-1]["is_success"])
    env_success = [r["is_success"] for r in records if r["is_success"] is not None]
    model_success = [r["model_success"] for r in records if r["model_success"] is not None]
    return {
        "success_rate": float(np.mean(env_success)) if env_success else float("nan"),
        "mean_return": float(np.mean([r["return"] for r in records])) if records else float("nan"),
        "mean_length": float(np.mean([r["length"] for r in records])) if records else float("nan"),
        "model_success_rate": float(np.mean(model_success)) if model_success else None,
        "episodes": records,
        **({"final_frames": np.stack(final_frames) if final_frames else None} if keep_final_frames else {}),
    }
