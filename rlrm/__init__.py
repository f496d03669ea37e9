"""rlrm: online RL on robots with a video-language reward model (Robometer) instead of hand-written rewards.

Light at import: the heavy parts (torch, transformers, zmq, gymnasium) load from the
submodules that need them.
"""

from rlrm.types import ModelInfo, RewardQuery, RewardResult

__version__ = "0.1.0"

__all__ = ["ModelInfo", "RewardQuery", "RewardResult", "__version__"]
