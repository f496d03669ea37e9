"""rlrm: online RL on robots with a video-language reward model (Robometer) instead of hand-written rewards.

* :class:`RobometerReward` - gymnasium wrapper: the env's reward from the reward model (lazy: gymnasium).
* :class:`SuccessTermination` - gymnasium wrapper: end the episode on detected success (lazy: gymnasium).
* :func:`make_reward_model` - ``"tiny"``, ``"demo"``, a checkpoint directory or a hub id -> model (lazy).
* :class:`RewardClient` - scorer talking to a ``rlrm worker`` over ZeroMQ (lazy: pyzmq).
* :class:`RewardQuery`, :class:`RewardResult`, :class:`ModelInfo` - the core data types.
* :class:`Scorer`, :class:`AsyncScorer`, :func:`validate_queries` - the scorer contract.

>>> from rlrm import RobometerReward, make_reward_model          # doctest: +SKIP
>>> env = RobometerReward(env, task="reach the red target", source=make_reward_model("tiny"))  # doctest: +SKIP

Light at import: ``import rlrm`` loads numpy and the core types only; the names marked lazy load
their module (and torch, transformers, zmq or gymnasium with it) on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rlrm.types import AsyncScorer, ModelInfo, RewardQuery, RewardResult, Scorer, validate_queries

if TYPE_CHECKING:
    from rlrm.models.base import make_reward_model
    from rlrm.transport.client import RewardClient
    from rlrm.wrappers.reward import RobometerReward
    from rlrm.wrappers.termination import SuccessTermination

__version__ = "0.1.0"

_LAZY = {
    "RobometerReward": "rlrm.wrappers.reward",
    "SuccessTermination": "rlrm.wrappers.termination",
    "make_reward_model": "rlrm.models.base",
    "RewardClient": "rlrm.transport.client",
}

__all__ = [
    "RobometerReward",
    "SuccessTermination",
    "make_reward_model",
    "RewardClient",
    "RewardQuery",
    "RewardResult",
    "ModelInfo",
    "Scorer",
    "AsyncScorer",
    "validate_queries",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Load a lazy top-level name (``rlrm.RobometerReward`` ...) from its module on first access."""
    # the wrappers pull in gymnasium and the client pyzmq: only when first asked for
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rlrm' has no attribute {name!r}; top-level names are {sorted(__all__)}")


def __dir__() -> list[str]:
    """Module attributes including the lazy names not loaded yet."""
    return sorted(set(globals()) | set(_LAZY))
