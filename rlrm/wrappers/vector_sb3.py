"""Batched Robometer rewards for Stable-Baselines3 vector envs.

* :class:`RobometerSB3VecReward` - batched Robometer rewards for an SB3 ``VecEnv`` (auto-reset inside
  ``step``); ``infos[i]["rlrm"]`` as for a single env; optional success termination.
  (``SB3VecReward`` is the same class under its former name.)
* :class:`FrameInInfo` - a sub-env wrapper putting the current frame into ``info["rlrm_frame"]``,
  so an SB3 ``VecEnv`` that resets sub-envs inside ``step`` still hands over the terminal frame.

Auto-reset notes are in :mod:`rlrm.wrappers.vector`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rlrm.config import RewardConfig
from rlrm.shaping import Shaping, SuccessDetector
from rlrm.wrappers.frames import FrameSource, frame_from_observation
from rlrm.wrappers.pipeline import RewardPipeline
from rlrm.wrappers.vector import CoreAccess

__all__ = ["RobometerSB3VecReward", "SB3VecReward", "FrameInInfo"]

FRAME_KEY = "rlrm_frame"


class FrameInInfo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds the current frame to ``info["rlrm_frame"]`` after every ``reset`` and ``step``.

    For SB3 vector envs, which reset a finished sub-env before returning, so that
    :class:`RobometerSB3VecReward` still sees each episode's last frame. ``camera`` is what
    :class:`rlrm.wrappers.FrameSource` reads: None (``env.render()``), or render cameras /
    observation keys, several tiled side by side.

    >>> from stable_baselines3.common.env_util import make_vec_env
    >>> venv = make_vec_env("CartPole-v1", n_envs=2, wrapper_class=FrameInInfo,
    ...                     env_kwargs={"render_mode": "rgb_array"})
    >>> _ = venv.reset(); venv.reset_infos[0]["rlrm_frame"].shape
    (400, 600, 3)
    """

    def __init__(self, env: gym.Env, camera: str | list[str] | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, camera=camera)
        gym.Wrapper.__init__(self, env)
        self.frame_source = FrameSource(env, camera)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset and add the reset frame to the info."""
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, FRAME_KEY: self.frame_source.read(obs)}

    def step(self, action):
        """Step and add the new frame to the info."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, FRAME_KEY: self.frame_source.read(obs)}


class RobometerSB3VecReward(CoreAccess, VecEnvWrapper):
    """Robometer rewards for a Stable-Baselines3 ``VecEnv`` (auto-reset inside ``step``), one batched
    request per vector step.

    Arguments mean what they mean for :class:`rlrm.wrappers.RobometerReward`. ``infos[i]["rlrm"]`` is
    the same dict :class:`RobometerReward` publishes. With ``camera=None`` (or render cameras) the
    sub-envs must be wrapped in :class:`FrameInInfo` (``make_vec_env(..., wrapper_class=FrameInInfo)``,
    with the same ``camera``); with observation keys the frames come from the observations.
    ``terminate_on_success=True`` ends a sub-env's episode on detection: the wrapper sets ``dones[i]``,
    puts the observation in ``infos[i]["terminal_observation"]`` and resets the sub-env itself.

    >>> from stable_baselines3.common.env_util import make_vec_env
    >>> from rlrm.models import make_reward_model
    >>> venv = make_vec_env("CartPole-v1", n_envs=2, wrapper_class=FrameInInfo,
    ...                     env_kwargs={"render_mode": "rgb_array"})
    >>> venv = RobometerSB3VecReward(venv, "balance the pole", make_reward_model("tiny"))
    >>> venv.reset().shape
    (2, 4)
    >>> venv.close()
    """

    def __init__(
        self,
        venv: Any,
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
        if not isinstance(venv, VecEnv):
            raise TypeError(
                f"RobometerSB3VecReward wraps a Stable-Baselines3 VecEnv, got {type(venv).__name__}; use "
                "RobometerVecReward for a gymnasium VectorEnv and RobometerReward for a single env"
            )
        VecEnvWrapper.__init__(self, venv)
        self.terminate_on_success = bool(terminate_on_success) and success is not None
        self._frames_in_info = all(venv.env_is_wrapped(FrameInInfo))
        if camera is None and not self._frames_in_info:
            raise ValueError(
                "an SB3 VecEnv resets finished sub-envs before returning, so env.render() cannot show their "
                "last frame: wrap the sub-envs with make_vec_env(..., wrapper_class=rlrm.wrappers.FrameInInfo) "
                "or pass camera=<image key of the observation>"
            )
        self.core = RewardPipeline(venv.num_envs, task, source, camera, max_frames=max_frames, sampling=sampling,
                                   every=every, shaping=shaping, success=success, on_timeout=on_timeout,
                                   terminate_on_success=self.terminate_on_success, views=views, when=when)

    def _frame(self, obs_i: Any, info_i: dict) -> np.ndarray:
        if self.core.cameras is None or FRAME_KEY in info_i:
            frame = info_i.get(FRAME_KEY)
            if frame is None:
                raise KeyError(f"info has no {FRAME_KEY!r}: wrap the sub-envs in rlrm.wrappers.FrameInInfo")
            frames = self.core.frames
            if self.core.cameras is not None and len(self.core.cameras) > 1 and len(frames.view_widths) <= 1:
                frames.view_widths = list(self.venv.get_attr("frame_source", indices=[0])[0].view_widths)
            return frames.check(frame, f"info[{FRAME_KEY!r}]")
        views = [np.asarray(frame_from_observation(obs_i, name)) for name in self.core.cameras]
        return self.core.frames.tile(views, f"observation{self.core.cameras}")

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
            if dones[i] and self.core.cameras is not None:
                frames.append(self._frame(infos[i]["terminal_observation"], infos[i]))
            else:
                frames.append(self._frame(self._obs_at(obs, i), infos[i]))
        dones = np.array(dones, dtype=bool)
        rewards, per_env, newly = self.core.finish(frames, env_rewards, dones, np.zeros(n, dtype=bool))
        infos = [dict(info) for info in infos]
        reset_infos = list(self.venv.reset_infos)
        for i in range(n):
            infos[i]["rlrm"] = per_env[i]
            if newly[i] and not dones[i]:
                reset_infos[i] = self._end_on_success(obs, infos[i], i)
                dones[i] = True
            if dones[i]:
                self.episodes[i].start(self._frame(self._obs_at(obs, i), reset_infos[i]))
        return obs, rewards.astype(np.float32), dones, infos

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
            self.core.close()


SB3VecReward = RobometerSB3VecReward  # the name before the vector wrappers became sibling classes
