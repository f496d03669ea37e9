"""Reward models: the protocol, the registry, and the two families (Robometer, RoboReward).

* :func:`make_reward_model` - ``"tiny"``, ``"demo"``, a checkpoint directory or a hub id -> model;
  ``"roboreward:<dir | hub id | tiny>"`` -> a RoboReward model.
* :class:`RewardModel` / :func:`register_model` / :func:`registered_models` - protocol and registry.
* :class:`RobometerModel` (lazy, imports torch) - Qwen3-VL + progress/success/preference heads.
* :func:`tiny_robometer` (lazy) - a tiny randomly initialised Robometer for tests and CPU work.
* :class:`RoboRewardModel` (lazy) - generative Qwen3-VL answering a 1-5 score per video
  (:mod:`rlrm.models.roboreward`).

>>> from rlrm.models import make_reward_model
>>> model = make_reward_model("tiny", seed=0)
>>> model.info().name
'tiny'
"""

from __future__ import annotations

from typing import Any

from rlrm.models.base import RewardModel, make_reward_model, register_model, registered_models

__all__ = [
    "RewardModel",
    "make_reward_model",
    "register_model",
    "registered_models",
    "RobometerModel",
    "tiny_robometer",
    "RoboRewardModel",
]

_LAZY = {
    "RobometerModel": ("rlrm.models.robometer", "RobometerModel"),
    "tiny_robometer": ("rlrm.models.tiny", "tiny_robometer"),
    "RoboRewardModel": ("rlrm.models.roboreward", "RoboRewardModel"),
}


def __getattr__(name: str) -> Any:
    # torch/transformers load only when the Robometer classes are first touched.
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'rlrm.models' has no attribute {name!r}")
