"""Gymnasium wrappers that turn Robometer outputs into rewards, terminations and videos.

* :class:`RobometerReward` - a single env's reward from the reward model (``reward.py``).
* :class:`SuccessTermination` - end the episode on detected success (``termination.py``).
* :class:`RobometerVecReward` - batched rewards for gymnasium / SB3 vector envs (``vector.py``,
  ``vector_gym.py``, ``vector_sb3.py``);
  :class:`FrameInInfo` hands SB3 vector envs' terminal frames over.
* :class:`RewardVideoRecorder`, :func:`write_reward_video`, :func:`write_reward_curves` - episode
  videos with progress/success curves (``video.py``).
* :class:`FrameSource`, :class:`FrameBuffer` - where frames come from and where an episode keeps them
  (``frames.py``); :class:`EpisodeReward` - per-episode bookkeeping shared by the wrappers (``episode.py``).

The vector modules import Stable-Baselines3 (and so torch); they are loaded on first use.
"""

from __future__ import annotations

from typing import Any

from rlrm.wrappers.episode import EpisodeReward
from rlrm.wrappers.frames import FrameBuffer, FrameSource
from rlrm.wrappers.reward import RobometerReward
from rlrm.wrappers.termination import SuccessTermination
from rlrm.wrappers.video import RewardVideoRecorder, write_reward_curves, write_reward_video

__all__ = [
    "RobometerReward",
    "SuccessTermination",
    "RobometerVecReward",
    "FrameInInfo",
    "RewardVideoRecorder",
    "write_reward_video",
    "write_reward_curves",
    "FrameSource",
    "FrameBuffer",
    "EpisodeReward",
]

_LAZY = {"RobometerVecReward": "rlrm.wrappers.vector", "FrameInInfo": "rlrm.wrappers.vector_sb3"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlrm.wrappers' has no attribute {name!r}")
