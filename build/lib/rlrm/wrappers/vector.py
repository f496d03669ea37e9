"""Robometer rewards for vectorised envs, with one batched reward request per vector step.

* :class:`CoreAccess` - read-only views of the :class:`~rlrm.wrappers.pipeline.RewardPipeline` both
  vector wrappers hold (``self.core``; :data:`VecRewardCore` is its former name): one task and one
  :class:`rlrm.wrappers.episode.EpisodeReward` per sub-env, the frames of each sub-env (one camera or
  several tiled), and one batched ``scorer.score`` call per vector step for all sub-envs due for a
  query. Rewards equal those of :class:`RobometerReward` on each sub-env alone (the same pipeline).

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
(``terminate_on_success=True``; off by default, as everywhere) works on SB3 ``VecEnv`` only: the wrapper
sets ``dones[i]``, puts the observation in ``infos[i]["terminal_observation"]`` and resets the
sub-env itself (``env_method("reset")``), exactly as SB3's auto-reset would. A gymnasium
``VectorEnv`` gives a wrapper no way to reset one sub-env in NEXT_STEP mode, so there wrap each
sub-env in :class:`RobometerReward` (or :class:`SuccessTermination`) instead.
"""

from __future__ import annotations

from rlrm.wrappers.episode import EpisodeReward, RewardStats
from rlrm.wrappers.pipeline import RewardPipeline

__all__ = ["VecRewardCore", "CoreAccess"]



VecRewardCore = RewardPipeline
"""The pipeline both vector wrappers hold (the name before every wrapper held a :class:`RewardPipeline`)."""


class CoreAccess:
    """Read-only views of a vector wrapper's :class:`VecRewardCore` (``self.core``), shared by both wrappers."""

    core: RewardPipeline

    @property
    def episodes(self) -> list[EpisodeReward]:
        """The :class:`rlrm.wrappers.episode.EpisodeReward` of each sub-env."""
        return self.core.episodes

    @property
    def scorer(self):  # noqa: ANN201 - any scorer
        """The scorer all sub-envs share."""
        return self.core.scorer

    @property
    def reward_stats(self) -> RewardStats:
        """Query counts and latencies (:class:`rlrm.wrappers.episode.RewardStats`)."""
        return self.core.reward_stats
