"""The reward-model protocol and the registry that turns a model spec into a model.

* :class:`RewardModel` - what every reward model offers: ``info()`` and batched ``score()``.
* :func:`register_model` - add a named factory (``"tiny"``, ``"demo"``, ...).
* :func:`make_reward_model` - build a model from a spec: a registered name, a hub id
  (``"robometer/Robometer-4B"``), a local checkpoint directory, or ``"roboreward:<dir, hub id or tiny>"``
  for the generative RoboReward family (:mod:`rlrm.models.roboreward`).

Nothing here imports torch: factories import their heavy modules when called.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from rlrm.types import ModelInfo, RewardQuery, RewardResult

__all__ = ["RewardModel", "register_model", "make_reward_model", "registered_models"]

log = logging.getLogger(__name__)


@runtime_checkable
class RewardModel(Protocol):
    """A batched video-language reward model.

    ``score`` takes queries that may differ in frame count and image size and returns one
    :class:`RewardResult` per query, one value per sent frame, in order.
    """

    def info(self) -> ModelInfo:
        """Describe the model (name, max_frames, image size, device)."""
        ...

    def score(self, queries: list[RewardQuery]) -> list[RewardResult]:
        """Score each query; results are in the order of ``queries``."""
        ...


_REGISTRY: dict[str, Callable[..., RewardModel]] = {}


def register_model(name: str, factory: Callable[..., RewardModel] | None = None):
    """Register ``factory(**kwargs) -> RewardModel`` under ``name``; usable as a decorator."""

    def deco(f: Callable[..., RewardModel]) -> Callable[..., RewardModel]:
        _REGISTRY[name] = f
        return f

    return deco(factory) if factory is not None else deco


def _load_builtin_registrations() -> None:
    # Importing these modules registers "tiny" / "demo"; they import torch, so only on demand.
    import importlib

    for mod in ("rlrm.models.robometer", "rlrm.models.tiny", "rlrm.models.demo", "rlrm.models.roboreward"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("rlrm.models"):
                continue  # that model family is not part of this build
            raise


def registered_models() -> list[str]:
    """Names accepted by :func:`make_reward_model` besides hub ids and directories."""
    _load_builtin_registrations()
    return sorted(_REGISTRY)


def make_reward_model(spec: str, **kwargs: Any) -> RewardModel:
    """Build a reward model from ``spec``.

    Args:
        spec: a registered name (see :func:`registered_models`), a local checkpoint
            directory, or a Hugging Face hub id such as ``"robometer/Robometer-4B"`` (Robometer);
            ``"roboreward:"`` + a directory, hub id (``teetone/RoboReward-4B``) or ``tiny`` (RoboReward).
        **kwargs: passed to the factory (``device``, ``dtype``, ``seed``, ...).
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"model spec must be a non-empty string, got {spec!r}")
    _load_builtin_registrations()
    if spec in _REGISTRY:
        return _REGISTRY[spec](**kwargs)
    family, sep, rest = spec.partition(":")
    if sep and family == "roboreward":
        if not rest:
            raise ValueError("model spec 'roboreward:' needs a checkpoint: 'roboreward:tiny', "
                             "'roboreward:teetone/RoboReward-4B' or 'roboreward:/path/to/dir'")
        from rlrm.models.roboreward import roboreward_from_spec

        return roboreward_from_spec(rest, **kwargs)
    if os.path.isdir(spec) or "/" in spec:
        from rlrm.models.robometer import RobometerModel

        return RobometerModel.from_pretrained(spec, **kwargs)
    raise ValueError(
        f"unknown reward model spec {spec!r}: expected one of {registered_models()}, "
        "a checkpoint directory, or a hub id like 'robometer/Robometer-4B'"
    )
