"""Batched Robometer rewards for gymnasium vector envs (no Stable-Baselines3 import).

* :class:`RobometerVecReward` - batched Robometer rewards for a gymnasium 1.x ``VectorEnv`` in
  ``AutoresetMode.NEXT_STEP`` (default) or ``DISABLED``; ``infos["rlrm"]`` as a dict of arrays.
  (``GymVecReward`` is the same class under its former name.)

Auto-reset notes are in :mod:`rlrm.wrappers.vector`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from rlrm.config import RewardConfig
from rlrm.shaping import Shaping, SuccessDetector
from rlrm.wrappers.pipeline import RewardPipeline
from rlrm.wrappers.vector import CoreAccess

__all__ = ["RobometerVecReward", "GymVecReward"]


_ARRAY_KEYS = ("progress", "success_prob", "success", "env_reward", "queried", "frames_sent",
               "reset_progress", "stale", "step")


def _stack_infos(per_env: list[dict | None]) -> tuple[dict[str, Any], np.ndarray]:
    """Per-env info dicts -> gymnasium's vector layout: a dict of arrays plus the mask of envs that stepped."""
    mask = np.array([d is not None for d in per_env])
    out: dict[str, Any] = {}
    for key in _ARRAY_KEYS:
        vals = [d[key] if d is not None and d[key] is not None else math.nan for d in per_env]
        out[key] = np.asarray(vals, dtype=bool if key in ("success", "queried", "stale") else None)
    term_names = next((list(d["reward_terms"]) for d in per_env if d is not None), [])
    out["reward_terms"] = {
        t: np.array([d["reward_terms"][t] if d is not None else 0.0 for d in per_env]) for t in term_names
    }
    out["votes"] = np.array([d["detector"]["votes"] if d is not None and d["detector"] else 0 for d in per_env])
    out["frame_index"] = [d["frame_index"] if d is not None else None for d in per_env]
    return out, mask


class RobometerVecReward(CoreAccess, gym.vector.VectorWrapper):
    """Robometer rewards for a gymnasium ``VectorEnv`` (``AutoresetMode.NEXT_STEP`` or ``DISABLED``), one
    batched request per vector step.

    Arguments mean what they mean for :class:`rlrm.wrappers.RobometerReward` (``task`` may also be one
    instruction per sub-env). ``infos["rlrm"]`` is a dict of per-env arrays (``progress``,
    ``success_prob``, ``success``, ``reward_terms``, ``votes``, ...) and ``infos["_rlrm"]`` marks the
    sub-envs that took a real step (False on a sub-env's auto-reset step, whose reward is 0). Success
    is detected and its bonus paid; ending episodes on success needs per-sub-env resets, which a
    gymnasium vector env does not offer a wrapper: use :class:`rlrm.wrappers.RobometerSB3VecReward`,
    or :class:`rlrm.wrappers.RobometerReward` on each sub-env. With render cameras
    (``camera=["front", "side"]``) the frames come from ``env.call("render_camera", name)``.

    >>> import gymnasium as gym
    >>> from rlrm.models import make_reward_model
    >>> venv = RobometerVecReward(gym.make_vec("CartPole-v1", num_envs=2, render_mode="rgb_array"),
    ...                           "balance the pole", make_reward_model("tiny"))
    >>> _ = venv.reset(seed=0)
    >>> obs, rewards, terms, truncs, infos = venv.step(venv.action_space.sample())
    >>> rewards.shape, infos["rlrm"]["progress"].shape
    ((2,), (2,))
    >>> venv.close()
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        task: str | Sequence[str] | None,
        source: Any,
        camera: str | Sequence[str] | None = None,
        max_frames: int = RewardConfig.max_frames,
        sampling: str = RewardConfig.sampling,
        every: int = RewardConfig.every,
        shaping: Shaping | None = None,
        success: SuccessDetector | None = SuccessDetector(),  # noqa: B008 - copied per sub-env
        on_timeout: str = RewardConfig.on_timeout,
        terminate_on_success: bool = RewardConfig.terminate_on_success,
        views: str = RewardConfig.views,
        when: str = RewardConfig.when,
    ) -> None:
        if not isinstance(env, gym.vector.VectorEnv):
            from_sb3 = any(c.__module__.startswith("stable_baselines3") for c in type(env).__mro__)
            hint = ("use rlrm.wrappers.RobometerSB3VecReward for a Stable-Baselines3 VecEnv" if from_sb3
                    else "use RobometerReward for a single env")
            raise TypeError(f"RobometerVecReward wraps a gymnasium VectorEnv, got {type(env).__name__}; {hint}")
        gym.vector.VectorWrapper.__init__(self, env)
        if terminate_on_success:
            raise ValueError(
                "terminate_on_success=True is not possible on a gymnasium VectorEnv: its sub-envs decide their own "
                "resets. Wrap each sub-env in RobometerReward (terminate_on_success=True) instead, or use an SB3 "
                "VecEnv with RobometerSB3VecReward, which can reset a succeeded sub-env itself"
            )
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        if mode not in (gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.DISABLED):
            raise ValueError(
                f"RobometerVecReward supports autoreset_mode NEXT_STEP (gymnasium's default) or DISABLED, got "
                f"{mode}; SAME_STEP replaces the last frame by the reset one before the wrapper sees it. Create "
                "the vector env with vector_kwargs={'autoreset_mode': gym.vector.AutoresetMode.NEXT_STEP}"
            )
        if camera is None and getattr(env, "render_mode", None) not in (None, "rgb_array"):
            raise ValueError(
                f"frames come from env.render(), which needs render_mode='rgb_array', got {env.render_mode!r}"
            )
        self._next_step_reset = mode == gym.vector.AutoresetMode.NEXT_STEP
        self.core = RewardPipeline(env.num_envs, task, source, camera, max_frames=max_frames, sampling=sampling,
                                   every=every, shaping=shaping, success=success, on_timeout=on_timeout,
                                   terminate_on_success=False, views=views, when=when)
        self._restarting = np.zeros(env.num_envs, dtype=bool)

    def _frames(self, obs: Any) -> list[np.ndarray]:
        if self.core.cameras is None:
            images = self.env.render()
            if images is None:
                images = [None] * self.num_envs
            return [self.core.frames.check(images[i], f"sub-env {i} env.render()") for i in range(self.num_envs)]
        return self.core.frames_from(obs, lambda name: self.env.call("render_camera", name), self.num_envs)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """Reset the sub-envs (all, or those in ``options["reset_mask"]``) and start their episodes."""
        mask = np.ones(self.num_envs, dtype=bool)
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)  # read first: the vector env pops it
        obs, infos = self.env.reset(seed=seed, options=options)
        for i, frame in enumerate(self._frames(obs)):
            if mask[i]:
                self.episodes[i].start(frame)
        self._restarting[mask] = False
        return obs, infos

    def step(self, actions):
        """Step all sub-envs, score all due episodes in one request, return shaped rewards."""
        obs, env_rewards, terminated, truncated, infos = self.env.step(actions)
        frames = self._frames(obs)
        restarting = self._restarting.copy()
        for i in np.flatnonzero(restarting):
            self.episodes[i].start(frames[i])
        dones = np.logical_or(terminated, truncated)
        rewards, per_env, _ = self.core.finish(frames, env_rewards, dones, restarting)
        # NEXT_STEP: finished sub-envs reset on the next step; DISABLED: the caller resets them with reset_mask
        self._restarting = dones & ~restarting if self._next_step_reset else np.zeros_like(dones)
        infos = dict(infos)
        infos["rlrm"], infos["_rlrm"] = _stack_infos(per_env)
        return obs, rewards.astype(np.float64), terminated, truncated, infos

    def close(self, **kwargs: Any) -> None:
        """Close the vector env, and the scorer if this wrapper created it."""
        try:
            self.env.close(**kwargs)
        finally:
            self.core.close()


GymVecReward = RobometerVecReward  # the name before the vector wrappers became sibling classes
