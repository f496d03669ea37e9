"""What runners and the learner exchange (plain dataclasses of numpy arrays and tensors, pickled by Ray).

* :class:`PolicyWeights` - what the learner publishes: the actor's weights, the observation
  statistics, the version number and how to build the policy.
* :class:`EpisodeRecord` - one finished episode of a runner (return, length, env success, takeovers).
* :class:`RolloutBatch` - transitions a runner sends to the learner (observations as numpy, actions
  in replay-buffer units, the weights version that chose each action).
* :data:`RANDOM_VERSION` - the version recorded for warm-up steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PolicyWeights", "EpisodeRecord", "RolloutBatch", "RANDOM_VERSION"]

RANDOM_VERSION = -1
"""Weights version recorded for warm-up steps, whose actions are sampled uniformly (SB3's ``learning_starts``)."""


@dataclass
class PolicyWeights:
    """A published policy.

    Args:
        version: publication number (0 = the initial weights; +1 every ``sync_every`` gradient steps).
        env_steps: transitions the learner had received when publishing.
        actor_state: the SB3 actor's ``state_dict`` on CPU.
        obs_rms: the learner's observation statistics (``VecNormalize.obs_rms``), None without normalisation.
        policy_class / policy_kwargs: ``type(model.policy)`` and its constructor parameters.
    """

    version: int
    env_steps: int
    actor_state: dict[str, Any]
    obs_rms: Any
    policy_class: type
    policy_kwargs: dict[str, Any]


@dataclass
class EpisodeRecord:
    """One finished episode: ``ret`` sums its (labelled) rewards; ``takeover_steps`` were a person's
    (``intervention_rate`` is None for envs that never report ``info["intervention"]``)."""

    runner: int
    length: int
    ret: float
    is_success: bool | None
    intervention_rate: float | None
    takeover_steps: int


@dataclass
class RolloutBatch:
    """``n`` transitions of one runner, ready for the learner's replay buffer.

    Args:
        obs / next_obs: (n, ...) arrays, or dicts of them for Dict observations (raw, not normalised).
        actions: (n, action_dim) float32 in [-1, 1] (SB3 buffer units): the policy's action; the
            learner's buffer swaps in the executed one on takeover steps (see ``infos``).
        rewards: (n,) float32; terminated / truncated: (n,) bool.
        infos: (n,) dicts, empty except on takeover steps (``intervention``, ``action``, ``base_action``).
        versions: (n,) int, the weights version that chose each action (:data:`RANDOM_VERSION` in warm-up).
        episodes: episodes whose last transition is in this batch.
        scalars: name -> (sum, count) of reward-model values seen (latency, progress, success probability).
    """

    runner: int
    obs: Any
    next_obs: Any
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    infos: list[dict[str, Any]]
    versions: np.ndarray
    episodes: list[EpisodeRecord] = field(default_factory=list)
    scalars: dict[str, tuple[float, int]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Number of transitions."""
        return int(len(self.rewards))
