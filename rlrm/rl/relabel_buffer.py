"""Replay buffers whose rewards and terminations arrive after the transition was stored.

* :class:`RelabelingReplayBuffer` - SB3 :class:`~stable_baselines3.common.buffers.ReplayBuffer`
  for Box observations.
* :class:`RelabelingDictReplayBuffer` - SB3 :class:`~stable_baselines3.common.buffers.DictReplayBuffer`
  for Dict observations (Fetch, image + state robots).
* :func:`relabeling_buffer_class` - the right one of the two for an observation space.

With an asynchronous reward model (:mod:`rlrm.wrappers.async_reward`) the env steps with a
placeholder reward and puts a ticket in ``info["rlrm_ticket"]``. The buffer stores such a
transition as *unlabelled*; when the labeler's answer for that ticket arrives, the buffer
writes the reward and termination in place. ``sample`` draws only labelled transitions, so
learning never sees a placeholder. Transitions without a ticket (a synchronous reward) are
labelled on arrival, so the buffer also works as a plain SB3 buffer.

When the reward model learns during the run (``reward.adapt``), the buffer also records which episode
step each transition is (``info["rlrm_episode"]``, from :class:`~rlrm.rl.episodes.EpisodeCollector`) and
which model version scored its reward (``info["rlrm"]["version"]``, in :attr:`reward_versions`, -1 when
unknown). An attached :class:`~rlrm.rl.rescoring.Rescorer` re-scores stored episodes with newer versions
in the background; :meth:`apply_rescored` (run by ``add`` and ``sample``) writes those rewards in place.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, ReplayBufferSamples

from rlrm.wrappers.async_reward import TICKET_KEY  # info key of a step's ticket, written by the async wrapper

EPISODE_KEY = "rlrm_episode"  # rlrm.rl.episodes.EPISODE_KEY (not imported: that module pulls in gymnasium wrappers)

__all__ = [
    "Label",
    "Labeler",
    "RelabelingReplayBuffer",
    "RelabelingDictReplayBuffer",
    "relabeling_buffer_class",
    "TICKET_KEY",
]

log = logging.getLogger(__name__)



class Label(Protocol):
    """A finished reward for one ticket: ``ticket`` (int), ``reward`` (float), ``terminated`` (bool)."""

    ticket: int
    reward: float
    terminated: bool


class Labeler(Protocol):
    """Source of finished labels (see :class:`rlrm.wrappers.async_reward.AsyncRewardLabeler`)."""

    def poll(self) -> list[Label]:
        """Return the labels that finished since the last call, without blocking."""
        ...

    def wait(self, timeout_s: float | None = None) -> list[Label]:
        """Block until at least one label finishes (or ``timeout_s`` passes) and return them."""
        ...


class _RelabelingMixin:
    """Label bookkeeping shared by the Box and Dict buffers (``labelled`` mask, ticket -> slot)."""

    # set by the SB3 base class __init__
    buffer_size: int
    n_envs: int
    pos: int
    full: bool
    rewards: np.ndarray
    dones: np.ndarray
    timeouts: np.ndarray

    def _init_labels(self, labeler: Labeler | None, wait_timeout_s: float) -> None:
        self.labelled = np.ones((self.buffer_size, self.n_envs), dtype=bool)
        self._slot_of_ticket: dict[int, tuple[int, int]] = {}
        self.labeler = labeler
        self.wait_timeout_s = float(wait_timeout_s)
        self.episode_steps = np.full((self.buffer_size, self.n_envs, 2), -1, dtype=np.int64)  # (episode, step)
        self.reward_versions = np.full((self.buffer_size, self.n_envs), -1, dtype=np.int64)
        self.rescorer: Any = None

    def attach_rescorer(self, rescorer: Any) -> None:
        """Take re-scored episodes from ``rescorer`` (a :class:`~rlrm.rl.rescoring.Rescorer`; None detaches)."""
        self.rescorer = rescorer

    def apply_rescored(self, rescored: list[Any] | None = None) -> int:
        """Write re-scored episodes' rewards into their stored transitions (default: what the rescorer
        finished since the last call); returns how many transitions changed.

        A transition takes the new reward only if it is labelled and its stored version is older
        than the re-scored one (a ring-buffer slot reused by a later episode has another episode key).
        """
        if rescored is None:
            rescored = self.rescorer.poll() if self.rescorer is not None else []
        changed = 0
        rows_total = self._valid_rows()
        for item in rescored:
            keys = self.episode_steps[:rows_total, :, 0]
            rows, envs = np.nonzero((keys == item.key) & self.labelled[:rows_total]
                                    & (self.reward_versions[:rows_total] < item.version))
            if rows.size == 0:
                continue
            steps = self.episode_steps[rows, envs, 1]
            if steps.max() >= len(item.rewards):
                raise ValueError(f"re-scored episode {item.key} has {len(item.rewards)} rewards, the buffer holds "
                                 f"its step {int(steps.max())}")
            self.rewards[rows, envs] = item.rewards[steps]
            self.reward_versions[rows, envs] = item.version
            changed += int(rows.size)
        return changed

    def version_counts(self) -> dict[int, int]:
        """Stored transitions per model version behind their reward (-1: unknown)."""
        versions, counts = np.unique(self.reward_versions[: self._valid_rows()], return_counts=True)
        return {int(v): int(c) for v, c in zip(versions, counts, strict=True)}

    def attach_labeler(self, labeler: Labeler | None) -> None:
        """Connect (or, with None, disconnect) the source of labels for ticketed transitions."""
        self.labeler = labeler

    @property
    def num_labelled(self) -> int:
        """Stored transitions whose reward is known."""
        return int(self.labelled[: self._valid_rows()].sum())

    @property
    def num_pending(self) -> int:
        """Stored transitions still waiting for their reward."""
        return len(self._slot_of_ticket)

    def _valid_rows(self) -> int:
        return self.buffer_size if self.full else self.pos

    def add(self, obs, next_obs, action, reward, done, infos) -> None:
        """Store one step of every env; ticketed ones wait for their label."""
        self._register(infos)
        super().add(obs, next_obs, action, reward, done, infos)  # type: ignore[misc]  # the SB3 buffer
        self.apply_labels()
        if self.rescorer is not None:
            self.apply_rescored()

    def _register(self, infos: list[dict[str, Any]]) -> None:
        """Mark the row about to be written at ``self.pos`` as labelled or pending."""
        row = self.pos
        for env_idx in range(self.n_envs):
            info = infos[env_idx] if env_idx < len(infos) else {}
            episode_step = info.get(EPISODE_KEY)
            self.episode_steps[row, env_idx] = episode_step if episode_step is not None else (-1, -1)
            version = (info.get("rlrm") or {}).get("version")
            self.reward_versions[row, env_idx] = -1 if version is None else int(version)
            if not self.labelled[row, env_idx]:
                # a pending transition is being overwritten by the ring buffer: its label is moot
                stale = [t for t, slot in self._slot_of_ticket.items() if slot == (row, env_idx)]
                for t in stale:
                    del self._slot_of_ticket[t]
            ticket = infos[env_idx].get(TICKET_KEY) if env_idx < len(infos) else None
            if ticket is None:
                self.labelled[row, env_idx] = True
            else:
                self.labelled[row, env_idx] = False
                self._slot_of_ticket[int(ticket)] = (row, env_idx)

    def relabel(self, ticket: int, reward: float, terminated: bool) -> bool:
        """Write the reward/termination of ``ticket``; returns False if it is not (or no longer) stored."""
        slot = self._slot_of_ticket.pop(int(ticket), None)
        if slot is None:
            return False
        row, env_idx = slot
        self.rewards[row, env_idx] = float(reward)
        if terminated:
            self.dones[row, env_idx] = 1.0
            self.timeouts[row, env_idx] = 0.0  # a success is a true terminal, not a time limit
        self.labelled[row, env_idx] = True
        return True

    def apply_labels(self, labels: list[Label] | None = None) -> int:
        """Write ``labels`` (default: whatever the labeler has finished); returns how many were stored."""
        if labels is None:
            labels = self.labeler.poll() if self.labeler is not None else []
        return sum(self.relabel(lab.ticket, lab.reward, lab.terminated) for lab in labels)

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every stored transition is labelled (used before checkpoints and at the end).

        Raises:
            TimeoutError: if labels are still missing after ``timeout_s`` (default ``wait_timeout_s``).
        """
        timeout_s = self.wait_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        self.apply_labels()
        while self._slot_of_ticket:
            if self.labeler is None:
                raise RuntimeError(
                    f"{len(self._slot_of_ticket)} transitions wait for rewards but no labeler is attached; "
                    "call attach_labeler(labeler) first"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{len(self._slot_of_ticket)} transitions still unlabelled after {timeout_s:.1f} s; "
                    "is the reward worker alive?"
                )
            self.apply_labels(self.labeler.wait(left))

    def _labelled_indices(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``batch_size`` (row, env) pairs uniformly among labelled transitions, waiting if none are."""
        self.apply_labels()
        if self.rescorer is not None:
            self.apply_rescored()
        deadline = time.monotonic() + self.wait_timeout_s
        while True:
            rows, envs = np.nonzero(self.labelled[: self._valid_rows()])
            if rows.size > 0:
                break
            if self.labeler is None or not self._slot_of_ticket:
                raise ValueError("cannot sample from a replay buffer with no labelled transitions")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"no labelled transition after waiting {self.wait_timeout_s:.1f} s "
                    f"({len(self._slot_of_ticket)} pending); is the reward worker alive?"
                )
            self.apply_labels(self.labeler.wait(left))
        pick = np.random.randint(0, rows.size, size=batch_size)
        return rows[pick], envs[pick]

    def __getstate__(self) -> dict[str, Any]:
        # The labeler holds futures and sockets; a pickled buffer keeps only finished labels.
        state = dict(self.__dict__)
        state["labeler"] = None
        state["rescorer"] = None
        if state["_slot_of_ticket"]:
            log.warning(
                "saving a replay buffer with %d unlabelled transitions; they will never be sampled "
                "(call flush() before saving to keep them)",
                len(state["_slot_of_ticket"]),
            )
        state["_slot_of_ticket"] = {}
        return state


class RelabelingReplayBuffer(_RelabelingMixin, ReplayBuffer):
    """SB3 replay buffer (Box observations) that samples only transitions whose reward is known.

    Args:
        labeler: where finished labels come from (attach later with :meth:`attach_labeler`).
        wait_timeout_s: how long ``sample``/``flush`` wait for a label before raising.
        Other args as :class:`stable_baselines3.common.buffers.ReplayBuffer`.

    >>> import numpy as np
    >>> from gymnasium import spaces
    >>> buf = RelabelingReplayBuffer(8, spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (1,)), device="cpu")
    >>> o = np.zeros((1, 2), np.float32)
    >>> buf.add(o, o, np.zeros((1, 1)), np.zeros(1), np.zeros(1), [{"rlrm_ticket": 7}])
    >>> buf.num_pending, buf.relabel(7, reward=0.5, terminated=False), float(buf.rewards[0, 0])
    (1, True, 0.5)
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: Any = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        labeler: Labeler | None = None,
        wait_timeout_s: float = 120.0,
    ):
        if optimize_memory_usage:
            raise ValueError("RelabelingReplayBuffer does not support optimize_memory_usage=True")
        super().__init__(
            buffer_size, observation_space, action_space, device, n_envs,
            optimize_memory_usage=False, handle_timeout_termination=handle_timeout_termination,
        )
        self._init_labels(labeler, wait_timeout_s)

    def sample(self, batch_size: int, env=None) -> ReplayBufferSamples:
        """Sample ``batch_size`` labelled transitions (blocks until at least one is labelled)."""
        rows, envs = self._labelled_indices(batch_size)
        data = (
            self._normalize_obs(self.observations[rows, envs, :], env),
            self.actions[rows, envs, :],
            self._normalize_obs(self.next_observations[rows, envs, :], env),
            (self.dones[rows, envs] * (1 - self.timeouts[rows, envs])).reshape(-1, 1),
            self._normalize_reward(self.rewards[rows, envs].reshape(-1, 1), env),
        )
        return ReplayBufferSamples(*tuple(map(self.to_torch, data)))


class RelabelingDictReplayBuffer(_RelabelingMixin, DictReplayBuffer):
    """SB3 Dict replay buffer that samples only transitions whose reward is known.

    Same arguments and behaviour as :class:`RelabelingReplayBuffer`, for ``spaces.Dict`` observations.

    >>> import numpy as np
    >>> from gymnasium import spaces
    >>> space = spaces.Dict({"state": spaces.Box(-1, 1, (2,))})
    >>> buf = RelabelingDictReplayBuffer(8, space, spaces.Box(-1, 1, (1,)), device="cpu")
    >>> o = {"state": np.zeros((1, 2), np.float32)}
    >>> buf.add(o, o, np.zeros((1, 1)), np.zeros(1), np.zeros(1), [{}])
    >>> buf.num_labelled
    1
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        device: Any = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        labeler: Labeler | None = None,
        wait_timeout_s: float = 120.0,
    ):
        super().__init__(
            buffer_size, observation_space, action_space, device, n_envs,
            optimize_memory_usage=optimize_memory_usage, handle_timeout_termination=handle_timeout_termination,
        )
        self._init_labels(labeler, wait_timeout_s)

    def sample(self, batch_size: int, env=None) -> DictReplayBufferSamples:
        """Sample ``batch_size`` labelled transitions (blocks until at least one is labelled)."""
        rows, envs = self._labelled_indices(batch_size)
        obs = self._normalize_obs({k: v[rows, envs] for k, v in self.observations.items()}, env)
        next_obs = self._normalize_obs({k: v[rows, envs] for k, v in self.next_observations.items()}, env)
        return DictReplayBufferSamples(
            observations={k: self.to_torch(v) for k, v in obs.items()},
            actions=self.to_torch(self.actions[rows, envs]),
            next_observations={k: self.to_torch(v) for k, v in next_obs.items()},
            dones=self.to_torch(self.dones[rows, envs] * (1 - self.timeouts[rows, envs])).reshape(-1, 1),
            rewards=self.to_torch(self._normalize_reward(self.rewards[rows, envs].reshape(-1, 1), env)),
        )


def relabeling_buffer_class(observation_space: spaces.Space) -> type[ReplayBuffer]:
    """The relabelling buffer class matching ``observation_space`` (Dict or not)."""
    if isinstance(observation_space, spaces.Dict):
        return RelabelingDictReplayBuffer
    return RelabelingReplayBuffer
