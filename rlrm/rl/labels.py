"""Success labels of finished episodes, for the reward model to learn from during RL (``reward.adapt``).

* :data:`LABEL_SOURCES` / :data:`SELECTIONS` - ``labels.source`` (``none | human | oracle``) and
  ``labels.select`` (``every_k | uncertain``).
* :class:`LabelledEpisode` - an episode (or its part before a takeover) with a ``success``/``failure`` label.
* :func:`uncertainty` - how unsure the reward model was about an episode, in [0, 1].
* :class:`OracleLabeller` - simulation stands in for a person: the env's own success (``info["is_success"]``
  at the last step), within a label budget, choosing which episodes to label, optionally noisy.
* :class:`HumanLabeller` - a person's ``y``/``n`` keys (``info["human_label"]``) and takeovers: the frames
  before a person took over count as not yet successful.
* :func:`make_labeller` - the labeller ``labels`` config asks for.

Both labellers are :class:`~rlrm.rl.episodes.EpisodeCollector` sinks: ``consider(record)`` gets every
finished episode and hands the labelled ones to ``send`` (the reward trainer's inbox).

Which episodes the oracle labels (``labels.every = k``): episodes come in blocks of k; ``every_k`` labels the
last of each block, ``uncertain`` the one of each block the model was least sure about (so both spend the
budget at the same rate and differ only in the choice). A block's label is given when the block is complete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlrm.rl.episodes import EpisodeRecord

__all__ = ["LABEL_SOURCES", "SELECTIONS", "LabelledEpisode", "uncertainty", "OracleLabeller", "HumanLabeller",
           "make_labeller"]

log = logging.getLogger(__name__)

LABEL_SOURCES = ("none", "human", "oracle")
SELECTIONS = ("every_k", "uncertain")
LABELS = ("success", "failure")


@dataclass
class LabelledEpisode:
    """Frames of an episode with a success/failure label, ready for the reward trainer.

    Args:
        frames: (T, H, W, 3) uint8 (the reset frame first).
        task: the instruction.
        label: ``"success"`` or ``"failure"``.
        episode: the episode number it came from.
        source: ``"oracle"``, ``"human"`` or ``"takeover"``.
        true_label: the env's own verdict when known (differs from ``label`` under label noise).
    """

    frames: np.ndarray
    task: str
    label: str
    episode: int
    source: str
    true_label: str | None = None

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {self.label!r}")


def uncertainty(record: EpisodeRecord, threshold: float) -> float:
    """How unsure the reward model was about ``record``, in [0, 1] (1: most unsure).

    The larger of two signs: the success probability at the last step near the detector ``threshold``
    (1 at the threshold, falling linearly to 0 at 0 and at 1), and progress and success disagreeing at the last step
    (``|progress - success probability|``).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
    prob, progress = float(record.success_prob[-1]), float(record.progress[-1])
    if not (np.isfinite(prob) and np.isfinite(progress)):
        return 1.0  # never scored: as unsure as can be
    near = 1.0 - abs(prob - threshold) / (threshold if prob < threshold else 1.0 - threshold)
    return float(np.clip(max(near, abs(progress - prob)), 0.0, 1.0))


def _true_label(record: EpisodeRecord) -> str:
    if record.env_success is None:
        raise ValueError(
            f"labels=oracle needs the env's own success (info['is_success'] on the last step); episode "
            f"{record.key} has none. Use labels=human on a robot, or an env that reports is_success"
        )
    return "success" if record.env_success else "failure"


class OracleLabeller:
    """Labels episodes from the env's own success, like a person would, within a budget.

    Args:
        send: receives each :class:`LabelledEpisode`.
        budget: most episodes labelled in the run (>= 1).
        select: ``"every_k"`` or ``"uncertain"`` (see the module docstring).
        every: the block length k (>= 1): one label per k episodes.
        noise: probability a label is flipped (a person's mistakes), in [0, 1).
        threshold: the success detector's threshold (``uncertain`` measures distance to it).
        seed: seeds the noise.

    :attr:`used` counts labels given, :attr:`labelled` lists ``(episode, label, true label)``.

    >>> sent = []
    >>> oracle = OracleLabeller(sent.append, budget=2, select="every_k", every=1)   # doctest: +SKIP
    """

    def __init__(self, send: Callable[[LabelledEpisode], Any], budget: int, select: str = "every_k", every: int = 5,
                 noise: float = 0.0, threshold: float = 0.65, seed: int = 0) -> None:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"labels.budget must be an int >= 1 (episodes the oracle labels), got {budget!r}")
        if select not in SELECTIONS:
            raise ValueError(f"labels.select must be one of {SELECTIONS}, got {select!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"labels.every must be an int >= 1 (one label per that many episodes), got {every!r}")
        if not 0.0 <= noise < 1.0:
            raise ValueError(f"labels.noise must lie in [0, 1) (chance a label is flipped), got {noise!r}")
        self.send = send
        self.budget = budget
        self.select = select
        self.every = every
        self.noise = float(noise)
        self.threshold = float(threshold)
        self.rng = np.random.default_rng(seed)
        self.used = 0
        self.seen = 0
        self.labelled: list[tuple[int, str, str]] = []
        self._block: list[tuple[float, EpisodeRecord]] = []

    @property
    def left(self) -> int:
        """Labels left in the budget."""
        return self.budget - self.used

    def consider(self, record: EpisodeRecord) -> LabelledEpisode | None:
        """Take a finished episode; at the end of a block, label the chosen one (if budget is left)."""
        self.seen += 1
        if self.left <= 0:
            return None
        truth = _true_label(record)  # every episode must have it: fail on the first, not the k-th
        self._block.append((uncertainty(record, self.threshold), record))
        if len(self._block) < self.every:
            return None
        block, self._block = self._block, []
        if self.select == "every_k":
            chosen = block[-1][1]
        else:  # the most uncertain; the latest among equals
            best = max(u for u, _ in block)
            chosen = [r for u, r in block if u == best][-1]
        truth = _true_label(chosen)
        label = truth
        if self.noise > 0 and self.rng.random() < self.noise:
            label = "failure" if truth == "success" else "success"
        labelled = LabelledEpisode(chosen.frames, chosen.task, label, chosen.key, "oracle", truth)
        self.used += 1
        self.labelled.append((chosen.key, label, truth))
        self.send(labelled)
        return labelled

    def summary(self) -> dict[str, Any]:
        """What was labelled: counts by label, noise flips, the episodes."""
        return {
            "source": "oracle", "select": self.select, "every": self.every, "budget": self.budget,
            "used": self.used, "episodes_seen": self.seen,
            "success": sum(1 for _, lab, _ in self.labelled if lab == "success"),
            "failure": sum(1 for _, lab, _ in self.labelled if lab == "failure"),
            "flipped": sum(1 for _, lab, truth in self.labelled if lab != truth),
            "episodes": [k for k, _, _ in self.labelled],
        }


class HumanLabeller:
    """A person's labels: the ``y``/``n`` key that ended an episode, and takeovers.

    An episode ended with ``y``/``n`` (``info["human_label"]``) is sent with that label. An episode with a
    takeover (``info["intervention"]``) and no key also teaches something: the frames up to the first
    takeover step are sent as ``failure`` (the policy had not succeeded when the person took over).

    Args:
        send: receives each :class:`LabelledEpisode`.
        takeovers: also send the pre-takeover part of episodes with takeovers.
        budget: most labels sent (None: all).
    """

    def __init__(self, send: Callable[[LabelledEpisode], Any], takeovers: bool = True, budget: int | None = None):
        self.send = send
        self.takeovers = bool(takeovers)
        self.budget = budget
        self.used = 0
        self.seen = 0
        self.labelled: list[tuple[int, str, str]] = []

    def consider(self, record: EpisodeRecord) -> LabelledEpisode | None:
        """Send ``record``'s label if a person gave one (or took over)."""
        self.seen += 1
        if self.budget is not None and self.used >= self.budget:
            return None
        if record.human_label is not None:
            if record.human_label not in LABELS:
                raise ValueError(f"info['human_label'] must be one of {LABELS}, got {record.human_label!r}")
            labelled = LabelledEpisode(record.frames, record.task, record.human_label, record.key, "human")
        elif self.takeovers and record.takeovers.any():
            first = int(np.argmax(record.takeovers))
            if first < 1:
                return None  # taken over at once: no policy frames to learn from
            labelled = LabelledEpisode(record.frames[: first + 1], record.task, "failure", record.key, "takeover")
        else:
            return None
        self.used += 1
        self.labelled.append((record.key, labelled.label, labelled.source))
        self.send(labelled)
        return labelled

    def summary(self) -> dict[str, Any]:
        """What was labelled: counts by label and by source."""
        return {
            "source": "human", "used": self.used, "episodes_seen": self.seen,
            "success": sum(1 for _, lab, _ in self.labelled if lab == "success"),
            "failure": sum(1 for _, lab, _ in self.labelled if lab == "failure"),
            "takeover": sum(1 for _, _, src in self.labelled if src == "takeover"),
            "episodes": [k for k, _, _ in self.labelled],
        }


def make_labeller(labels: Mapping[str, Any], send: Callable[[LabelledEpisode], Any],
                  threshold: float) -> OracleLabeller | HumanLabeller | None:
    """The labeller the ``labels`` config names (None for ``source=none``)."""
    source = labels.get("source", "none")
    if source not in LABEL_SOURCES:
        raise ValueError(f"labels.source must be one of {LABEL_SOURCES}, got {source!r}")
    if source == "none":
        return None
    if source == "oracle":
        return OracleLabeller(send, budget=int(labels["budget"]), select=labels["select"], every=int(labels["every"]),
                              noise=float(labels["noise"]), threshold=threshold, seed=int(labels["seed"]))
    budget = labels.get("budget")
    return HumanLabeller(send, takeovers=bool(labels.get("takeovers", True)),
                         budget=int(budget) if budget else None)
