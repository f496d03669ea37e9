"""The gymnasium ``VectorEnv`` side of :class:`rlrm.wrappers.RobometerVecReward`.

* :class:`GymVecReward` - batched Robometer rewards for a gymnasium 1.x ``VectorEnv`` in
  ``AutoresetMode.NEXT_STEP`` (default) or ``DISABLED``; ``infos["rlrm"]`` as a dict of arrays.

Auto-reset notes are in :mod:`rlrm.wrappers.vector`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from rlrm.shaping import Shaping, SuccessDetector
from rlrm.wrappers.frames import frame_from_observation
from rlrm.wrappers.vector import RobometerVecReward

__all__ = ["GymVecReward"]


_ARRAY_KEYS = ("progress", "success_prob", "success", "env_reward", "latency_ms", "queried", "frames_sent",
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


class GymVecReward(RobometerVecReward, gym.vector.VectorWrapper):
    """:class:`RobometerVecReward` for gymnasium ``VectorEnv`` in ``AutoresetMode.NEXT_STEP`` or ``DISABLED``.

    ``infos["rlrm"]`` is a dict of per-env arrays (``progress``, ``success_prob``, ``success``,
    ``reward_terms``, ``votes``, ...) and ``infos["_rlrm"]`` marks the sub-envs that took a real
    step (False on a sub-env's auto-reset step, whose reward is 0).

    >>> import gymnasium as gym
    >>> from rlrm.models import make_reward_model
    >>> venv = GymVecReward(gym.make_vec("CartPole-v1", num_envs=2, render_mode="rgb_array"),
    ...                     "balance the pole", make_reward_model("tiny"))
    >>> len(venv.reset(seed=0)[0])
    2
    >>> venv.close()
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        task: str | Sequence[str] | None,
        source: Any,
        camera: str | None = None,
        max_frames: int = 8,
        sampling: str = "prefix",
        every: int = 1,
        shaping: Shaping | None = None,
        success: SuccessDetector | None = SuccessDetector(),  # noqa: B008 - copied per sub-env
        on_timeout: str = "raise",
        terminate_on_success: bool = False,
    ) -> None:
        gym.vector.VectorWrapper.__init__(self, env)
        if terminate_on_success:
            raise ValueError(
                "terminate_on_success=True is not possible on a gymnasium VectorEnv: its sub-envs decide their own "
                "resets. Wrap each sub-env in RobometerReward (terminate_on_success=True) instead, or use an SB3 "
                "VecEnv, where RobometerVecReward can reset a succeeded sub-env itself"
            )
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        if mode not in (gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.DISABLED):
            raise ValueError(
                f"RobometerVecReward supports autoreset_mode NEXT_STEP (gymnasium's default) or DISABLED, got "
                f"{mode}; SAME_STEP replaces the last frame by the reset one before the wrapper sees it. Create "
                "the vector env with vector_kwargs={'autoreset_mode': gym.vector.AutoresetMode.NEXT_STEP}"
            )
        self._next_step_reset = mode == gym.vector.AutoresetMode.NEXT_STEP
        self._setup_rewards(env, env.num_envs, task, source, camera, max_frames, sampling, every, shaping,
                            success, on_timeout)
        self._restarting = np.zeros(env.num_envs, dtype=bool)

    def _frames(self, obs: Any) -> list[np.ndarray]:
        if self.camera is None:
            images = self.env.render()
            if images is None:
                images = [None] * self.num_envs
        else:
            images = frame_from_observation(obs, self.camera)
        return [self.frame_source.check(images[i]) for i in range(self.num_envs)]

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
        rewards, per_env, _ = self._finish(frames, env_rewards, dones, restarting)
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
            self._close_scorer()
