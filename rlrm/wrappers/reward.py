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
from rlrm.wrappers.pipeline import PipelineAccess, RewardPipeline

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


class RobometerReward(PipelineAccess, gym.Wrapper, gym.utils.RecordConstructorArgs):
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
        when: ``"prefix"`` (query on the ``every`` schedule), ``"episode_end"`` (only on the env's last step:
            one score per episode, paid as its final reward) or ``"auto"`` (the model's own: RoboReward
            scores episode ends, Robometer prefixes).
        shaping: :class:`rlrm.shaping.Shaping`.
        success: :class:`rlrm.shaping.SuccessDetector` (copied per wrapper) or None to not detect
            success here (e.g. to put :class:`SuccessTermination` on top).
        terminate_on_success: return ``terminated=True`` on detection (ignored when ``success`` is None); that
            step pays the value of staying in success (:meth:`rlrm.shaping.Shaping.stay_value`), so set
            ``shaping.gamma`` to the algorithm's discount. Off by default (``rlrm.config.RewardConfig``).
        on_timeout: ``"raise"`` (default) or ``"hold"``: keep the last progress, flag ``info["rlrm"]["stale"]``.
        timing_in_info: also put the query latency in ``info["rlrm"]["latency_ms"]`` (off by default:
            step infos stay reproducible bit for bit, which gymnasium's ``check_env`` checks); latencies
            are always in :attr:`reward_stats` (and TensorBoard through ``RewardLoggingCallback``).

    Notes:
        ``info["rlrm"]`` each step: ``progress`` (p_t), ``success_prob``, ``success`` (latched),
        ``detector`` (votes, window, ...), ``reward_terms``, ``env_reward``, ``queried``, ``frames_sent`` and ``frame_index`` (episode steps sent this step,
        the reset frame is 0; also set when the query timed out), ``reset_progress`` (p_{-1}), ``stale``, ``step``,
        ``version`` (the reward-model version of the latest answer; None when the source does not say).
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
        when: str = RewardConfig.when,
    ) -> None:
        # no deepcopy: source may be a model or a live client
        gym.utils.RecordConstructorArgs.__init__(
            self, _disable_deepcopy=True, task=task, source=source, camera=camera, max_frames=max_frames,
            sampling=sampling, every=every, shaping=shaping, success=success, terminate_on_success=terminate_on_success,
            on_timeout=on_timeout, timing_in_info=timing_in_info, views=views, when=when,
        )
        gym.Wrapper.__init__(self, env)
        self.pipeline = RewardPipeline(
            1, resolve_task(env, task), source, camera, env=env, max_frames=max_frames, sampling=sampling,
            every=every, shaping=shaping, success=success, terminate_on_success=terminate_on_success,
            on_timeout=on_timeout, views=views, timing_in_info=timing_in_info, when=when,
            name=getattr(env.spec, "id", None) or type(env.unwrapped).__name__,
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the env and start a new frame buffer with the reset frame."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.pipeline.start(0, self.frame_source.read(obs))
        return obs, info

    def step(self, action):
        """Step the env, score the episode's frames if due, and return the shaped reward."""
        if len(self.episode_reward.buffer) == 0:
            raise RuntimeError("Cannot call env.step() before calling env.reset()")
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        rewards, infos, terminate = self.pipeline.finish([self.frame_source.read(obs)], [env_reward],
                                                         [terminated or truncated], [False])
        info = dict(info)
        info["rlrm"] = infos[0]
        return obs, float(rewards[0]), terminated or bool(terminate[0]), truncated, info

    def close(self) -> None:
        """Close the env, and the scorer if this wrapper created it."""
        try:
            super().close()
        finally:
            self.pipeline.close()
