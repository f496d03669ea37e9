"""Asynchronous Robometer rewards: the env steps at its own rate, rewards are filled in later.

* :class:`AsyncRobometerReward` - env wrapper holding the one :class:`~rlrm.wrappers.pipeline.RewardPipeline`
  that :class:`~rlrm.wrappers.RobometerReward` holds, completed when answers arrive: each step sends its
  query in the background, returns a placeholder reward and puts a ticket in ``info["rlrm_ticket"]``
  (:data:`TICKET_KEY`). Same arguments as the synchronous wrapper.
* :class:`AsyncRewardLabeler`, :class:`StepLabel` - the completion side (defined in
  :mod:`rlrm.wrappers.pipeline`): finished steps in step order, each with its reward, termination and
  the ``info["rlrm"]`` the synchronous wrapper would have published for it.

Conventions are those of the synchronous wrapper, because it is the same pipeline: the reward at step t
uses p_t, the value at the current frame; p_{-1} is the reset frame's value; the success bonus is paid on
the step the detector first fires; with ``terminate_on_success`` that step (only that one) is labelled
terminal and pays the value of staying in success; ``success=None`` means no detection.

On a real robot the model takes longer than a control step (hundreds of ms for the 4B
model); waiting would slow the control loop to the model's rate. Here the loop keeps its
rate and the relabelling replay buffer (:mod:`rlrm.rl.relabel_buffer`) writes each reward
when it arrives; learning only samples labelled transitions.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from rlrm.config import RewardConfig
from rlrm.shaping import Shaping, SuccessDetector
from rlrm.wrappers.pipeline import AsyncRewardLabeler, PipelineAccess, RewardPipeline, StepLabel
from rlrm.wrappers.reward import resolve_task

__all__ = ["StepLabel", "AsyncRewardLabeler", "AsyncRobometerReward", "TICKET_KEY"]

TICKET_KEY = "rlrm_ticket"  # info key of a step's ticket; the relabelling replay buffer reads it


class AsyncRobometerReward(PipelineAccess, gym.Wrapper):
    """Score every step in the background; return a placeholder reward and a ticket.

    ``reset`` starts the episode's frames with the reset frame; each ``step`` appends the new frame and,
    on query steps (as :class:`rlrm.wrappers.RobometerReward`: 0, every, 2*every, ... and the env's last),
    sends the sampled frames with ``scorer.score_async`` (or ``score_deferred``: a
    :class:`~rlrm.transport.RewardClient` gathers, encodes and sends on its I/O thread) and returns reward
    ``placeholder`` at once, with ``info["rlrm_ticket"]``. Rewards, terminations and each step's
    ``info["rlrm"]`` arrive through :attr:`labeler` (consumed by the relabelling replay buffer). The env's
    own termination and truncation pass through unchanged.

    Args:
        env, task, source, camera, views, max_frames, sampling, every, when, shaping, success, terminate_on_success,
            on_timeout, timing_in_info: as for :class:`rlrm.wrappers.RobometerReward` (the same pipeline).
        placeholder: reward returned by ``step`` until the real one is known.

    >>> import gymnasium as gym, envs
    >>> from rlrm.models import make_reward_model
    >>> env = AsyncRobometerReward(gym.make("rlrm/FetchReach-v0", image_size=64), None,
    ...                            source=make_reward_model("tiny"))
    >>> _ = env.reset(seed=0)
    >>> _, r, *_, info = env.step(env.action_space.sample())
    >>> r, info["rlrm_ticket"]
    (0.0, 0)
    >>> sorted(env.labeler.wait(timeout_s=60)[0].info)[:3]
    ['detector', 'env_reward', 'frame_index']
    >>> env.close()
    """

    def __init__(
        self,
        env: gym.Env,
        task: str | None,
        source: Any,
        camera: str | list[str] | None = None,
        max_frames: int = RewardConfig.max_frames,
        sampling: str = RewardConfig.sampling,
        every: int = RewardConfig.every,
        shaping: Shaping | None = None,
        success: SuccessDetector | None = SuccessDetector(),  # noqa: B008 - copied per episode, never mutated
        terminate_on_success: bool = RewardConfig.terminate_on_success,
        on_timeout: str = RewardConfig.on_timeout,
        timing_in_info: bool = False,
        views: str = RewardConfig.views,
        placeholder: float = 0.0,
        when: str = RewardConfig.when,
    ) -> None:
        super().__init__(env)
        self.pipeline = RewardPipeline(
            1, resolve_task(env, task), source, camera, env=env, max_frames=max_frames, sampling=sampling,
            every=every, shaping=shaping, success=success, terminate_on_success=terminate_on_success,
            on_timeout=on_timeout, views=views, timing_in_info=timing_in_info, name="async", when=when,
        )
        self.placeholder = float(placeholder)
        self._started = False

    @property
    def labeler(self) -> AsyncRewardLabeler:
        """Where finished steps come out (:class:`~rlrm.wrappers.pipeline.AsyncRewardLabeler`)."""
        return self.pipeline.labeler

    def reset(self, **kwargs):
        """Reset the env and start a new episode of frames with the reset frame."""
        obs, info = self.env.reset(**kwargs)
        self.pipeline.start(0, self.frame_source.read(obs))
        self._started = True
        return obs, info

    def step(self, action):
        """Step the env, send the step's query in the background, return the placeholder reward."""
        if not self._started:
            raise RuntimeError("Cannot call env.step() before calling env.reset()")
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        ticket = self.pipeline.submit(0, self.frame_source.read(obs), float(env_reward), terminated or truncated)
        info = dict(info)
        info[TICKET_KEY] = ticket
        return obs, self.placeholder, terminated, truncated, info

    def close(self) -> None:
        """Close the env, and the scorer if this wrapper created it."""
        try:
            super().close()
        finally:
            self.pipeline.close()
