"""The single-env Robometer reward wrapper.

* :class:`RobometerReward` - replaces a gymnasium env's reward with a shaped Robometer
  reward computed from the episode's frames, detects success (optionally terminating), and
  publishes everything in ``info["rlrm"]``.
* :func:`resolve_task` - the instruction text: given, or read from ``env.unwrapped.task``.
"""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym

from rlrm.config import RewardConfig
from rlrm.shaping import Shaping, SuccessDetector
from rlrm.views import ViewMeanScorer, check_views
from rlrm.wrappers.episode import ON_TIMEOUT, EpisodeReward, RewardStats, score_timed
from rlrm.wrappers.frames import FrameBuffer, FrameSource

__all__ = ["RobometerReward", "resolve_task", "open_scorer"]

log = logging.getLogger(__name__)


def resolve_task(env: Any, task: str | None) -> str:
    """``task`` if given, else the env's own instruction ``env.unwrapped.task`` (rlrm's sim and robot envs set it)."""
    if task is not None:
        return task
    found = getattr(getattr(env, "unwrapped", env), "task", None)
    if not isinstance(found, str) or not found.strip():
        raise ValueError(
            "task=None needs the env to carry its instruction in env.unwrapped.task, but it has "
            f"{found!r}; pass task='<instruction>' explicitly"
        )
    return found


def open_scorer(source: Any) -> tuple[Any, bool]:
    """Resolve ``source`` with :func:`rlrm.transport.make_scorer`; returns ``(scorer, owned)``.

    ``owned`` is True when the scorer was created here (from a URL or a model), so the wrapper
    closes it on ``close()``; a scorer passed in stays the caller's to close. A worker URL is pinged
    here (5 s in all), so a dead worker fails at construction, not minutes into the first ``step()``.
    """
    from rlrm.transport import make_scorer

    scorer = make_scorer(source)
    if isinstance(source, str):
        try:
            scorer.wait_until_answering(5000.0)
        except TimeoutError:
            scorer.close()
            raise
    return scorer, scorer is not source


class RobometerReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Replaces the env's reward with a Robometer reward computed from the episode's frames.

    ``reset`` starts a frame buffer with the reset frame. Each ``step`` appends the new frame
    (from ``env.render()`` or ``obs[camera]``); on query steps (0, every, 2*every, ... and the
    env's final step) it sends the sampled frames (``sampling="prefix"``: first, current and a
    linspace between, <= ``max_frames``; ``"window"``: the last ``max_frames``) to the reward
    model and uses the value at the current frame, p_t. The returned reward is
    ``Shaping.reward``; the env's own reward is kept in ``info["rlrm"]["env_reward"]``. With a
    ``success`` detector, success is detected from fresh success probabilities, the bonus is
    paid once, and ``terminated=True`` is returned if ``terminate_on_success``.

    >>> import gymnasium as gym
    >>> from rlrm.models import make_reward_model
    >>> env = RobometerReward(gym.make("CartPole-v1", render_mode="rgb_array"),
    ...                       task="balance the pole", source=make_reward_model("tiny"))
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(0)
    >>> sorted(info["rlrm"])[:4]
    ['detector', 'env_reward', 'frame_index', 'frames_sent']
    >>> env.close()

    Args:
        env: any gymnasium env that renders ``rgb_array`` frames or has an image in its dict observation.
        task: the instruction, e.g. ``"move the gripper to the red target"``; None reads ``env.unwrapped.task``.
        source: a worker URL (``"tcp://host:5555"``), a ``RewardClient``, a ``RewardModel``, or any scorer
            (see :func:`rlrm.transport.make_scorer`).
        camera: None for ``env.render()``; an image key of the dict observation (``"a/b"`` for nested) or a
            render camera of the env (``env.unwrapped.render_camera(name)``, e.g. Fetch's ``"front"``); or a
            list of them, e.g. ``["front", "side"]``: the views are tiled side by side into one frame.
        views: with several cameras, ``"tile"`` scores the tiled frame as one video (the common practice
            for single-video reward models); ``"mean"`` scores each view as its own query (in one batch),
            averages progress and soft-votes success (mean probability). Videos show the tiled frame either way.
        max_frames: most frames per query (the model's training length, 8 for Robometer).
        sampling: ``"prefix"`` or ``"window"``.
        every: query every ``every`` steps and hold progress in between.
        shaping: :class:`rlrm.shaping.Shaping`.
        success: :class:`rlrm.shaping.SuccessDetector` (copied per wrapper) or None to not detect
            success here (e.g. to put :class:`SuccessTermination` on top).
        terminate_on_success: return ``terminated=True`` on detection (ignored when ``success`` is None).
        on_timeout: ``"raise"`` (default) or ``"hold"``: keep the last progress, flag ``info["rlrm"]["stale"]``.
        timing_in_info: also put the query latency in ``info["rlrm"]["latency_ms"]`` (off by default:
            step infos stay reproducible bit for bit, which gymnasium's ``check_env`` checks); latencies
            are always in :attr:`reward_stats` (and TensorBoard through ``RewardLoggingCallback``).

    Notes:
        ``info["rlrm"]`` each step: ``progress`` (p_t), ``success_prob``, ``success`` (latched),
        ``detector`` (votes, window, ...), ``reward_terms``, ``env_reward``, ``queried``, ``frames_sent`` and ``frame_index`` (episode steps sent this step,
        the reset frame is 0; also set when the query timed out), ``reset_progress`` (p_{-1}), ``stale``, ``step``.
        ``delta`` rewards sum over an episode to ``progress`` at the end minus ``reset_progress``.
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
        success: SuccessDetector | None = SuccessDetector(),  # noqa: B008 - copied per wrapper, never mutated
        terminate_on_success: bool = RewardConfig.terminate_on_success,
        on_timeout: str = RewardConfig.on_timeout,
        timing_in_info: bool = False,
        views: str = RewardConfig.views,
    ) -> None:
        # no deepcopy: source may be a model or a live client
        gym.utils.RecordConstructorArgs.__init__(
            self, _disable_deepcopy=True, task=task, source=source, camera=camera, max_frames=max_frames,
            sampling=sampling, every=every, shaping=shaping, success=success, terminate_on_success=terminate_on_success,
            on_timeout=on_timeout, timing_in_info=timing_in_info, views=views,
        )
        gym.Wrapper.__init__(self, env)
        if on_timeout not in ON_TIMEOUT:
            raise ValueError(f"on_timeout must be one of {ON_TIMEOUT}, got {on_timeout!r}")
        self.frame_source = FrameSource(env, camera)
        self.episode_reward = EpisodeReward(
            resolve_task(env, task),
            max_frames=max_frames,
            sampling=sampling,
            every=every,
            shaping=shaping if shaping is not None else Shaping(),
            success=success,
            name=getattr(env.spec, "id", None) or type(env.unwrapped).__name__,
            terminate_on_success=terminate_on_success,
        )
        self.terminate_on_success = bool(terminate_on_success) and success is not None
        self.reward_stats = RewardStats()
        self.on_timeout = on_timeout
        self.timing_in_info = bool(timing_in_info)
        self.scorer, self._owns_scorer = open_scorer(source)
        self.views = check_views(views)
        if views == "mean" and self.frame_source.cameras and len(self.frame_source.cameras) > 1:
            self.scorer = ViewMeanScorer(self.scorer, lambda: self.frame_source.view_widths, owns=self._owns_scorer)

    @property
    def task(self) -> str:
        """The instruction sent with every query."""
        return self.episode_reward.task

    @property
    def frame_buffer(self) -> FrameBuffer:
        """This episode's frames (reset frame first); read by :class:`RewardVideoRecorder`."""
        return self.episode_reward.buffer

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the env and start a new frame buffer with the reset frame."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.episode_reward.start(self.frame_source.read(obs))
        return obs, info

    def step(self, action):
        """Step the env, score the episode's frames if due, and return the shaped reward."""
        if len(self.episode_reward.buffer) == 0:
            raise RuntimeError("Cannot call env.step() before calling env.reset()")
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        ep = self.episode_reward
        ep.add_frame(self.frame_source.read(obs))
        step_query = results = latency_ms = None
        if ep.wants_query(terminated or truncated):
            step_query = ep.queries()
            results, latency_ms = score_timed(self.scorer, step_query.queries, self.on_timeout)
            self.reward_stats.record(latency_ms, timed_out=results is None)
        outcome, rlrm_info = ep.finish_step(float(env_reward), step_query, results)
        if self.timing_in_info:
            rlrm_info["latency_ms"] = latency_ms
        info = dict(info)
        info["rlrm"] = rlrm_info
        return obs, outcome.reward, terminated or outcome.terminate, truncated, info

    def close(self) -> None:
        """Close the env, and the scorer if this wrapper created it."""
        try:
            super().close()
        finally:
            if self._owns_scorer:
                self.scorer.close()
