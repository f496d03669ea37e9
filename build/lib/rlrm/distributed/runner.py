"""Env runners: an env with its reward wrapper, acting with the learner's latest weights on CPU.

* :class:`EnvRunner` - plain class (Ray actor body in distributed runs): ``collect`` steps the env
  ``n`` times and returns a batch, ``evaluate`` runs evaluation episodes, ``stop`` halts a robot now.

A runner keeps its env and episode across ``collect`` calls, so batches cut episodes anywhere.
With asynchronous rewards (``reward.mode=async``) the env keeps its rate and a transition is held
back until its reward label arrives: the learner never receives an unlabelled transition. An
exception inside the env ends the call early: the batch carries the transitions that were ready
and ``error`` says what happened; the driver then has Ray restart the runner.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np

from rlrm.distributed.messages import RANDOM_VERSION, EpisodeRecord, PolicyWeights, RolloutBatch
from rlrm.rl.interventions import EXECUTED_ACTION_KEY, INTERVENTION_KEY, InterventionCounter
from rlrm.rl.relabel_buffer import TICKET_KEY
from rlrm.types import Scorer

__all__ = ["EnvRunner"]

log = logging.getLogger(__name__)

_FLUSH_TIMEOUT_S = 120.0


class _Transition:
    """One stored step, waiting to be sent (and, with asynchronous rewards, for its label)."""

    __slots__ = ("obs", "next_obs", "action", "reward", "terminated", "truncated", "info", "version", "episode")

    def __init__(self, obs, next_obs, action, reward, terminated, truncated, info, version, episode) -> None:
        self.obs, self.next_obs, self.action, self.reward = obs, next_obs, action, reward
        self.terminated, self.truncated, self.info, self.version, self.episode = (
            terminated, truncated, info, version, episode)


class _Episode:
    """Running totals of one episode; finished when its last transition is ready to send."""

    def __init__(self) -> None:
        self.ret = 0.0
        self.ended = False
        self.length = 0
        self.is_success: bool | None = None
        self.rate: float | None = None
        self.takeover_steps = 0


def _stack(items: list[Any]) -> Any:
    if isinstance(items[0], Mapping):
        return {k: np.stack([np.asarray(o[k]) for o in items]) for k in items[0]}
    return np.stack([np.asarray(o) for o in items])


class EnvRunner:
    """An env (with the run's reward) that collects transitions with the latest published policy.

    Args:
        cfg: the resolved run config (plain dict), as ``run_rl.py`` builds single-process runs from.
        index: this runner's number (seeds its env with ``seed + 1000 * (index + 1)``).
        reward: how to reach the run's shared reward source (:class:`RewardEndpoint`).

    >>> runner = EnvRunner(cfg, 0, RewardEndpoint("none"))                 # doctest: +SKIP
    >>> meta, batch = runner.collect(50, weights.version, [weights])        # doctest: +SKIP
    >>> batch.size, meta["env_steps"]                                      # doctest: +SKIP
    (50, 50)
    """

    def __init__(self, cfg: Mapping[str, Any], index: int, reward: Any) -> None:
        self.cfg = dict(cfg)
        self.index = int(index)
        self.reward = reward
        self.scorer: Scorer | None = None
        self._env: Any = None  # built by the first call that needs it, on the thread that steps it
        self.labeler: Any = None
        self._reward_stats: Any = None
        self.seed = int(cfg.get("seed", 0)) + 1000 * (self.index + 1)
        self.normalize_obs = bool(cfg["algo"].get("normalize_obs", False))
        self.policy: Any = None
        self.obs_norm: Any = None
        self.version = RANDOM_VERSION
        self.versions_loaded: list[int] = []
        self._obs: Any = None
        self._seeded = False
        self._episode: _Episode | None = None
        self._counter = InterventionCounter()
        self._ready: list[_Transition] = []
        self._pending: dict[int, _Transition] = {}
        self._finished: list[EpisodeRecord] = []
        self._scalars: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self.env_closed = False
        self.restarted = self._was_restarted()
        if self.restarted:
            log.warning("runner %d restarted by Ray (pid %d); it resumes with the next published weights",
                        self.index, os.getpid())

    @property
    def env(self) -> Any:
        """The reward-wrapped env (built on first use: GL renderers and robot SDKs belong to the thread
        that creates them, which in a Ray actor must be the thread that steps them)."""
        if self._env is None:
            self._build_env()
        return self._env

    @env.setter
    def env(self, env: Any) -> None:
        self._env = env

    def _build_env(self) -> None:
        import torch

        from rlrm.rl.async_reward import AsyncRobometerReward
        from rlrm.rl.environment import find_wrapper, make_env, wrap_with_reward
        from rlrm.wrappers import RobometerReward

        torch.set_num_threads(int(self.cfg.get("torch_threads", 1)))
        self.scorer = self.reward.connect()
        self._env = wrap_with_reward(make_env(self.cfg), self.cfg, self.scorer)
        async_reward = find_wrapper(self._env, AsyncRobometerReward)
        self.labeler = async_reward.labeler if async_reward is not None else None
        sync_reward = find_wrapper(self._env, RobometerReward)
        self._reward_stats = getattr(sync_reward, "reward_stats", None)  # query latencies, kept out of step info

    @staticmethod
    def _was_restarted() -> bool:
        """Whether Ray restarted this actor (False outside a Ray actor)."""
        import warnings

        try:
            import ray
        except ModuleNotFoundError:
            return False
        if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
            return False
        with warnings.catch_warnings():  # Ray deprecates a helper this property uses, not the property
            warnings.simplefilter("ignore", DeprecationWarning)
            return bool(ray.get_runtime_context().was_current_actor_reconstructed)

    # ------------------------------------------------------------------ small queries
    def ready(self) -> dict[str, Any]:
        """Where this runner lives (the driver's liveness probe; answers while ``collect`` runs in an actor)."""
        return {"runner": self.index, "pid": os.getpid(), "host": socket.gethostname(), "restarted": self.restarted}

    def spaces(self) -> tuple[Any, Any]:
        """The (observation_space, action_space) the policy sees (after the reward and residual wrappers); builds the env."""
        return self.env.observation_space, self.env.action_space

    # ------------------------------------------------------------------ weights
    def load_weights(self, version: int | None, weights: list[Any]) -> None:
        """Use the published policy ``version`` (None: whatever ``weights`` holds); ``weights`` is
        ``[PolicyWeights]`` or ``[ObjectRef]`` of one, boxed so Ray does not fetch it when the version is known."""
        if not weights or (version is not None and version == self.version):
            return
        published = weights[0]
        if not isinstance(published, PolicyWeights):
            import ray

            published = ray.get(published)
        if self.policy is None:
            self.policy = published.policy_class(**published.policy_kwargs)
            self.policy.set_training_mode(False)
            if self.normalize_obs:
                from rlrm.distributed.learner import SpacesOnlyEnv
                from rlrm.rl.environment import vectorize

                self.obs_norm = vectorize(SpacesOnlyEnv(*self.spaces()), True)
                self.obs_norm.training = False
        self.policy.actor.load_state_dict(published.actor_state)
        if self.obs_norm is not None and published.obs_rms is not None:
            self.obs_norm.obs_rms = published.obs_rms
        self.version = int(published.version)
        self.versions_loaded.append(self.version)

    def _act(self, obs: Any, random_actions: bool) -> tuple[np.ndarray, np.ndarray, int]:
        """(env action, buffer action in [-1, 1], version) for ``obs``."""
        if random_actions or self.policy is None:
            action = np.asarray(self.env.action_space.sample())
            version = RANDOM_VERSION
        else:
            seen = self.obs_norm.normalize_obs(obs) if self.obs_norm is not None else obs
            action, _ = self.policy.predict(seen, deterministic=False)
            version = self.version
        low, high = self.env.action_space.low, self.env.action_space.high
        buffer_action = (2.0 * (action - low) / (high - low) - 1.0).astype(np.float32)  # SB3's scale_action
        return action, buffer_action, version

    # ------------------------------------------------------------------ collection
    def collect(self, n_steps: int, version: int, weights: list[Any], random_actions: bool = False,
                flush: bool = False) -> tuple[dict[str, Any], RolloutBatch | None]:
        """Step the env ``n_steps`` times with policy ``version``; return ``(meta, batch)``.

        ``meta``: the runner's ``pid``, ``env_steps`` taken, ``shipped`` transitions in ``batch``, ``pending`` ones still
        waiting for a reward label, ``version`` used, ``error`` (None, or the env's exception as text)
        and ``lost_steps`` (steps an error cost: the failing step and unlabelled ones). ``flush`` waits
        for every pending label first (end of a run). ``batch`` is None when nothing is ready.
        """
        self.load_weights(version, weights)
        taken, error, lost = 0, None, 0
        try:
            for _ in range(int(n_steps)):
                if self._stop.is_set():
                    break
                self._step(random_actions)
                taken += 1
            if flush:
                self._flush_labels()
        except Exception as e:  # the env (or its reward) failed: report, close the env, let the driver restart us
            error = f"{type(e).__name__}: {e}"
            lost = 1 + len(self._pending)
            log.error("runner %d: env failed after %d steps of this batch; the in-flight episode is lost "
                      "(%d steps not sent):\n%s", self.index, taken, lost, traceback.format_exc())
            self._pending.clear()
            self._close_env()
        batch = self._take_batch()
        meta = {"runner": self.index, "pid": os.getpid(), "env_steps": taken, "shipped": batch.size if batch else 0,
                "pending": len(self._pending), "version": self.version, "error": error, "lost_steps": lost}
        return meta, batch

    def _step(self, random_actions: bool) -> None:
        if self._obs is None:
            self._reset()
        obs = self._obs
        action, buffer_action, version = self._act(obs, random_actions)
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        self._counter.step(info)
        self._record_scalars(info)
        takeover = {}
        if info.get(INTERVENTION_KEY):
            takeover = {k: np.asarray(info[k]) for k in (EXECUTED_ACTION_KEY, "base_action") if k in info}
            takeover[INTERVENTION_KEY] = True
        episode = self._episode
        item = _Transition(obs, next_obs, buffer_action, float(reward), bool(terminated), bool(truncated),
                           takeover, version, episode)
        ticket = info.get(TICKET_KEY)
        if ticket is None:
            self._mark_ready(item)
        else:
            self._pending[int(ticket)] = item
        if terminated or truncated:
            episode.length = self._counter.steps
            episode.rate, episode.takeover_steps, _ = self._counter.end_episode()
            episode.is_success = bool(info["is_success"]) if "is_success" in info else None
            episode.ended = True
            self._obs = None
            if ticket is None:
                self._finish_episode(episode)
        else:
            self._obs = next_obs
        if self.labeler is not None:
            self._apply_labels(self.labeler.poll())

    def _reset(self) -> None:
        if not self._seeded:
            self._obs, _ = self.env.reset(seed=self.seed)
            self._seeded = True
        else:
            self._obs, _ = self.env.reset()
        self._episode = _Episode()

    def _mark_ready(self, item: _Transition) -> None:
        self._ready.append(item)
        item.episode.ret += item.reward

    def _finish_episode(self, episode: _Episode) -> None:
        self._finished.append(EpisodeRecord(self.index, episode.length, episode.ret, episode.is_success,
                                            episode.rate, episode.takeover_steps))

    def _apply_labels(self, labels: list[Any]) -> None:
        """Write finished rewards into held-back transitions and release them (labels of one episode come in order)."""
        for label in labels:
            item = self._pending.pop(int(label.ticket), None)
            if item is None:
                continue
            item.reward = float(label.reward)
            item.terminated = item.terminated or bool(label.terminated)
            self._scalars.setdefault("reward/latency_ms", []).append(float(label.latency_ms))
            self._scalars.setdefault("reward/progress", []).append(float(label.progress))
            self._scalars.setdefault("reward/success_prob", []).append(float(label.success_prob))
            self._mark_ready(item)
            if item.episode.ended and not any(p.episode is item.episode for p in self._pending.values()):
                self._finish_episode(item.episode)

    def _flush_labels(self) -> None:
        deadline = time.monotonic() + _FLUSH_TIMEOUT_S
        while self._pending and self.labeler is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self._pending)} transitions still unlabelled after {_FLUSH_TIMEOUT_S:.0f} s; "
                                   "is the reward worker alive?")
            self._apply_labels(self.labeler.wait(left))

    def _record_scalars(self, info: Mapping[str, Any]) -> None:
        rlrm = info.get("rlrm")
        if not rlrm or not rlrm.get("queried", True) or rlrm.get("stale", False):
            return
        for name, key in (("reward/progress", "progress"), ("reward/success_prob", "success_prob")):
            value = rlrm.get(key)
            if isinstance(value, (int, float)) and np.isfinite(value):
                self._scalars.setdefault(name, []).append(float(value))

    def _take_batch(self) -> RolloutBatch | None:
        if self._reward_stats is not None:
            self._scalars.setdefault("reward/latency_ms", []).extend(self._reward_stats.drain())
        ready, self._ready = self._ready, []
        episodes, self._finished = self._finished, []
        scalars = {k: (float(np.sum(v)), len(v)) for k, v in self._scalars.items() if v}
        self._scalars = {}
        if not ready:
            return None
        return RolloutBatch(
            runner=self.index,
            obs=_stack([t.obs for t in ready]),
            next_obs=_stack([t.next_obs for t in ready]),
            actions=np.stack([t.action for t in ready]).astype(np.float32),
            rewards=np.array([t.reward for t in ready], np.float32),
            terminated=np.array([t.terminated for t in ready], bool),
            truncated=np.array([t.truncated for t in ready], bool),
            infos=[t.info for t in ready],
            versions=np.array([t.version for t in ready], np.int64),
            episodes=episodes,
            scalars=scalars,
        )

    # ------------------------------------------------------------------ evaluation and shutdown
    def evaluate(self, version: int | None, weights: list[Any], episodes: int, seed: int, video_dir: str | None = None,
                 video_episodes: int = 0, keep_final_frames: bool = False) -> dict[str, Any]:
        """Close the training env and run ``episodes`` deterministic episodes on a fresh one (synchronous reward).

        Same judging as a single-process run (:func:`rlrm.rl.evaluation.evaluate_policy`, ``final_frames``
        kept if asked); returns its metrics plus ``videos`` (paths of reward videos written to ``video_dir``).
        """
        from rlrm.rl.environment import make_env, wrap_with_reward
        from rlrm.rl.evaluation import evaluate_policy

        self.load_weights(version, weights)
        self._close_env()
        eval_env = wrap_with_reward(make_env(self.cfg), self.cfg, self.scorer, asynchronous=False)
        if video_episodes and video_dir:
            from rlrm.wrappers import RewardVideoRecorder

            every = max(1, -(-episodes // video_episodes))
            eval_env = RewardVideoRecorder(eval_env, video_dir, every_n_episodes=every, name_prefix="eval")
        try:
            metrics = evaluate_policy(self.policy, eval_env, episodes, seed=seed,
                                      obs_transform=self.obs_norm.normalize_obs if self.obs_norm is not None else None,
                                      keep_final_frames=keep_final_frames)
            metrics["videos"] = [str(v) for v in getattr(eval_env, "written", [])]
        finally:
            eval_env.close()
        return metrics

    def stop(self) -> None:
        """Stop now, from any thread: the current ``collect`` returns after its step; a robot halts (its stop path)."""
        self._stop.set()
        if self._env is None or self.env_closed:
            return
        robot_stop = getattr(self._env.unwrapped, "stop", None)
        if callable(robot_stop):
            robot_stop()

    def _close_env(self) -> None:
        self.env_closed = True
        try:
            self.env.close()
        except Exception:  # closing a broken env must not hide the error that broke it
            log.exception("runner %d: closing the env failed", self.index)

    def close(self) -> None:
        """Close the env (robots disconnect, which stops them) and the reward connection."""
        if self._env is not None and not self.env_closed:
            self._close_env()
        if self.scorer is not None:
            self.scorer.close()
