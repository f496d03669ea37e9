"""A policy saved by LeRobot (ACT, diffusion, SmolVLA, ...) as a frozen base, run as LeRobot runs it.

* :class:`LeRobotPolicy` - loads a ``save_pretrained`` folder (``config.json``, ``model.safetensors``) with
  its saved processors (``policy_preprocessor.json`` / ``policy_postprocessor.json`` and their
  normalisation statistics) and answers ``act(obs) -> action`` for one rlrm observation: observation keys
  mapped to the policy's input features, images from (H, W, 3) uint8 to (3, H, W) float in [0, 1], then
  preprocessor -> ``select_action`` -> postprocessor, exactly LeRobot's own inference path
  (``lerobot.utils.control_utils.predict_action``). Action chunks are queued inside the policy and
  cleared by :meth:`LeRobotPolicy.reset` at every episode start.
* :func:`lerobot_feature_sources` - which observation key feeds which input feature (the default mapping).
* :data:`EXTRA_HINT` - the install line a missing ``lerobot`` points to.

``lerobot`` is imported when a policy is loaded, never at module import.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LeRobotPolicy", "lerobot_feature_sources", "EXTRA_HINT"]

log = logging.getLogger(__name__)

EXTRA_HINT = (
    "pip install 'rlrm[lerobot]' (LeRobot 0.4.x on Python 3.10/3.11, 0.5+ on Python 3.12; "
    "see the README section 'With LeRobot')"
)

PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"


def _import_lerobot() -> dict[str, Any]:
    """The few LeRobot entry points the adapter uses (ImportError naming the extra when missing)."""
    try:
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.configs.types import FeatureType
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    except ImportError as e:
        raise ImportError(f"LeRobotPolicy needs the `lerobot` package ({e}); install it with {EXTRA_HINT}") from e
    return {
        "PreTrainedConfig": PreTrainedConfig,
        "FeatureType": FeatureType,
        "get_policy_class": get_policy_class,
        "make_pre_post_processors": make_pre_post_processors,
    }


def lerobot_feature_sources(features: Mapping[str, Any], obs_keys: Mapping[str, str] | None,
                            available: list[str] | None) -> dict[str, str | None]:
    """LeRobot input feature -> our observation key (``None``: the whole, non-dict observation).

    ``obs_keys`` entries win; otherwise a feature is fed by the key of the same name, or by its name
    without the ``observation.images.`` / ``observation.`` prefix (``observation.images.front`` <- ``front``,
    ``observation.state`` <- ``state``, else ``observation`` as in gymnasium-robotics' dict observations). A non-dict observation (``available=None``) feeds a single
    non-image feature. Raises ValueError listing every feature left without a source.
    """
    obs_keys = dict(obs_keys or {})
    unknown = sorted(set(obs_keys) - set(features))
    if unknown:
        raise ValueError(f"obs_keys names {unknown}, which are not input features of the policy; "
                         f"expected some of {sorted(features)}")
    sources: dict[str, str | None] = {}
    missing = []
    for name in features:
        if name in obs_keys:
            key = obs_keys[name]
            if available is not None and key not in available:
                missing.append(f"{name} <- {key!r} (not in the observation)")
                continue
            sources[name] = key
            continue
        if available is None:
            sources[name] = None
            continue
        candidates = [name, name.removeprefix("observation.images."), name.removeprefix("observation.")]
        if name == "observation.state":
            candidates.append("observation")  # gymnasium-robotics' key; recorded as observation.state
        found = next((c for c in candidates if c in available), None)
        if found is None:
            missing.append(name)
        else:
            sources[name] = found
    if available is None and len(sources) > 1:
        raise ValueError(f"a non-dict observation can feed one input feature, but the policy takes "
                         f"{sorted(features)}; use a dict observation and obs_keys")
    if missing:
        raise ValueError(f"the policy's input features {missing} have no source in the observation "
                         f"(keys {sorted(available or [])}); map them with obs_keys={{feature: obs_key}}")
    return sources


class LeRobotPolicy:
    """A LeRobot pretrained policy used as a frozen base, through its saved pre/post processors.

    Args:
        path: local folder written by LeRobot (``policy.save_pretrained`` plus the processors'
            ``save_pretrained``; ``lerobot-train`` checkpoints' ``pretrained_model`` folder).
        obs_keys: LeRobot input feature -> key in our observation dict, for the features whose
            source is not found by name (see :func:`lerobot_feature_sources`).
        device: torch device to run on (the saved preprocessor's device is overridden).
        task: task sentence passed to language-conditioned policies (SmolVLA, pi0) as LeRobot does.
        policy_type: optional check: the saved ``config.json`` must be of this type (``"act"``, ...).

    ``act(obs)`` returns one action (float32, the policy's action shape) in env units; chunked
    policies serve the rest of their chunk from a queue, refilled when it runs empty.
    """

    def __init__(self, path: str | Path, obs_keys: Mapping[str, str] | None = None, device: str = "cpu",
                 task: str | None = None, policy_type: str | None = None) -> None:
        lr = _import_lerobot()
        import torch

        self.torch = torch
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"{self.path} is not a LeRobot policy folder: no config.json "
                                    "(expected the output of policy.save_pretrained)")
        for name in (PREPROCESSOR_FILE, POSTPROCESSOR_FILE):
            if not (self.path / name).is_file():
                raise FileNotFoundError(
                    f"{self.path} has no {name}: LeRobot >= 0.4 saves the normalisation in processor files "
                    "beside the policy; for an older checkpoint run LeRobot's "
                    "`python -m lerobot.processor.migrate_policy_normalization` first")
        config = lr["PreTrainedConfig"].from_pretrained(str(self.path))
        if policy_type is not None and config.type != policy_type:
            raise ValueError(f"{self.path} holds a {config.type!r} policy, expected {policy_type!r}")
        config.device = device
        self.config = config
        self.policy = lr["get_policy_class"](config.type).from_pretrained(str(self.path), config=config)
        self.policy.to(device).eval()
        self.preprocessor, self.postprocessor = lr["make_pre_post_processors"](
            config, pretrained_path=str(self.path),
            preprocessor_overrides={"device_processor": {"device": device}})
        visual = lr["FeatureType"].VISUAL
        self.input_features = {k: (tuple(f.shape), f.type == visual) for k, f in config.input_features.items()}
        self.action_shape = tuple(config.output_features["action"].shape)
        self.obs_keys = dict(obs_keys or {})
        self.device = device
        self.task = task
        self._sources: dict[str, str | None] | None = None
        log.info("LeRobot %s policy from %s: inputs %s, action %s", config.type, self.path,
                 {k: s for k, (s, _) in self.input_features.items()}, self.action_shape)

    def reset(self) -> None:
        """Start a new episode: empty the action-chunk / observation queues and reset the processors."""
        self.policy.reset()
        self.preprocessor.reset()
        self.postprocessor.reset()

    def _tensor(self, feature: str, key: str | None, value: Any) -> Any:
        """One observation value as the unbatched float tensor LeRobot's preprocessor takes."""
        torch = self.torch
        shape, is_image = self.input_features[feature]
        arr = np.asarray(value)
        source = "the observation" if key is None else f"obs key {key!r}"
        if is_image:
            c, h, w = shape
            if arr.shape == (h, w, c):
                t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
            elif arr.shape == (c, h, w):
                t = torch.from_numpy(np.ascontiguousarray(arr))
            else:
                raise ValueError(f"input feature {feature!r} ({source}) expects an image ({h}, {w}, {c}) HWC "
                                 f"or ({c}, {h}, {w}) CHW, got {arr.dtype} {arr.shape}")
            if arr.dtype == np.uint8:
                return t.to(torch.float32) / 255
            return t.to(torch.float32).contiguous()
        if arr.shape != shape:
            if arr.size == int(np.prod(shape)) and arr.ndim <= 1:
                arr = arr.reshape(shape)
            else:
                raise ValueError(f"input feature {feature!r} ({source}) expects shape {shape}, "
                                 f"got {arr.dtype} {arr.shape}")
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))

    def observation_batch(self, obs: Any) -> dict[str, Any]:
        """The raw batch for LeRobot's preprocessor: a batch of one per input feature, plus the task."""
        if self._sources is None:
            available = list(obs) if isinstance(obs, Mapping) else None
            self._sources = lerobot_feature_sources(self.input_features, self.obs_keys, available)
        batch: dict[str, Any] = {}
        for feature, key in self._sources.items():
            if key is not None and key not in obs:
                raise ValueError(f"observation has no key {key!r} for input feature {feature!r}; "
                                 f"got keys {sorted(obs)}")
            batch[feature] = self._tensor(feature, key, obs if key is None else obs[key]).unsqueeze(0)
        # as lerobot.policies.utils.prepare_observation_for_inference: batch of one, task and robot type
        batch["task"] = self.task or ""
        batch["robot_type"] = ""
        return batch

    def act(self, obs: Any) -> np.ndarray:
        """One action for ``obs``: preprocessor -> ``select_action`` -> postprocessor."""
        torch = self.torch
        batch = self.observation_batch(obs)
        with torch.inference_mode():
            batch = self.preprocessor(batch)
            action = self.policy.select_action(batch)
            action = self.postprocessor(action)
        out = action.detach().to("cpu", torch.float32).numpy().reshape(self.action_shape)
        return out
