"""The one run driver: a training run's folder, set-up, outputs and summary, single-process or distributed.

* :func:`train` - run one training job from a resolved config and return the summary it writes:
  in this process (:func:`train_single`, the recipe below) or, with ``distributed.runners >= 1``,
  on Ray (:func:`rlrm.distributed.run.train_distributed`). Both write the same outputs.
* :func:`train_single` - the single-process recipe: make env -> wrap with reward -> make algorithm
  -> learn -> evaluate.
* :func:`start_run` - check the config, make the run folder, read the resume point
  (a :class:`~rlrm.rl.run_folder.RunStart`).
* :func:`finish_run` - write the outputs of a :class:`~rlrm.rl.run_folder.RunOutcome`: final frames,
  reward model, ``summary.json``.
* :func:`main` - the body of the Hydra entry point (``run_rl.py``): resolve (or resume) the config,
  train, print a config error or an unreachable worker as one line.

Outputs in the run folder, whatever runs the job: ``config.yaml`` (resolved), ``tb/`` (TensorBoard),
``checkpoints/`` (policy + replay buffer), ``heartbeat.json``, ``learning_curve.json`` (every
``eval_every`` env steps), ``reward_adapt/`` (with ``reward.adapt=true``: labelled episodes, model versions,
the trainer's log; ``summary.json`` then has ``reward_adaptation``), ``videos/`` (reward videos of evaluation episodes), ``eval_final_frames.npz``
(each evaluation episode's last frame and verdicts), ``reward_model.json`` and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rlrm.rl.checkpoints import latest_checkpoint, resume_point
from rlrm.rl.environment import resolve_env_defaults
from rlrm.rl.evaluation import evaluation_summary
from rlrm.rl.interrupt import interrupted_summary
from rlrm.rl.reward_source import REWARD_MODEL_FILE
from rlrm.rl.run_config import RESOLVED_CONFIG, validate_run_config
from rlrm.rl.run_folder import (
    EVAL_SEED_OFFSET,
    LEARNING_CURVE_FILE,
    SUMMARY_FILE,
    RunOutcome,
    RunStart,
    keep_final_frames,
    learning_curve,
    runners,
    save_final_frames,
    video_episodes,
)

__all__ = ["train", "train_single", "start_run", "finish_run", "main"]

log = logging.getLogger("rlrm.run")


def start_run(cfg: dict[str, Any], run_dir: str | Path) -> RunStart:
    """Check ``cfg`` (before any env, worker, model or actor exists), make the folder, write ``config.yaml``.

    A resumed run reads the earlier folder's checkpoint and carries its learning curve over.
    """
    resolve_env_defaults(cfg)  # reward.model=auto, algo.base_policy.kind=env: what the task's config names
    if runners(cfg) != 0:
        from rlrm.distributed.config import distributed_config

        distributed_config(cfg)  # the distributed block first: its errors name the distributed keys
    validate_run_config(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESOLVED_CONFIG).write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    resume = resume_point(cfg["resume"]) if cfg["resume"] else None  # read from the earlier run's folder
    if resume is not None:
        log.warning(resume.describe())
        curve = Path(cfg["resume"]) / LEARNING_CURVE_FILE
        if curve.exists() and not (run_dir / LEARNING_CURVE_FILE).exists():
            shutil.copy(curve, run_dir / LEARNING_CURVE_FILE)  # this run's curve continues the earlier one's
    return RunStart(cfg, run_dir, resume)


def finish_run(start: RunStart, outcome: RunOutcome) -> dict[str, Any]:
    """Write ``eval_final_frames.npz``, ``reward_model.json`` and ``summary.json``; return the summary."""
    cfg, run_dir, resume = start.cfg, start.run_dir, start.resume
    metrics = outcome.metrics
    save_final_frames(metrics, run_dir)
    if outcome.reward_model is not None:  # what the run's rewards really came from
        (run_dir / REWARD_MODEL_FILE).write_text(json.dumps(outcome.reward_model, indent=2, default=str))
    if outcome.interrupted_at is None:
        verdicts = {"interrupted": False, **evaluation_summary(metrics)}
    else:  # Ctrl-C: no evaluation ran; the checkpoint and the resume command instead
        verdicts = interrupted_summary(outcome.interrupted_at, run_dir, latest_checkpoint(run_dir))
    summary = {
        **verdicts,
        "env_steps": int(outcome.env_steps),
        "trained_steps": int(outcome.trained_steps),
        "wall_s": time.perf_counter() - start.t0,
        "train_s": outcome.train_s,
        "resumed_from": str(resume.checkpoint) if resume else None,
        "lost_steps": resume.lost_steps if resume else 0,
        "videos": [str(v) for v in outcome.videos],
        "algo": cfg["algo"]["name"],
        "reward": cfg["reward"]["kind"],
        "reward_model": outcome.reward_model,
        "seed": cfg["seed"],
        "recorded": outcome.recorded,
        **outcome.extra,
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    if outcome.interrupted_at is not None:
        log.warning("interrupted at env step %d: checkpoint %s, summary %s; continue with: %s",
                    summary["stopped_at_step"], summary["checkpoint"], run_dir / SUMMARY_FILE,
                    summary["resume_command"])
        return summary
    log.info("eval success rate %s, eval return %s, %d env steps, %.0f s -> %s",  # None: no ground truth / episodes
             summary["eval_success_rate"], summary["eval_return"], summary["env_steps"], summary["wall_s"],
             run_dir / SUMMARY_FILE)
    return summary


def train(cfg: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Run one training job described by the resolved config ``cfg``; returns the summary it writes.

    >>> train(compose("config", ["total_steps=2000"]), "outputs/run")                      # doctest: +SKIP
    >>> train(compose("config", ["distributed.runners=2"]), "outputs/run")["runners"]      # doctest: +SKIP
    2
    """
    start = start_run(cfg, run_dir)
    if start.distributed:  # env runners + a learner on Ray (docs/distributed.md)
        from rlrm.distributed.run import train_distributed

        outcome = train_distributed(start)
    else:
        outcome = train_single(start)
    return finish_run(start, outcome)


def train_single(start: RunStart) -> RunOutcome:
    """Train and evaluate in this process: make env -> wrap with reward -> make algorithm -> learn -> evaluate."""
    import torch
    from stable_baselines3.common.logger import configure

    from rlrm.bridges.lerobot_dataset import (
        closing_recording,
        open_recording,
        record_episodes,
        recording_summary,
    )
    from rlrm.rl.adaptation import RewardAdaptation, adaptation_folder, adaptation_summary
    from rlrm.rl.algorithms import buffer_capacity, load_algorithm, make_algorithm
    from rlrm.rl.async_reward import AsyncRobometerReward
    from rlrm.rl.callbacks import CheckpointCallback, LearningCurveCallback, RewardLoggingCallback
    from rlrm.rl.checkpoints import load_replay_buffer
    from rlrm.rl.demos import load_demos, reward_name
    from rlrm.rl.environment import VECNORMALIZE_FILE, find_wrapper, make_env, vectorize, wrap_with_reward
    from rlrm.rl.evaluation import evaluate_policy, evaluation_episodes
    from rlrm.rl.interrupt import StopOnCtrlC
    from rlrm.rl.interventions import InterventionLoggingCallback
    from rlrm.rl.learner_rate import LearnerRateCallback
    from rlrm.rl.reward_source import open_reward_source, resolve_model_spec, reward_model_info
    from rlrm.rl.training_progress import GradientStepProgress
    from rlrm.train.online import VERSIONS
    from rlrm.wrappers import RewardVideoRecorder

    cfg, run_dir, resume = start.cfg, start.run_dir, start.resume
    torch.set_num_threads(int(cfg["torch_threads"]))
    robot = cfg.get("robot") or {}
    recording = open_recording(cfg.get("record"), fps=(robot.get("env") or {}).get("fps"),
                               robot_type=robot.get("name"))
    adapt = bool(cfg["reward"].get("adapt"))  # reward.adapt: the reward model learns from labels during RL
    watch = str(adaptation_folder(cfg, run_dir) / VERSIONS) if adapt else None
    with open_reward_source(cfg["reward"], cfg["transport"], watch=watch) as scorer, closing_recording(recording), \
            contextlib.ExitStack() as stack:
        # 1. the env, with the reward model's reward (and the residual action for residual_sac),
        #    its episodes recorded as a LeRobot dataset if record.dataset is set; with reward.adapt its finished
        #    episodes also go to the labeller (-> the reward trainer process) and the re-scorer
        episode_meta = {"reward": reward_name(cfg["reward"])}  # what the recorded next.reward holds
        env = record_episodes(wrap_with_reward(make_env(cfg), cfg, scorer), recording, episode_meta=episode_meta)
        adaptation = None
        if adapt:
            adaptation = stack.enter_context(
                RewardAdaptation(cfg, run_dir, scorer, resolve_model_spec(str(cfg["reward"]["model"]))))
            env = adaptation.wrap(env)
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
            model = load_algorithm(cfg["algo"]["name"], str(resume.checkpoint / "model.zip"), venv, cfg["device"])
            if hasattr(model, "replay_buffer"):  # sized for this run's budget
                load_replay_buffer(model, resume.checkpoint, buffer_capacity(cfg["algo"], cfg["total_steps"]))
        if labeler is not None:
            model.replay_buffer.attach_labeler(labeler)
        if adaptation is not None and hasattr(model, "replay_buffer"):
            adaptation.attach(model.replay_buffer)  # stored transitions are re-scored with each new version
        # demonstrations (demos=) in the offline half of each batch; a resumed run's checkpoint holds them already
        demos = load_demos(model, env, cfg, scorer) if resume is None else None
        model.set_logger(configure(str(run_dir / "tb"), ["tensorboard", "csv"]))

        # 3. learn (Ctrl-C: stop after this step with a checkpoint and a summary; twice: exit at once)
        start_steps = model.num_timesteps
        curve = learning_curve(cfg, run_dir)
        with StopOnCtrlC() as ctrl_c:
            model.learn(
                total_timesteps=cfg["total_steps"] - start_steps,
                callback=[ctrl_c, GradientStepProgress(), RewardLoggingCallback(labeler), InterventionLoggingCallback(),
                          *([LearningCurveCallback(curve)] if curve else []),
                          CheckpointCallback(run_dir, cfg["checkpoint_every"], cfg["checkpoint_keep"],
                                             cfg["heartbeat_every"]),
                          *([adaptation.callback()] if adaptation is not None else []),
                          *([LearnerRateCallback()] if cfg.get("robot") else [])],  # last: times learning only
                progress_bar=cfg["progress_bar"],
                reset_num_timesteps=False,
            )
        train_s = time.perf_counter() - start.t0
        if ctrl_c.requested_at is not None:
            venv.close()
            steps = int(model.num_timesteps)
            return RunOutcome({}, env_steps=steps, trained_steps=steps - start_steps, train_s=train_s,
                              reward_model=reward_model_info(scorer), recorded=recording_summary(recording),
                              interrupted_at=steps, extra={**adaptation_summary(adaptation), "demos": demos})

        # 4. evaluate with the env's own success signal, with reward videos of some episodes
        eval_env = record_episodes(wrap_with_reward(make_env(cfg), cfg, scorer, asynchronous=False), recording,
                                   evaluation=True, episode_meta=episode_meta)
        eval_episodes = evaluation_episodes(cfg, model.num_timesteps - start_steps)  # scaled to the run on a robot
        if video_episodes(cfg):
            every = max(1, -(-eval_episodes // video_episodes(cfg)))
            eval_env = RewardVideoRecorder(eval_env, run_dir / "videos", every_n_episodes=every, name_prefix="eval")
        obs_stats = model.get_vec_normalize_env()
        if obs_stats is not None:
            obs_stats.training = False  # evaluation uses the statistics the policy was trained on
        metrics = evaluate_policy(model, eval_env, eval_episodes, seed=EVAL_SEED_OFFSET + cfg["seed"],
                                  obs_transform=obs_stats.normalize_obs if obs_stats is not None else None,
                                  keep_final_frames=keep_final_frames(cfg))
        videos = list(getattr(eval_env, "written", []))
        eval_env.close()
        venv.close()
        recorded = recording_summary(recording)
        extra = adaptation_summary(adaptation)
    return RunOutcome(metrics, env_steps=int(model.num_timesteps), trained_steps=int(model.num_timesteps - start_steps),
                      train_s=train_s, videos=videos, reward_model=reward_model_info(scorer), recorded=recorded,
                      extra={**extra, "demos": demos})


def main(cfg: Any) -> None:
    """Body of the Hydra entry point: resolve the config (or the resumed run's) and train.

    A config error or an unreachable reward worker prints its message alone and exits with 1;
    ``RLRM_DEBUG=1``, ``HYDRA_FULL_ERROR=1`` or ``hydra.verbose=true`` show the traceback instead.
    A single-process run stopped by Ctrl-C exits with 130 after its checkpoint and ``summary.json``
    (``"interrupted": true``); a second Ctrl-C exits with 130 at once.
    """
    import os
    import sys

    from hydra.core.hydra_config import HydraConfig

    from rlrm.rl.reward_source import RewardSourceError
    from rlrm.rl.run_config import RunConfigError, resumed_config

    hydra_cfg = HydraConfig.get()
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
        run_dir = hydra_cfg.runtime.output_dir  # a resumed run too: it reads the earlier folder, writes only its own
        if plain["resume"]:
            plain = resumed_config(str(plain["resume"]), list(hydra_cfg.overrides.task))
            if Path(plain["resume"]).resolve() == Path(run_dir).resolve():
                raise RunConfigError(f"resume={plain['resume']!r} is this run's own folder (hydra.run.dir); a resumed "
                                     "run writes into a new folder and never over the run it continues")
        summary = train(plain, run_dir)
    except KeyboardInterrupt:  # a single-process run's second Ctrl-C (its first stops cleanly), a distributed run's
        print(f"Ctrl-C: exited at once, without a new checkpoint or summary.json; {run_dir}/checkpoints "
              "holds the checkpoints saved before (continue with resume=)", file=sys.stderr)
        raise SystemExit(130) from None
    except (RunConfigError, RewardSourceError) as e:
        debug = os.environ.get("RLRM_DEBUG", "0") not in ("", "0") or os.environ.get("HYDRA_FULL_ERROR") == "1"
        if debug or hydra_cfg.verbose:
            raise
        print(e, file=sys.stderr)  # the message says what to change; a traceback would bury it
        raise SystemExit(1) from None
    if summary.get("interrupted"):
        raise SystemExit(130)  # the shell's code for "stopped by Ctrl-C"; summary.json says where


if __name__ == "__main__":  # python -m rlrm.run [overrides]: the same as `rlrm run` and run_rl.py
    from rlrm.run_cli import main as _cli_main

    raise SystemExit(_cli_main())
