"""What every training run's folder holds, shared by single-process and distributed runs (:mod:`rlrm.run`).

* :class:`RunStart` - the checked start of a run: config, folder, resume point, clock.
* :class:`RunOutcome` - what a finished run hands to the summary.
* :func:`runners` - ``distributed.runners`` of a run config (0: one process).
* :func:`learning_curve` - the run's :class:`~rlrm.rl.callbacks.LearningCurve` (None when off or on a robot).
* :func:`keep_final_frames` / :func:`video_episodes` - what evaluation keeps for the run's reward kind.
* :func:`save_final_frames` - ``eval_final_frames.npz``.
* File names (:data:`SUMMARY_FILE`, :data:`LEARNING_CURVE_FILE`, :data:`FINAL_FRAMES_FILE`) and the seed
  offsets of evaluation and learning-curve episodes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlrm.rl.callbacks import LearningCurve
from rlrm.rl.checkpoints import ResumePoint

__all__ = ["RunStart", "RunOutcome", "runners", "learning_curve", "keep_final_frames", "video_episodes",
           "save_final_frames", "SUMMARY_FILE", "LEARNING_CURVE_FILE", "FINAL_FRAMES_FILE", "EVAL_SEED_OFFSET",
           "CURVE_SEED_OFFSET"]

SUMMARY_FILE = "summary.json"
LEARNING_CURVE_FILE = "learning_curve.json"
FINAL_FRAMES_FILE = "eval_final_frames.npz"
EVAL_SEED_OFFSET = 10_000
"""Evaluation episode i resets with ``seed + EVAL_SEED_OFFSET + i``."""
CURVE_SEED_OFFSET = 20_000
"""Learning-curve episode i resets with ``seed + CURVE_SEED_OFFSET + i`` (the same goals at every point)."""


@dataclass
class RunStart:
    """The checked start of a run.

    Args:
        cfg: the resolved run config (plain dict).
        run_dir: the run folder (exists; ``config.yaml`` written).
        resume: the checkpoint of an earlier run this one continues, or None.
        t0: ``time.perf_counter()`` when the run started.
    """

    cfg: dict[str, Any]
    run_dir: Path
    resume: ResumePoint | None
    t0: float = field(default_factory=time.perf_counter)

    @property
    def distributed(self) -> bool:
        """Whether env runners and a learner on Ray run the job (``distributed.runners >= 1``)."""
        return runners(self.cfg) != 0


@dataclass
class RunOutcome:
    """What a finished run reports.

    Args:
        metrics: :func:`~rlrm.rl.evaluation.evaluate_policy`'s result on the final policy (``final_frames``
            included when kept).
        env_steps / trained_steps: transitions the policy has seen in total / in this run.
        train_s: seconds of collection and learning (no evaluation, no final checkpoint).
        videos: reward videos written during evaluation.
        reward_model: provenance of the served reward model (None for the env's own reward).
        recorded: the LeRobot dataset the run's episodes went to (``record.dataset``; None without one).
        extra: keys only this kind of run has (a distributed run's runners, policy lag, ...).
        interrupted_at: the env step a Ctrl-C stopped training at (no evaluation ran); None if it finished.
    """

    metrics: dict[str, Any]
    env_steps: int
    trained_steps: int
    train_s: float
    videos: list[str] = field(default_factory=list)
    reward_model: dict[str, Any] | None = None
    recorded: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    interrupted_at: int | None = None


def runners(cfg: dict[str, Any]) -> int:
    """``distributed.runners`` of a resolved run config (0: a single-process run)."""
    return (cfg.get("distributed") or {}).get("runners", 0)


def learning_curve(cfg: dict[str, Any], run_dir: Path) -> LearningCurve | None:
    """Success-vs-env-steps points on the bare sim env (with the policy's action wrapper) every ``eval_every``
    steps (never on a real robot)."""
    if not cfg.get("eval_every") or cfg.get("robot"):
        return None
    from rlrm.rl.environment import make_env, with_policy_action

    return LearningCurve(lambda: with_policy_action(make_env(cfg), cfg), int(cfg["eval_every"]), int(cfg["curve_episodes"]),
                         Path(run_dir) / LEARNING_CURVE_FILE, seed=CURVE_SEED_OFFSET + int(cfg["seed"]))


def keep_final_frames(cfg: dict[str, Any]) -> bool:
    """Whether evaluation keeps each episode's last frame (runs scored by the reward model)."""
    return cfg["reward"]["kind"] == "robometer"


def video_episodes(cfg: dict[str, Any]) -> int:
    """Evaluation episodes that get a reward video (none without the reward model)."""
    return int(cfg.get("eval_video_episodes", 0)) if cfg["reward"]["kind"] == "robometer" else 0


def save_final_frames(metrics: dict[str, Any], run_dir: Path) -> None:
    """``eval_final_frames.npz``: each evaluation episode's last frame with the env's and the model's verdicts.

    ``success_prob`` is the model's final success probability; ``model_success_detected`` whether its
    detector fired at any step of the episode (it latches).
    """
    frames = metrics.pop("final_frames", None)
    if frames is None:
        return
    episodes = metrics["episodes"]
    np.savez_compressed(
        run_dir / FINAL_FRAMES_FILE, frames=frames,
        is_success=np.array([bool(e["is_success"]) for e in episodes]),
        success_prob=np.array([e["final_success_prob"] for e in episodes], dtype=np.float32),
        model_success_detected=np.array([bool(e["model_success_detected"]) for e in episodes]),
    )
