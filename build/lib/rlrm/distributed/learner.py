"""The learner: SB3 SAC (or residual SAC) trained on the runners' transitions.

* :class:`SpacesOnlyEnv` - a gymnasium env that only has spaces: what SB3 and ``VecNormalize``
  are built on where no env steps (the learner; the runners' observation normalisers).
* :class:`Learner` - plain class (Ray actor body in distributed runs): ``ingest`` a runner's batch
  into the replay buffer, take the gradient steps it is owed, publish :class:`PolicyWeights`
  every ``sync_every`` gradient steps; checkpoints, heartbeats, ``learning_curve.json`` (every ``eval_every``
  received transitions) and TensorBoard as single-process runs.

The learner keeps single-process SAC's update-to-data ratio: after ``learning_starts`` transitions
it owes ``gradient_steps`` updates every ``train_freq`` transitions, whichever runner sent them.
It owns the observation statistics (``VecNormalize`` updated with every received observation,
saved as ``vecnormalize.pkl`` in each checkpoint) and publishes them with the weights, so runners
normalise exactly as the policy was trained. Transitions arrive with rewards already known
(runners hold back unlabelled ones); a batch with an unlabelled transition is refused.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlrm.distributed.messages import RANDOM_VERSION, PolicyWeights, RolloutBatch

__all__ = ["SpacesOnlyEnv", "Learner", "lag_percentile"]

log = logging.getLogger(__name__)

_LOG_EVERY_STEPS = 500


class SpacesOnlyEnv(gym.Env):
    """An env with an observation and action space and nothing else (``reset``/``step`` raise).

    >>> env = SpacesOnlyEnv(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,)))
    >>> env.action_space.shape
    (2,)
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Refuse: this env only carries spaces."""
        raise RuntimeError("SpacesOnlyEnv has no dynamics: env steps happen on the runners")

    def step(self, action):
        """Refuse: this env only carries spaces."""
        raise RuntimeError("SpacesOnlyEnv has no dynamics: env steps happen on the runners")


def lag_percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of policy lags given as ``{lag: count}``; None when empty.

    >>> lag_percentile({0: 3, 1: 1, 4: 1}, 50)
    0.0
    """
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = q / 100.0 * (total - 1)
    seen = 0
    for lag in sorted(histogram):
        seen += histogram[lag]
        if seen > rank:
            return float(lag)
    return float(max(histogram))


class Learner:
    """SAC on transitions from many runners; publishes weights and checkpoints the run.

    Args:
        cfg: the resolved run config (plain dict): ``algo``, ``seed``, ``device``, ``torch_threads``,
            ``total_steps``, ``checkpoint_every``, ``checkpoint_keep``.
        run_dir: the run folder (``tb/``, ``checkpoints/``, ``heartbeat.json``).
        observation_space / action_space: what the runners' policy sees (from a runner's env).
        sync_every: gradient steps between weight publications.
        resume_checkpoint: a checkpoint folder to continue from (policy, buffer, statistics, step counter).

    >>> learner = Learner(cfg, "run", *runner.spaces(), sync_every=50)    # doctest: +SKIP
    >>> stats, published = learner.ingest(batch)                          # doctest: +SKIP
    """

    def __init__(self, cfg: Mapping[str, Any], run_dir: str | Path, observation_space: gym.Space,
                 action_space: gym.Space, sync_every: int = 50, resume_checkpoint: str | Path | None = None) -> None:
        import torch
        from stable_baselines3.common.logger import configure

        from rlrm.rl.algorithms import load_algorithm, make_algorithm
        from rlrm.rl.environment import VECNORMALIZE_FILE, vectorize

        torch.set_num_threads(int(cfg.get("torch_threads", 1)))
        self.cfg = dict(cfg)
        self.run_dir = Path(run_dir)
        self.sync_every = int(sync_every)
        algo = cfg["algo"]
        ckpt = Path(resume_checkpoint) if resume_checkpoint else None
        self.venv = vectorize(SpacesOnlyEnv(observation_space, action_space), bool(algo.get("normalize_obs", False)),
                              load_from=ckpt / VECNORMALIZE_FILE if ckpt else None)
        if ckpt is None:
            self.model = make_algorithm(algo, self.venv, seed=int(cfg["seed"]), device=cfg.get("device", "cpu"))
        else:
            self.model = load_algorithm(algo["name"], str(ckpt / "model.zip"), self.venv, cfg.get("device", "cpu"))
            from rlrm.rl.checkpoints import load_replay_buffer

            load_replay_buffer(self.model, ckpt)  # the compact buffer folder (or an older replay_buffer.pkl)
        self.model.set_logger(configure(str(self.run_dir / "tb"), ["tensorboard", "csv"]))
        self.obs_stats = self.model.get_vec_normalize_env()
        self.buffer = self.model.replay_buffer
        tf = self.model.train_freq
        self.train_every = max(1, int(getattr(tf, "frequency", tf)))
        self.gradient_steps = int(self.model.gradient_steps) if self.model.gradient_steps > 0 else self.train_every
        self.start_steps = int(self.model.num_timesteps)
        self.updates = self._updates_due()  # a resumed model took the updates its transitions owed
        self.version = 0
        self._since_publish = 0
        self._lags: Counter[int] = Counter()
        self._runner_steps: Counter[int] = Counter()
        self._last_checkpoint = self.start_steps
        self._last_dump = self.start_steps
        self._train_s = 0.0
        self._episodes = 0
        self._takeover_steps = 0
        from rlrm.rl.run_folder import learning_curve

        self.curve = learning_curve(self.cfg, self.run_dir)  # learning_curve.json, as single-process runs write it
        if self.curve is not None:
            self.curve.start(self.start_steps)
        log.info("learner: %s on %s, %d transitions to start, device %s", algo["name"], observation_space,
                 self.start_steps, self.model.device)

    # ------------------------------------------------------------------ weights
    def weights(self) -> PolicyWeights:
        """The current policy as runners load it (actor weights on CPU, observation statistics, version)."""
        policy = self.model.policy
        return PolicyWeights(
            version=self.version,
            env_steps=int(self.model.num_timesteps),
            actor_state={k: v.detach().cpu().clone() for k, v in policy.actor.state_dict().items()},
            obs_rms=copy.deepcopy(self.obs_stats.obs_rms) if self.obs_stats is not None else None,
            policy_class=type(policy),
            policy_kwargs=policy._get_constructor_parameters(),
        )

    # ------------------------------------------------------------------ data
    def _updates_due(self) -> int:
        """Gradient steps single-process SAC would have taken after ``num_timesteps`` transitions."""
        n, start = int(self.model.num_timesteps), int(self.model.learning_starts)
        if n <= start:
            return 0
        return max(0, n // self.train_every - start // self.train_every) * self.gradient_steps

    def _add(self, batch: RolloutBatch) -> None:
        """Put every transition of ``batch`` into the replay buffer and the observation statistics."""
        dict_obs = isinstance(batch.obs, Mapping)
        for i in range(batch.size):
            obs = {k: v[i:i + 1] for k, v in batch.obs.items()} if dict_obs else batch.obs[i:i + 1]
            next_obs = {k: v[i:i + 1] for k, v in batch.next_obs.items()} if dict_obs else batch.next_obs[i:i + 1]
            info = dict(batch.infos[i])
            info["TimeLimit.truncated"] = bool(batch.truncated[i] and not batch.terminated[i])
            done = np.array([batch.terminated[i] or batch.truncated[i]], np.float32)
            self.buffer.add(obs, next_obs, batch.actions[i:i + 1], batch.rewards[i:i + 1], done, [info])
        if self.obs_stats is not None and self.obs_stats.training:
            rms = self.obs_stats.obs_rms  # as VecNormalize.step_wait updates it with each step's observation
            if isinstance(rms, dict):
                for key in rms:
                    rms[key].update(np.asarray(batch.next_obs[key], np.float64))
            else:
                rms.update(np.asarray(batch.next_obs, np.float64))

    def ingest(self, batch: RolloutBatch | None) -> tuple[dict[str, Any], PolicyWeights | None]:
        """Store ``batch``, take the gradient steps now owed; returns ``(stats, new weights or None)``.

        New weights come out when at least ``sync_every`` gradient steps passed since the last publication.
        """
        published = None
        if batch is not None and batch.size:
            if not np.all(np.isfinite(batch.rewards)):
                raise ValueError(f"batch from runner {batch.runner} has non-finite rewards; runners send only "
                                 "labelled transitions")
            self._add(batch)
            self.model.num_timesteps += batch.size
            self._runner_steps[batch.runner] += batch.size
            acted = batch.versions[batch.versions != RANDOM_VERSION]
            self._lags.update((self.version - acted).tolist())
            self._record_batch(batch)
            published = self._train()
            self._maybe_curve_point()
        self._maybe_checkpoint()
        return self.stats(), published

    def _train(self) -> PolicyWeights | None:
        """Take the owed gradient steps in chunks that end on publication boundaries."""
        from rlrm.rl.checkpoints import write_heartbeat

        model, published = self.model, False
        total = max(1, int(self.cfg["total_steps"]))
        model._current_progress_remaining = max(0.0, 1.0 - model.num_timesteps / total)  # as SB3's learn() sets it
        t0 = time.perf_counter()
        while self.updates < self._updates_due():
            chunk = min(self._updates_due() - self.updates, self.sync_every - self._since_publish)
            model.train(gradient_steps=chunk, batch_size=model.batch_size)
            self.updates += chunk
            self._since_publish += chunk
            if self._since_publish >= self.sync_every:
                self.version += 1
                self._since_publish = 0
                published = True
        self._train_s += time.perf_counter() - t0
        write_heartbeat(self.run_dir, model.num_timesteps)
        return self.weights() if published else None

    def _record_batch(self, batch: RolloutBatch) -> None:
        logger = self.model.logger
        for ep in batch.episodes:
            self._episodes += 1
            self._takeover_steps += ep.takeover_steps
            logger.record_mean("rollout/ep_rew_mean", ep.ret)
            logger.record_mean("rollout/ep_len_mean", ep.length)
            if ep.intervention_rate is not None:
                logger.record_mean("interventions/rate", ep.intervention_rate)
            if ep.is_success is not None:
                logger.record_mean("env/is_success", float(ep.is_success))
        for name, (total, count) in batch.scalars.items():
            if count:
                logger.record_mean(name, total / count)
        logger.record(f"distributed/env_steps_runner_{batch.runner}", self._runner_steps[batch.runner])
        lags = self.version - batch.versions[batch.versions != RANDOM_VERSION]
        if lags.size:
            logger.record_mean("distributed/policy_lag", float(lags.mean()))
        if self.model.num_timesteps - self._last_dump >= _LOG_EVERY_STEPS:
            self._dump()

    def _dump(self) -> None:
        logger = self.model.logger
        logger.record("distributed/weights_version", self.version)
        logger.record("learner/updates", self.updates)
        if self._train_s > 0:
            logger.record("learner/updates_per_s", (self.updates - self._updates_at_start()) / self._train_s)
        logger.record("interventions/buffer_size", int(getattr(self.buffer, "num_intervention_steps", 0)))
        logger.dump(step=int(self.model.num_timesteps))
        self._last_dump = int(self.model.num_timesteps)

    def _updates_at_start(self) -> int:
        n, start = self.start_steps, int(self.model.learning_starts)
        return 0 if n <= start else max(0, n // self.train_every - start // self.train_every) * self.gradient_steps

    def _maybe_curve_point(self) -> None:
        """A learning-curve point once the received transitions pass the next multiple of ``eval_every``."""
        steps = int(self.model.num_timesteps)
        if self.curve is not None and self.curve.due(steps):
            self.curve.evaluate(self.model, steps, self.obs_stats.normalize_obs if self.obs_stats is not None else None,
                                self.model.logger)

    def _maybe_checkpoint(self) -> None:
        from rlrm.rl.checkpoints import save_checkpoint

        every = int(self.cfg.get("checkpoint_every", 0))
        if every > 0 and self.model.num_timesteps - self._last_checkpoint >= every:
            save_checkpoint(self.model, self.run_dir, keep=int(self.cfg.get("checkpoint_keep", 2)),
                            extra={"weights_version": self.version})
            self._last_checkpoint = int(self.model.num_timesteps)

    # ------------------------------------------------------------------ end of run
    def stats(self) -> dict[str, Any]:
        """Counters for the driver: transitions, updates, weights version, policy lag percentiles, per-runner steps."""
        p50 = lag_percentile(self._lags, 50)
        return {
            "env_steps": int(self.model.num_timesteps),
            "updates": int(self.updates),
            "version": int(self.version),
            "policy_lag_p50": p50,
            "policy_lag_p90": lag_percentile(self._lags, 90),
            "runner_steps": {int(k): int(v) for k, v in self._runner_steps.items()},
            "updates_per_s": ((self.updates - self._updates_at_start()) / self._train_s) if self._train_s > 0 else None,
            "episodes": self._episodes,
            "takeover_steps": self._takeover_steps,
            "intervention_buffer": int(getattr(self.buffer, "num_intervention_steps", 0)),
        }

    def finish(self) -> dict[str, Any]:
        """Write the last checkpoint (as single-process runs do at the end of training) and flush TensorBoard."""
        from rlrm.rl.checkpoints import save_checkpoint, write_heartbeat

        write_heartbeat(self.run_dir, self.model.num_timesteps)
        if int(self.model.num_timesteps) != self._last_checkpoint:
            save_checkpoint(self.model, self.run_dir, keep=int(self.cfg.get("checkpoint_keep", 2)),
                            extra={"weights_version": self.version})
            self._last_checkpoint = int(self.model.num_timesteps)
        self._dump()
        return self.stats()

    def close(self) -> None:
        """Close the learning curve's env and the TensorBoard writer."""
        if self.curve is not None:
            self.curve.close()
        self.model.logger.close()
