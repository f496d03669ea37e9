"""Robometer rewards for vectorised envs, with one batched reward request per vector step.

* :class:`VecRewardCore` - the part both vector wrappers share (they hold one, they do not inherit
  it): one task and one :class:`rlrm.wrappers.episode.EpisodeReward` per sub-env, the frames of
  each sub-env (one camera or several tiled), and one batched ``scorer.score`` call per vector
  step for all sub-envs due for a query. Rewards equal those of :class:`RobometerReward` on each
  sub-env alone.

The wrappers are plain sibling classes, as gymnasium keeps its vector wrappers:
:class:`rlrm.wrappers.vector_gym.RobometerVecReward` for a gymnasium ``VectorEnv`` and
:class:`rlrm.wrappers.vector_sb3.RobometerSB3VecReward` for a Stable-Baselines3 ``VecEnv``
(only that one imports SB3).

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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rlrm.config import RewardConfig
from rlrm.shaping import Shaping, SuccessDetector
from rlrm.views import ViewMeanScorer, check_views
from rlrm.wrappers.episode import ON_TIMEOUT, EpisodeReward, RewardStats, score_timed
from rlrm.wrappers.frames import FrameSource, frame_from_observation
from rlrm.wrappers.reward import open_scorer

__all__ = ["VecRewardCore", "CoreAccess"]

log = logging.getLogger(__name__)


class VecRewardCore:
    """Reward state of every sub-env of a vector env, and the one batched scorer call per step.

    Args:
        num_envs: sub-envs.
        task: one instruction, or one per sub-env.
        source / max_frames / sampling / every / shaping / success / on_timeout / views: as for
            :class:`rlrm.wrappers.RobometerReward`.
        camera: None (the wrapper renders), or observation keys / render cameras (tiled).
        terminate_on_success: episodes report termination on the detection step.
    """

    def __init__(
        self,
        num_envs: int,
        task: str | Sequence[str] | None,
        source: Any,
        camera: str | Sequence[str] | None,
        max_frames: int,
        sampling: str,
        every: int,
        shaping: Shaping | None,
        success: SuccessDetector | None,
        on_timeout: str,
        terminate_on_success: bool = RewardConfig.terminate_on_success,
        views: str = RewardConfig.views,
    ) -> None:
        if on_timeout not in ON_TIMEOUT:
            raise ValueError(f"on_timeout must be one of {ON_TIMEOUT}, got {on_timeout!r}")
        tasks = self._resolve_tasks(task, num_envs)
        # checks and tiles every sub-env's frames as a single env's FrameSource does (the wrapper reads them)
        self.frames = FrameSource(None, camera)
        self.views = check_views(views)
        self.on_timeout = on_timeout
        self.episodes = [
            EpisodeReward(
                tasks[i],
                max_frames=max_frames,
                sampling=sampling,
                every=every,
                shaping=shaping if shaping is not None else Shaping(),
                success=success,
                name=f"env{i}",
                terminate_on_success=terminate_on_success,
            )
            for i in range(num_envs)
        ]
        self.scorer, self._owns_scorer = open_scorer(source)
        if self.views == "mean" and self.cameras and len(self.cameras) > 1:
            self.scorer = ViewMeanScorer(self.scorer, lambda: self.frames.view_widths, owns=self._owns_scorer)
        self.reward_stats = RewardStats()
        self.timing_in_info = False

    @staticmethod
    def _resolve_tasks(task: Any, num_envs: int) -> list[str]:
        if isinstance(task, str):
            return [task] * num_envs
        if task is None:
            raise ValueError("task is required for vector envs: one instruction, or one per sub-env")
        tasks = list(task)
        if len(tasks) != num_envs:
            raise ValueError(f"task must be one instruction or {num_envs} (one per sub-env), got {len(tasks)}")
        return tasks

    @property
    def cameras(self) -> list[str] | None:
        """The camera names (None: the wrapper renders)."""
        return self.frames.cameras

    def frames_from(self, obs: Any, render_camera: Callable[[str], Sequence[np.ndarray]], num_envs: int,
                    ) -> list[np.ndarray]:
        """Per-sub-env frames for ``self.cameras``: batched observation keys, else ``render_camera(name)``."""
        per_camera = []
        for name in self.cameras or []:
            try:
                images = frame_from_observation(obs, name)
            except (KeyError, ValueError):
                images = render_camera(name)
            per_camera.append(images)
        return [self.frames.tile([np.asarray(images[i]) for images in per_camera], f"sub-env {i} cameras {self.cameras}")
                for i in range(num_envs)]

    def _score_due(self, due: list[int]) -> tuple[dict[int, Any], float | None]:
        """One batched scorer call for the episodes in ``due``; returns per-env (step query, results)."""
        if not due:
            return {}, None
        spans, batch = [], []
        for i in due:
            step_query = self.episodes[i].queries()
            spans.append((i, step_query, len(batch), len(batch) + len(step_query.queries)))
            batch.extend(step_query.queries)
        results, latency_ms = score_timed(self.scorer, batch, self.on_timeout)
        self.reward_stats.record(latency_ms, timed_out=results is None)
        if results is None:
            return {i: (sq, None) for i, sq, _, _ in spans}, latency_ms
        return {i: (sq, results[a:b]) for i, sq, a, b in spans}, latency_ms

    def finish(self, frames_after: list[np.ndarray | None], env_rewards: np.ndarray, dones: np.ndarray,
               restarting: np.ndarray) -> tuple[np.ndarray, list[dict | None], np.ndarray]:
        """Add frames, score due episodes in one batch; returns shaped rewards, per-env info, terminate flags."""
        n = len(self.episodes)
        due = []
        for i in range(n):
            if restarting[i]:
                continue
            self.episodes[i].add_frame(frames_after[i])
            if self.episodes[i].wants_query(bool(dones[i])):
                due.append(i)
        results, latency_ms = self._score_due(due)
        rewards = np.zeros(n, dtype=np.float32)
        terminate = np.zeros(n, dtype=bool)
        infos: list[dict | None] = [None] * n
        for i in range(n):
            if restarting[i]:
                continue
            step_query, answer = results.get(i, (None, None))
            outcome, infos[i] = self.episodes[i].finish_step(float(env_rewards[i]), step_query, answer)
            rewards[i], terminate[i] = outcome.reward, outcome.terminate
            if self.timing_in_info:
                infos[i]["latency_ms"] = latency_ms if step_query is not None else None
        return rewards, infos, terminate

    def close(self) -> None:
        """Close the scorer if the core created it."""
        if self._owns_scorer:
            self.scorer.close()


class CoreAccess:
    """Read-only views of a vector wrapper's :class:`VecRewardCore` (``self.core``), shared by both wrappers."""

    core: VecRewardCore

    @property
    def episodes(self) -> list[EpisodeReward]:
        """The :class:`rlrm.wrappers.episode.EpisodeReward` of each sub-env."""
        return self.core.episodes

    @property
    def scorer(self) -> Any:
        """The scorer all sub-envs share."""
        return self.core.scorer

    @property
    def reward_stats(self) -> RewardStats:
        """Query counts and latencies (:class:`rlrm.wrappers.episode.RewardStats`)."""
        return self.core.reward_stats
