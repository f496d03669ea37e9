"""Train a policy with Robometer rewards: make env -> wrap with reward -> make algorithm -> learn -> evaluate.

    python run_rl.py                                   # FetchReach, demo model in a local worker, SAC
    python run_rl.py algo=ppo total_steps=10000        # another algorithm / budget
    python run_rl.py reward.source=tcp://gpu:5555      # use a running worker instead of starting one
    python run_rl.py reward.mode=async                 # rewards relabelled in the replay buffer as they arrive
    python run_rl.py algo=residual_sac                 # learn a residual on a frozen base policy
    python run_rl.py reward=env_dense                  # baseline: the env's own reward
    python run_rl.py resume=outputs/run_rl/DATE/TIME   # continue a run from its last checkpoint, in a new folder
    python run_rl.py record.dataset=DIR                # every training and evaluation episode as a LeRobot dataset

Outputs in the Hydra run folder: ``config.yaml`` (resolved), ``tb/`` (TensorBoard),
``checkpoints/`` (policy + replay buffer), ``videos/`` (reward videos of evaluation
episodes) and ``summary.json``. The machinery is in ``rlrm/rl``; this file is the recipe.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.logger import configure

from rlrm.bridges.lerobot_dataset import closing_recording, open_recording, record_episodes, recording_summary
from rlrm.known_notices import silence_known_notices
from rlrm.rl.algorithms import buffer_capacity, load_algorithm, make_algorithm
from rlrm.rl.async_reward import AsyncRobometerReward
from rlrm.rl.callbacks import CheckpointCallback, LearningCurveCallback, RewardLoggingCallback
from rlrm.rl.checkpoints import load_replay_buffer, resume_point
from rlrm.rl.environment import (VECNORMALIZE_FILE, find_wrapper, make_env, resolve_env_defaults, vectorize,
                                  with_policy_action, wrap_with_reward)
from rlrm.rl.evaluation import evaluate_policy
from rlrm.rl.interventions import InterventionLoggingCallback
from rlrm.rl.learner_rate import LearnerRateCallback
from rlrm.rl.reward_source import open_reward_source, record_reward_model
from rlrm.rl.run_config import RESOLVED_CONFIG, resumed_config, validate_run_config
from rlrm.wrappers import RewardVideoRecorder

silence_known_notices()  # gymnasium-robotics' Adroit notice, PyOpenGL's accelerate line, robosuite's macros
log = logging.getLogger("run_rl")


def save_final_frames(metrics: dict[str, Any], run_dir: Path) -> None:
    """``eval_final_frames.npz``: each evaluation episode's last frame with the env's and the model's verdicts."""
    frames = metrics.pop("final_frames", None)
    if frames is None:
        return
    episodes = metrics["episodes"]
    np.savez_compressed(
        run_dir / "eval_final_frames.npz", frames=frames,
        is_success=np.array([bool(e["is_success"]) for e in episodes]),
        success_prob=np.array([e["final_success_prob"] for e in episodes], dtype=np.float32),
        model_success=np.array([bool(e["model_success"]) for e in episodes]),
    )


def curve_callback(cfg: dict[str, Any], run_dir: Path) -> list[LearningCurveCallback]:
    """Success-vs-env-steps points on the bare sim env every ``eval_every`` steps (never on a real robot)."""
    if not cfg.get("eval_every") or cfg.get("robot"):
        return []
    return [LearningCurveCallback(lambda: with_policy_action(make_env(cfg), cfg), int(cfg["eval_every"]), int(cfg["curve_episodes"]),
                                  run_dir / "learning_curve.json", seed=20_000 + cfg["seed"])]


def train(cfg: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Run one training job described by the resolved config ``cfg``; returns the summary it writes."""
    resolve_env_defaults(cfg)  # reward.model=auto, algo.base_policy.kind=env: what the task's config names
    if (cfg.get("distributed") or {}).get("runners", 0) != 0:  # env runners + a learner on Ray (docs/distributed.md)
        from rlrm.distributed.run import run_distributed

        return run_distributed(cfg, run_dir)
    validate_run_config(cfg)  # before any env, worker or model exists
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESOLVED_CONFIG).write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    torch.set_num_threads(int(cfg["torch_threads"]))
    resume = resume_point(cfg["resume"]) if cfg["resume"] else None  # read from the earlier run's folder
    curve = Path(cfg["resume"] or ".") / "learning_curve.json"
    if resume and curve.exists() and not (run_dir / curve.name).exists():
        shutil.copy(curve, run_dir / curve.name)  # this run's curve continues the earlier one's
    t0 = time.perf_counter()

    robot = cfg.get("robot") or {}
    recording = open_recording(cfg.get("record"), fps=robot.get("fps"), robot_type=robot.get("name"))
    with open_reward_source(cfg["reward"], cfg["transport"]) as scorer, closing_recording(recording):
        # 1. the env, with the reward model's reward (and the residual action for residual_sac)
        env = record_episodes(wrap_with_reward(make_env(cfg), cfg, scorer), recording)
        async_reward = find_wrapper(env, AsyncRobometerReward)
        labeler = async_reward.labeler if async_reward is not None else None

        # 2. the algorithm (on normalised observations if algo.normalize_obs): fresh, or the last
        #    checkpoint with its replay buffer, observation statistics and step counter
        venv = vectorize(env, bool(cfg["algo"].get("normalize_obs", False)),
                         load_from=resume.checkpoint / VECNORMALIZE_FILE if resume else None)
        if resume is None:
            model = make_algorithm(cfg["algo"], venv, seed=cfg["seed"], relabel=labeler is not None,
                                   device=cfg["device"], total_steps=cfg["total_steps"])
        else:
            log.warning(resume.describe())
            model = load_algorithm(cfg["algo"]["name"], str(resume.checkpoint / "model.zip"), venv, cfg["device"])
            if hasattr(model, "replay_buffer"):  # sized for this run's budget
                load_replay_buffer(model, resume.checkpoint, buffer_capacity(cfg["algo"], cfg["total_steps"]))
        if labeler is not None:
            model.replay_buffer.attach_labeler(labeler)
        model.set_logger(configure(str(run_dir / "tb"), ["tensorboard", "csv"]))

        # 3. learn
        start_steps = model.num_timesteps
        model.learn(
            total_timesteps=cfg["total_steps"] - start_steps,
            callback=[RewardLoggingCallback(labeler), InterventionLoggingCallback(), *curve_callback(cfg, run_dir),
                      CheckpointCallback(run_dir, cfg["checkpoint_every"], cfg["checkpoint_keep"],
                                         cfg["heartbeat_every"]),
                      *([LearnerRateCallback()] if cfg.get("robot") else [])],  # last: times learning only
            progress_bar=cfg["progress_bar"],
            reset_num_timesteps=False,
        )
        train_s = time.perf_counter() - t0

        # 4. evaluate with the env's own success signal, with reward videos of some episodes
        eval_env = record_episodes(wrap_with_reward(make_env(cfg), cfg, scorer, asynchronous=False), recording,
                                   evaluation=True)
        n_videos = cfg["eval_video_episodes"] if cfg["reward"]["kind"] == "robometer" else 0
        if n_videos:
            every = max(1, -(-cfg["eval_episodes"] // n_videos))
            eval_env = RewardVideoRecorder(eval_env, run_dir / "videos", every_n_episodes=every, name_prefix="eval")
        obs_stats = model.get_vec_normalize_env()
        if obs_stats is not None:
            obs_stats.training = False  # evaluation uses the statistics the policy was trained on
        metrics = evaluate_policy(model, eval_env, cfg["eval_episodes"], seed=10_000 + cfg["seed"],
                                  obs_transform=obs_stats.normalize_obs if obs_stats is not None else None,
                                  keep_final_frames=cfg["reward"]["kind"] == "robometer")
        save_final_frames(metrics, run_dir)
        videos = list(getattr(eval_env, "written", []))
        eval_env.close()
        venv.close()

    summary = {
        "eval_success_rate": metrics["success_rate"],
        "eval_return": metrics["mean_return"],
        "eval_model_success_rate": metrics["model_success_rate"],
        "eval_episodes": metrics["episodes"],
        "env_steps": int(model.num_timesteps),
        "trained_steps": int(model.num_timesteps - start_steps),
        "wall_s": time.perf_counter() - t0,
        "train_s": train_s,
        "resumed_from": str(resume.checkpoint) if resume else None,
        "lost_steps": resume.lost_steps if resume else 0,
        "videos": [str(v) for v in videos],
        "algo": cfg["algo"]["name"],
        "reward": cfg["reward"]["kind"],
        "reward_model": record_reward_model(scorer, run_dir),  # what the worker really served; + reward_model.json
        "seed": cfg["seed"],
        "recorded": recording_summary(recording),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("eval success rate %.2f, eval return %.3f, %d env steps, %.0f s -> %s",
             summary["eval_success_rate"], summary["eval_return"], summary["env_steps"], summary["wall_s"],
             run_dir / "summary.json")
    return summary


@hydra.main(config_path="configs", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    """Hydra entry point: resolve the config (or the resumed run's) and train.

    A config error or an unreachable reward worker prints its message alone and exits with 1;
    ``RLRM_DEBUG=1``, ``HYDRA_FULL_ERROR=1`` or ``hydra.verbose=true`` show the traceback instead.
    """
    import os
    import sys

    from hydra.core.hydra_config import HydraConfig

    from rlrm.rl.reward_source import RewardSourceError
    from rlrm.rl.run_config import RunConfigError

    hydra_cfg = HydraConfig.get()
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
        run_dir = hydra_cfg.runtime.output_dir  # a resumed run too: it reads the earlier folder, writes only its own
        if plain["resume"]:
            plain = resumed_config(str(plain["resume"]), list(hydra_cfg.overrides.task))
            if Path(plain["resume"]).resolve() == Path(run_dir).resolve():
                raise RunConfigError(f"resume={plain['resume']!r} is this run's own folder (hydra.run.dir); a resumed "
                                     "run writes into a new folder and never over the run it continues")
        train(plain, run_dir)
    except (RunConfigError, RewardSourceError) as e:
        debug = os.environ.get("RLRM_DEBUG", "0") not in ("", "0") or os.environ.get("HYDRA_FULL_ERROR") == "1"
        if debug or hydra_cfg.verbose:
            raise
        print(e, file=sys.stderr)  # the message says what to change; a traceback would bury it
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
