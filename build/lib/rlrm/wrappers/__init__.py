"""Gymnasium wrappers that turn Robometer outputs into rewards, terminations and videos.

* :class:`RewardPipeline` - frames -> queries -> scorer -> shaped reward, ``info["rlrm"]`` and
  termination, for one env or several (``pipeline.py``): the one pipeline every reward wrapper below
  holds, completed synchronously or when answers arrive.
* :class:`RobometerReward` - a single env's reward from the reward model (``reward.py``).
* :class:`SuccessTermination` - end the episode on detected success (``termination.py``).
* :class:`RobometerVecReward` - batched rewards for gymnasium vector envs (``vector_gym.py``);
  :class:`RobometerSB3VecReward` the same for SB3 ``VecEnv`` (``vector_sb3.py``), where
  :class:`FrameInInfo` hands terminal frames over; both hold a :class:`RewardPipeline` (``vector.py``: auto-reset notes).
* :class:`RewardVideoRecorder`, :func:`write_reward_video`, :func:`write_reward_curves` - episode
  videos with progress/success curves (``video.py``).
* :class:`FrameSource`, :class:`FrameBuffer` - where frames come from and where an episode keeps them
  (``frames.py``); :class:`EpisodeReward` - per-episode bookkeeping shared by the wrappers (``episode.py``),
  driving the one reward state machine :class:`rlrm.shaping.RewardState`.
* :class:`AsyncRobometerReward` - the same reward computed in the background and relabelled in the
  replay buffer (``async_reward.py``; also importable from ``rlrm.rl.async_reward``).

The vector modules are loaded on first use; only ``vector_sb3`` imports Stable-Baselines3.
"""

from __future__ import annotations

from rlrm._lazy import lazy_getattr
from rlrm.wrappers.episode import EpisodeReward
from rlrm.wrappers.frames import FrameBuffer, FrameSource
from rlrm.wrappers.pipeline import RewardPipeline
from rlrm.wrappers.reward import RobometerReward
from rlrm.wrappers.termination import SuccessTermination
from rlrm.wrappers.video import RewardVideoRecorder, write_reward_curves, write_reward_video

__all__ = [
    "RewardPipeline",
    "RobometerReward",
    "SuccessTermination",
    "RobometerVecReward",
    "RobometerSB3VecReward",
    "FrameInInfo",
    "RewardVideoRecorder",
    "write_reward_video",
    "write_reward_curves",
    "FrameSource",
    "FrameBuffer",
    "EpisodeReward",
    "AsyncRobometerReward",
]

_LAZY = {
    "RobometerVecReward": "rlrm.wrappers.vector_gym",
    "RobometerSB3VecReward": "rlrm.wrappers.vector_sb3",
    "FrameInInfo": "rlrm.wrappers.vector_sb3",
    "AsyncRobometerReward": "rlrm.wrappers.async_reward",
}


__getattr__ = lazy_getattr('rlrm.wrappers', _LAZY, globals())
