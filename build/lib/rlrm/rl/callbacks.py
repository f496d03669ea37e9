"""Stable-Baselines3 callbacks of a ``run_rl.py`` run.

* :class:`RewardLoggingCallback` - TensorBoard scalars of the Robometer reward: progress,
  success probability, each reward term, worker latency, pending asynchronous labels, and the
  env's own success at episode end.
* :class:`CheckpointCallback` - a heartbeat every few steps and a checkpoint (policy + replay
  buffer + step counter) every ``every`` steps and at the end (:mod:`rlrm.rl.checkpoints`).
* :func:`rollout_steps` - env steps per rollout (where an on-policy algorithm can checkpoint).
* :class:`LearningCurve` - success-vs-env-steps points on the bare sim env -> ``learning_curve.json``
  (single-process runs through :class:`LearningCurveCallback`, distributed runs in the learner).
* :class:`LearningCurveCallback` - a :class:`LearningCurve` point every ``eval_every`` env steps of SB3's ``learn``.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from rlrm.rl.checkpoints import save_checkpoint, write_heartbeat

__all__ = ["RewardLoggingCallback", "CheckpointCallback", "LearningCurve", "LearningCurveCallback", "rollout_steps"]

log = logging.getLogger(__name__)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


class RewardLoggingCallback(BaseCallback):
    """Log the reward model's outputs to the SB3 logger (TensorBoard) as running means.

    Reads ``info["rlrm"]`` of the synchronous wrapper each step; with asynchronous rewards it
    drains the labeler's finished labels instead and logs how many are still pending.
    Scalars: ``reward/progress``, ``reward/success_prob``, ``reward/term_<name>``,
    ``reward/shaped``, ``worker/latency_ms``, ``reward/pending_labels``, ``env/is_success``.

    Args:
        labeler: the :class:`~rlrm.wrappers.async_reward.AsyncRewardLabeler` of an asynchronous run, else None.
        stats: the reward wrapper's :class:`~rlrm.wrappers.episode.RewardStats` (query latencies); None
            finds it in the training env's wrapper chain.

    >>> from stable_baselines3 import SAC                         # doctest: +SKIP
    >>> SAC("MlpPolicy", env).learn(1000, callback=RewardLoggingCallback())   # doctest: +SKIP
    """

    def __init__(self, labeler: Any = None, stats: Any = None) -> None:
        super().__init__()
        self.labeler = labeler
        self.stats = stats

    def _on_training_start(self) -> None:
        if self.stats is None:  # the reward wrapper's RewardStats, found through the training env
            for env in getattr(self.training_env, "envs", [])[:1]:
                while env is not None and self.stats is None:
                    self.stats = getattr(env, "reward_stats", None)  # gymnasium wrappers do not forward attributes
                    env = getattr(env, "env", None)

    def _record(self, progress: Any, success_prob: Any, terms: dict, latency_ms: Any) -> None:
        if _finite(progress):
            self.logger.record_mean("reward/progress", progress)
        if _finite(success_prob):
            self.logger.record_mean("reward/success_prob", success_prob)
        if terms:
            for name, value in terms.items():
                self.logger.record_mean(f"reward/term_{name}", value)
            self.logger.record_mean("reward/shaped", sum(terms.values()))
        if _finite(latency_ms):
            self.logger.record_mean("worker/latency_ms", latency_ms)

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", [])
        dones = self.locals.get("dones", [False] * len(infos))
        for info, done in zip(infos, dones, strict=False):
            rlrm = info.get("rlrm")
            if rlrm and rlrm.get("queried", True) and not rlrm.get("stale", False):
                self._record(rlrm.get("progress"), rlrm.get("success_prob"), rlrm.get("reward_terms") or {},
                             rlrm.get("latency_ms"))
            if done and "is_success" in info:
                self.logger.record_mean("env/is_success", float(info["is_success"]))
        if self.stats is not None:
            for latency_ms in self.stats.drain():
                self.logger.record_mean("worker/latency_ms", latency_ms)
        if self.labeler is not None:
            while self.labeler.finished:
                label = self.labeler.finished.popleft()
                self._record(label.progress, label.success_prob, label.terms, label.latency_ms)
            self.logger.record("reward/pending_labels", self.labeler.num_pending)
        return True


def rollout_steps(model: Any) -> int:
    """Env steps between two rollout ends: ``n_steps * n_envs`` for on-policy algorithms (PPO), 1 for SAC."""
    n_steps = getattr(model, "n_steps", None)
    return int(n_steps) * int(model.n_envs) if isinstance(n_steps, int) else 1


class CheckpointCallback(BaseCallback):
    """Heartbeat every ``heartbeat_every`` steps; checkpoint every ``every`` steps and at the end.

    Checkpoints are written at the end of a rollout (SAC: after every env step; PPO: after
    ``n_steps``), when SB3 has stored the step's transition, so a checkpoint's buffer holds
    exactly as many transitions as its step counter says.

    Args:
        run_dir: the run folder (checkpoints go to ``run_dir/checkpoints``).
        every: env steps between checkpoints (0: only at the end).
        keep: how many checkpoints to keep.
        heartbeat_every: env steps between heartbeats (what a resumed run compares against).
    """

    def __init__(self, run_dir: str | os.PathLike, every: int, keep: int = 2, heartbeat_every: int = 10) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.every = int(every)
        self.keep = int(keep)
        self.heartbeat_every = max(1, int(heartbeat_every))
        self._last_saved = 0

    def _on_training_start(self) -> None:
        self._last_saved = self.num_timesteps
        rollout = rollout_steps(self.model)
        if self.every > 0 and rollout > 1 and self.every % rollout:
            spacing = -(-self.every // rollout) * rollout
            log.warning("checkpoint_every=%d: %s saves at the end of a rollout (n_steps=%d x %d envs = %d env "
                        "steps), so checkpoints come every %d steps (%d, %d, ...); choose a multiple of %d to "
                        "match", self.every, type(self.model).__name__, rollout // self.model.n_envs,
                        self.model.n_envs, rollout, spacing, self.num_timesteps + spacing,
                        self.num_timesteps + 2 * spacing, rollout)

    def _on_step(self) -> bool:
        if self.num_timesteps % self.heartbeat_every == 0:
            write_heartbeat(self.run_dir, self.num_timesteps)
        return True

    def _on_rollout_end(self) -> None:
        # on_step runs before SB3 stores the step's transition; at rollout end it is stored
        if self.every > 0 and self.num_timesteps - self._last_saved >= self.every:
            save_checkpoint(self.model, self.run_dir, keep=self.keep)
            self._last_saved = self.num_timesteps

    def _on_training_end(self) -> None:
        write_heartbeat(self.run_dir, self.num_timesteps)
        if self._last_saved != self.num_timesteps:
            save_checkpoint(self.model, self.run_dir, keep=self.keep)
            self._last_saved = self.num_timesteps


class LearningCurve:
    """Success-vs-env-steps points of the current policy on the bare env, kept in ``learning_curve.json``.

    The curve is judged by the env's own ``info["is_success"]`` at the end of each episode, on an env
    *without* the reward model (cheap, and independent of what the reward model believes), with the
    observation statistics the policy trains on. Points go to TensorBoard (``eval/curve_success``) and to
    ``path`` (JSON: ``{"points": [{"env_steps", "success_rate", "mean_length"}, ...]}``), rewritten after
    each point, so a killed run keeps its curve; a resumed run appends to it. Used by
    :class:`LearningCurveCallback` (single-process runs) and the distributed learner.

    Args:
        make_env: builds a fresh evaluation env (the run's env without the reward wrapper).
        every: env steps between points (> 0).
        episodes: evaluation episodes per point.
        path: JSON file of the curve.
        seed: episode i of every point resets with ``seed + i`` (the same goals at every point).

    >>> curve = LearningCurve(lambda: make_env(cfg), 1000, 10, "run/learning_curve.json")  # doctest: +SKIP
    >>> curve.start(env_steps=0)                                                          # doctest: +SKIP
    >>> if curve.due(1000): curve.evaluate(model, 1000, None, model.logger)               # doctest: +SKIP
    """

    def __init__(self, make_env: Any, every: int, episodes: int, path: str | os.PathLike, seed: int = 20_000) -> None:
        if every <= 0 or episodes <= 0:
            raise ValueError(f"every and episodes must be > 0, got every={every}, episodes={episodes}")
        self.make_env = make_env
        self.every = int(every)
        self.episodes = int(episodes)
        self.path = os.fspath(path)
        self.seed = int(seed)
        self.points: list[dict[str, float]] = []
        self._env = None
        self._next = self.every

    def start(self, env_steps: int) -> None:
        """Keep the points of an earlier run up to ``env_steps`` (a resumed run) and schedule the next one."""
        import json

        if os.path.exists(self.path):
            with open(self.path) as f:
                self.points = [p for p in json.load(f).get("points", []) if p["env_steps"] <= env_steps]
        self._next = (int(env_steps) // self.every + 1) * self.every

    def due(self, env_steps: int) -> bool:
        """Whether a point is owed at ``env_steps`` (then the next one is scheduled ``every`` steps later)."""
        if env_steps < self._next:
            return False
        self._next = (int(env_steps) // self.every + 1) * self.every
        return True

    def evaluate(self, policy: Any, env_steps: int, obs_transform: Any = None, logger: Any = None) -> dict[str, float]:
        """Evaluate ``policy`` (has ``predict``) now, record and save the point at ``env_steps``, and return it."""
        import json

        from rlrm.rl.evaluation import evaluate_policy

        if self._env is None:
            self._env = self.make_env()
        metrics = evaluate_policy(policy, self._env, self.episodes, seed=self.seed, obs_transform=obs_transform)
        rate = metrics["success_rate"]  # None: the env has no is_success
        point = {"env_steps": int(env_steps), "success_rate": float("nan") if rate is None else rate,
                 "mean_length": float(metrics["mean_length"])}
        self.points.append(point)
        if logger is not None:
            logger.record("eval/curve_success", point["success_rate"])
        log.info("learning curve: %d env steps, success %.2f", point["env_steps"], point["success_rate"])
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"points": self.points, "episodes_per_point": self.episodes}, f, indent=1)
        os.replace(tmp, self.path)
        return point

    def close(self) -> None:
        """Close the evaluation env."""
        if self._env is not None:
            self._env.close()
            self._env = None


class LearningCurveCallback(BaseCallback):
    """Every ``every`` env steps, evaluate the current policy on the bare env and append the point to a curve.

    Args:
        curve: the :class:`LearningCurve` to extend, driven by SB3's step counter.
    """

    def __init__(self, curve: LearningCurve) -> None:
        super().__init__()
        self.curve = curve

    @property
    def points(self) -> list[dict[str, float]]:
        """The curve's points so far."""
        return self.curve.points

    def _on_training_start(self) -> None:
        self.curve.start(self.num_timesteps)

    def _on_step(self) -> bool:
        if self.curve.due(self.num_timesteps):
            self.evaluate()
        return True

    def evaluate(self) -> dict[str, float]:
        """Evaluate now, record and save the point, and return it."""
        stats = self.model.get_vec_normalize_env()
        return self.curve.evaluate(self.model, self.num_timesteps,
                                   stats.normalize_obs if stats is not None else None, self.logger)

    def _on_training_end(self) -> None:
        self.curve.close()
