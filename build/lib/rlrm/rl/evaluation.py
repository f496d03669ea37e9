"""Evaluation episodes of a trained policy, judged by the env's own success signal.

* :func:`evaluate_policy` - run deterministic episodes and report the env's success rate
  (``info["is_success"]`` at the episode's last step, the Fetch / LIBERO convention) and the
  return of the training reward, separately from the reward model's own success decision and a
  person's labels.
* :func:`evaluation_summary` - the ``eval_*`` fields of ``summary.json`` from those metrics.
* :func:`evaluation_episodes` - how many episodes the final evaluation runs: ``eval_episodes``, but on a
  robot no more episodes than the training itself took (a person may choose at the terminal).

Three success verdicts, never mixed: the env's ground truth (``is_success``; None on a robot, whose
``info["is_success"]`` is only a person's key press), the model's (``model_success_detected``: the
success detector fired at some step; it latches for the rest of the episode, so the final
probability ``final_success_prob`` may have fallen since), and a person's (``human_label``).
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["evaluate_policy", "evaluation_summary", "evaluation_episodes"]

log = logging.getLogger(__name__)


def evaluate_policy(model: Any, env: gym.Env, episodes: int, seed: int = 10_000,
                    deterministic: bool = True, obs_transform: Any = None,
                    keep_final_frames: bool = False) -> dict[str, Any]:
    """Run ``episodes`` episodes of ``model.predict`` on ``env`` (a single, non-vector env).

    Returns a dict with ``success_rate`` (fraction of episodes whose last step has
    ``info["is_success"]`` true; None if the env has no such signal or, like a robot, declares
    ``ground_truth_success = False``), ``mean_return`` (of the env's returned reward), ``mean_length``,
    ``model_success_detected_rate`` (the Robometer detector fired during the episode; it latches),
    ``mean_final_success_prob`` (the model's success probability at the last step),
    ``person_success_rate`` / ``person_labelled`` (a person's success/failure keys, ``info["human_label"]``)
    and ``episodes`` (per-episode records with the same names; None where there is no value).
    Episode i is reset with ``seed + i``, so runs with the same seed see the same goals.
    ``obs_transform`` maps each observation before ``predict`` (e.g. ``VecNormalize.normalize_obs``
    with frozen training statistics). ``keep_final_frames``: also return ``final_frames``, the last frame
    the reward wrapper saw in each episode ((episodes, H, W, 3) uint8; for reward-hacking audits).
    """
    if episodes < 0:
        raise ValueError(f"episodes must be >= 0, got {episodes}")
    ground_truth = bool(getattr(env.unwrapped, "ground_truth_success", True))
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
            "is_success": bool(info["is_success"]) if ground_truth and "is_success" in info else None,
            "human_label": info.get("human_label"),
            "model_success_detected": bool(rlrm["success"]) if "success" in rlrm else None,
            "final_progress": float(rlrm["progress"]) if "progress" in rlrm else None,
            "final_success_prob": float(rlrm["success_prob"]) if "success_prob" in rlrm else None,
        })
        log.info("eval episode %d: return %.3f, length %d, env success %s, model detected success %s (final "
                 "probability %s), person %s", i, total, length, records[-1]["is_success"],
                 records[-1]["model_success_detected"], _fmt(records[-1]["final_success_prob"]),
                 records[-1]["human_label"])
    labels = [r["human_label"] == "success" for r in records if r["human_label"] in ("success", "failure")]
    return {
        "success_rate": _mean(r["is_success"] for r in records),
        "mean_return": _mean(r["return"] for r in records),
        "mean_length": _mean(r["length"] for r in records),
        "model_success_detected_rate": _mean(r["model_success_detected"] for r in records),
        "mean_final_success_prob": _mean(r["final_success_prob"] for r in records),
        "person_success_rate": _mean(labels),
        "person_labelled": len(labels),
        "episodes": records,
        **({"final_frames": np.stack(final_frames) if final_frames else None} if keep_final_frames else {}),
    }


def _mean(values: Any) -> float | None:
    """Mean of the values that are not None; None when there are none (JSON null, not NaN)."""
    present = [float(v) for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def evaluation_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The ``eval_*`` fields of ``summary.json`` from :func:`evaluate_policy`'s metrics (None: no such signal).

    ``eval_success_rate`` is the env's ground truth only (null on a robot);
    ``eval_model_success_detected_rate`` the share of episodes in which the success detector fired
    (latched: not the final verdict); ``eval_mean_final_success_prob`` the model's mean success
    probability at the episodes' last step; ``eval_person_success_rate`` the share of labelled episodes a
    person marked successful, over ``eval_person_labelled`` labelled ones.
    """
    return {
        "eval_success_rate": metrics["success_rate"],
        "eval_return": metrics["mean_return"],
        "eval_model_success_detected_rate": metrics["model_success_detected_rate"],
        "eval_mean_final_success_prob": metrics["mean_final_success_prob"],
        "eval_person_success_rate": metrics["person_success_rate"],
        "eval_person_labelled": metrics["person_labelled"],
        "eval_episodes": metrics["episodes"],
    }


def evaluation_episodes(cfg: dict[str, Any], trained_steps: int, ask: Any = None) -> int:
    """Episodes of the final evaluation: ``cfg["eval_episodes"]``, scaled to the run on a robot.

    In simulation an evaluation episode costs milliseconds. On a robot it costs
    ``max_episode_steps / fps`` seconds of a person's time, so the evaluation runs at most as many
    episodes as the training took (``ceil(trained_steps / max_episode_steps)``, at least 1): a
    40-step run evaluates 1 episode of 200 steps, not 20 (5 minutes at 15 Hz). On a real robot with
    a terminal, the person is asked and may type another number. ``ask`` replaces ``input`` (tests).
    """
    planned = int(cfg["eval_episodes"])
    robot = cfg.get("robot")
    if not robot or planned == 0:
        return planned
    env = robot.get("env") or {}
    steps = int(env.get("max_episode_steps") or 200)
    fps = float(env.get("fps") or 10)
    scaled = min(planned, max(1, math.ceil(max(trained_steps, 1) / steps)))
    if scaled < planned:
        log.warning("evaluation on the robot: %d episode(s) of up to %d steps (about %.0f s at %g Hz) instead of "
                    "eval_episodes=%d, as the run trained only %d steps", scaled, steps, scaled * steps / fps, fps,
                    planned, trained_steps)
    interactive = ask is not None or (not cfg.get("robot_sim") and sys.stdin is not None and sys.stdin.isatty())
    if not interactive:
        return scaled
    ask = ask or input
    answer = str(ask(f"Evaluate the policy on the robot: how many episodes of up to {steps} steps (about "
                     f"{steps / fps:.0f} s each)? [{scaled}; 0 skips] ")).strip()
    if not answer:
        return scaled
    if not answer.isdigit():
        log.warning("evaluation episodes: %r is not a number; running %d", answer, scaled)
        return scaled
    return int(answer)
