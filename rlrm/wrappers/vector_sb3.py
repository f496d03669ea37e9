"""The Stable-Baselines3 ``VecEnv`` side of :class:`rlrm.wrappers.RobometerVecReward`.

* :class:`SB3VecReward` - batched Robometer rewards for an SB3 ``VecEnv`` (auto-reset inside
  ``step``); ``infos[i]["rlrm"]`` as for a single env; optional success termination.
* :class:`FrameInInfo` - a sub-env wrapper putting ``env.render()`` into ``info["rlrm_frame"]``,
  so an SB3 ``VecEnv`` that resets sub-envs inside ``step`` still hands over the terminal frame.

Auto-reset notes are in :mod:`rlrm.wrappers.vector`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnvWrapper

from rlrm.shaping import Shaping, SuccessDetector
from rlrm.wrappers.frames import frame_from_observation
from rlrm.wrappers.vector import RobometerVecReward

__all__ = ["SB3VecReward", "FrameInInfo"]

FRAME_KEY = "rlrm_frame"


class FrameInInfo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds the rendered frame to ``info["rlrm_frame"]`` after every ``reset`` and ``step``.

    For SB3 vector envs, which reset a finished sub-env before returning, so that
    :class:`RobometerVecReward` still sees each episode's last frame with ``camera=None``.

    >>> from stable_baselines3.common.env_util import make_vec_env
    >>> venv = make_vec_env("CartPole-v1", n_envs=2, wrapper_class=FrameInInfo,
    ...                     env_kwargs={"render_mode": "rgb_array"})
    >>> _ = venv.reset(); venv.reset_infos[0]["rlrm_frame"].shape
    (400, 600, 3)
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset and add the reset frame to the info."""
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, FRAME_KEY: self.env.render()}

    def step(self, action):
        """Step and add the new frame to the info."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, FRAME_KEY: self.env.render()}


class SB3VecReward(RobometerVecReward, VecEnvWrapper):
    """:class:`RobometerVecReward` for Stable-Baselines3 ``VecEnv`` (auto-reset inside ``step``).

    ``infos[i]["rlrm"]`` is the same dict :class:`RobometerReward` publishes. With ``camera=None``
    the sub-envs must be wrapped in :class:`FrameInInfo` (``make_vec_env(..., wrapper_class=FrameInInfo)``).

    >>> from stable_baselines3.common.env_util import make_vec_env
    >>> from rlrm.models import make_reward_model
    >>> venv = make_vec_env("CartPole-v1", n_envs=2, wrapper_class=FrameInInfo,
    ...                     env_kwargs={"render_mode": "rgb_array"})
    >>> venv = SB3VecReward(venv, "balance the pole", make_reward_model("tiny"))
    >>> venv.reset().shape
    (2, 4)
    >>> venv.close()
    """

    def __init__(
        self,
        venv: Any,
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
        VecEnvWrapper.__init__(self, venv)
        self.terminate_on_success = bool(terminate_on_success) and success is not None
        if camera is None and not all(venv.env_is_wrapped(FrameInInfo)):
            raise ValueError(
                "an SB3 VecEnv resets finished sub-envs before returning, so env.render() cannot show their "
                "last frame: wrap the sub-envs with make_vec_env(..., wrapper_class=rlrm.wrappers.FrameInInfo) "
                "or pass camera=<image key of the observation>"
            )
        self._setup_rewards(venv, venv.num_envs, task, source, camera, max_frames, sampling, every, shaping,
                            success, on_timeout)

    def _frame(self, obs_i: Any, info_i: dict) -> np.ndarray:
        if self.camera is None:
            frame = info_i.get(FRAME_KEY)
            if frame is None:
                raise KeyError(f"info has no {FRAME_KEY!r}: wrap the sub-envs in rlrm.wrappers.FrameInInfo")
            return self.frame_source.check(frame)
        return self.frame_source.check(frame_from_observation(obs_i, self.camera))

    def _obs_at(self, obs: Any, i: int) -> Any:
        if isinstance(obs, dict):
            return {k: self._obs_at(v, i) for k, v in obs.items()}
        return obs[i]

    def reset(self):
        """Reset all sub-envs and start every episode with its reset frame."""
        obs = self.venv.reset()
        for i, ep in enumerate(self.episodes):
            ep.start(self._frame(self._obs_at(obs, i), self.venv.reset_infos[i]))
        return obs

    def step_wait(self):
        """Collect the step, score all due episodes in one request, start new episodes where sub-envs reset."""
        obs, env_rewards, dones, infos = self.venv.step_wait()
        n = self.num_envs
        frames = []
        for i in range(n):
            if dones[i] and self.camera is not None:
                frames.append(self._frame(infos[i]["terminal_observation"], infos[i]))
            else:
                frames.append(self._frame(self._obs_at(obs, i), infos[i]))
        dones = np.array(dones, dtype=bool)
        rewards, per_env, newly = self._finish(frames, env_rewards, dones, np.zeros(n, dtype=bool))
        infos = [dict(info) for info in infos]
        reset_infos = list(self.venv.reset_infos)
        for i in range(n):
            infos[i]["rlrm"] = per_env[i]
            if newly[i] and self.terminate_on_success and not dones[i]:
                reset_infos[i] = self._end_on_success(obs, infos[i], i)
                dones[i] = True
            if dones[i]:
                self.episodes[i].start(self._frame(self._obs_at(obs, i), reset_infos[i]))
        return obs, rewards, dones, infos

    def _end_on_success(self, obs: Any, info: dict, i: int) -> dict:
        """End sub-env ``i``'s episode the way SB3 auto-reset does: terminal obs in info, reset obs in ``obs``."""
        info["terminal_observation"] = self._obs_at(obs, i)
        info["TimeLimit.truncated"] = False
        reset_obs, reset_info = self.venv.env_method("reset", indices=[i])[0]
        if isinstance(obs, dict):
            for key, value in obs.items():
                value[i] = reset_obs[key]
        else:
            obs[i] = reset_obs
        return reset_info

    def close(self) -> None:
        """Close the vector env, and the scorer if this wrapper created it."""
        try:
            self.venv.close()
        finally:
            self._close_scorer()
