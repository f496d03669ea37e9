"""Robometer rewards for vectorised envs, with one batched reward request per vector step.

* :class:`RobometerVecReward` - wraps a gymnasium ``VectorEnv`` or a Stable-Baselines3
  ``VecEnv`` (returns a :class:`rlrm.wrappers.vector_gym.GymVecReward` or a
  :class:`rlrm.wrappers.vector_sb3.SB3VecReward`, both built on it); every sub-env keeps its own
  episode (:class:`rlrm.wrappers.episode.EpisodeReward`) and all sub-envs due for a query are
  scored in one ``scorer.score`` call. Rewards equal those of :class:`RobometerReward` on each
  sub-env alone.
  The shared part lives here: task per sub-env, episode state, one batched scorer call.

Auto-reset:

* gymnasium 1.x ``AutoresetMode.NEXT_STEP`` (the default): a finished episode is scored with its
  last frame on the step that ends it; on the next step the sub-env resets, that step's frame
  starts the new episode and its reward is 0 (``infos["_rlrm"]`` is False there).
  ``DISABLED``: the caller resets finished sub-envs with ``reset(options={"reset_mask": mask})``,
  which restarts only those episodes. ``SAME_STEP`` is refused (the terminal frame is gone by then).
* SB3 ``VecEnv`` (auto-reset inside ``step``): the terminal frame comes from
  ``infos[i]["terminal_observation"][camera]``, or with ``camera=None`` from
  ``infos[i]["rlrm_frame"]`` (sub-envs wrapped in :class:`rlrm.wrappers.FrameInInfo`); the new episode starts
  from ``venv.reset_infos[i]["rlrm_frame"]`` / the returned observation.

Success is detected per sub-env and its bonus paid once. Ending the episode on success
(``terminate_on_success=True``, default False here) works on SB3 ``VecEnv`` only: the wrapper
sets ``dones[i]``, puts the observation in ``infos[i]["terminal_observation"]`` and resets the
sub-env itself (``env_method("reset")``), exactly as SB3's auto-reset would. A gymnasium
``VectorEnv`` gives a wrapper no way to reset one sub-env in NEXT_STEP mode, so there wrap each
sub-env in :class:`RobometerReward` (or :class:`SuccessTermination`) instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from rlrm.shaping import Shaping, SuccessDetector
from rlrm.wrappers.episode import ON_TIMEOUT, EpisodeReward, score_timed
from rlrm.wrappers.frames import FrameSource
from rlrm.wrappers.reward import open_scorer

__all__ = ["RobometerVecReward"]

log = logging.getLogger(__name__)


class RobometerVecReward:
    """Robometer rewards for all sub-envs of a vector env, scored in one batched request per step.

    ``RobometerVecReward(venv, ...)`` returns a :class:`GymVecReward` for a gymnasium
    ``VectorEnv`` and an :class:`SB3VecReward` for a Stable-Baselines3 ``VecEnv``; arguments
    mean what they mean for :class:`RobometerReward` (``task`` may also be one instruction per
    sub-env). Success is detected and its bonus paid; ``terminate_on_success=True`` also ends the
    sub-env's episode, on SB3 ``VecEnv`` only (see the module notes).

    >>> import gymnasium as gym
    >>> from rlrm.models import make_reward_model
    >>> venv = gym.make_vec("CartPole-v1", num_envs=2, render_mode="rgb_array")
    >>> venv = RobometerVecReward(venv, "balance the pole", make_reward_model("tiny"))
    >>> _ = venv.reset(seed=0)
    >>> obs, rewards, terms, truncs, infos = venv.step(venv.action_space.sample())
    >>> rewards.shape, infos["rlrm"]["progress"].shape
    ((2,), (2,))
    >>> venv.close()
    """

    def __new__(cls, venv: Any, *args: Any, **kwargs: Any):
        if cls is RobometerVecReward:
            from stable_baselines3.common.vec_env import VecEnv

            if isinstance(venv, gym.vector.VectorEnv):
                from rlrm.wrappers.vector_gym import GymVecReward as cls
            elif isinstance(venv, VecEnv):
                from rlrm.wrappers.vector_sb3 import SB3VecReward as cls
            else:
                raise TypeError(
                    f"RobometerVecReward wraps a gymnasium VectorEnv or an SB3 VecEnv, got {type(venv).__name__}; "
                    "use RobometerReward for a single env"
                )
        return super().__new__(cls)

    def _setup_rewards(
        self,
        venv: Any,
        num_envs: int,
        task: str | Sequence[str] | None,
        source: Any,
        camera: str | None,
        max_frames: int,
        sampling: str,
        every: int,
        shaping: Shaping | None,
        success: SuccessDetector | None,
        on_timeout: str,
    ) -> None:
        if on_timeout not in ON_TIMEOUT:
            raise ValueError(f"on_timeout must be one of {ON_TIMEOUT}, got {on_timeout!r}")
        tasks = self._resolve_tasks(venv, task, num_envs)
        self.camera = camera
        self.on_timeout = on_timeout
        self.frame_source = FrameSource(venv, camera)
        self.episodes = [
            EpisodeReward(
                tasks[i],
                max_frames=max_frames,
                sampling=sampling,
                every=every,
                shaping=shaping if shaping is not None else Shaping(),
                success=success,
                name=f"env{i}",
            )
            for i in range(num_envs)
        ]
        self.scorer, self._owns_scorer = open_scorer(source)

    @staticmethod
    def _resolve_tasks(venv: Any, task: Any, num_envs: int) -> list[str]:
        if isinstance(task, str):
            return [task] * num_envs
        if task is None:
            raise ValueError("task is required for vector envs: one instruction, or one per sub-env")
        tasks = list(task)
        if len(tasks) != num_envs:
            raise ValueError(f"task must be one instruction or {num_envs} (one per sub-env), got {len(tasks)}")
        return tasks

    def _score_due(self, due: list[int]) -> tuple[dict[int, Any], float | None, bool]:
        """One batched scorer call for the episodes in ``due``; returns per-env results, latency, stale."""
        if not due:
            return {}, None, False
        spans, batch = [], []
        for i in due:
            queries = self.episodes[i].queries()
            spans.append((i, len(batch), len(batch) + len(queries)))
            batch.extend(queries)
        results, latency_ms = score_timed(self.scorer, batch, self.on_timeout)
        if results is None:
            return {i: None for i in due}, latency_ms, True
        return {i: results[a:b] for i, a, b in spans}, latency_ms, False

    def _finish(self, frames_after: list[np.ndarray | None], env_rewards: np.ndarray, dones: np.ndarray,
                restarting: np.ndarray) -> tuple[np.ndarray, list[dict | None], np.ndarray]:
        """Add frames, score due episodes in one batch; returns shaped rewards, per-env info, newly detected."""
        n = len(self.episodes)
        due = []
        for i in range(n):
            if restarting[i]:
                continue
            self.episodes[i].add_frame(frames_after[i])
            if self.episodes[i].wants_query(bool(dones[i])):
                due.append(i)
        results, latency_ms, stale = self._score_due(due)
        rewards = np.zeros(n, dtype=np.float32)
        newly = np.zeros(n, dtype=bool)
        infos: list[dict | None] = [None] * n
        for i in range(n):
            if restarting[i]:
                continue
            queried = i in results
            rewards[i], infos[i], newly[i] = self.episodes[i].finish_step(
                float(env_rewards[i]), results.get(i), latency_ms if queried else None, stale and queried
            )
        return rewards, infos, newly

    def _close_scorer(self) -> None:
        if self._owns_scorer:
            self.scorer.close()
