"""Re-scoring stored episodes with the newest reward-model version, off the control loop.

* :func:`rescore_episode` - the rewards an episode would have got from the scorer's current model:
  the same queries, the same shaping and success detection as the reward wrapper (its
  :class:`~rlrm.wrappers.episode.EpisodeReward` replayed over the stored frames).
* :class:`Rescored` - one re-scored episode: its key, new per-step rewards, the version that scored them.
* :class:`Rescorer` - keeps the newest finished episodes (an :class:`~rlrm.rl.episodes.EpisodeCollector`
  sink) and, on a background thread, re-scores those scored by an older version than the scorer serves
  now; the relabelling replay buffer writes the results into its stored transitions
  (:meth:`~rlrm.rl.relabel_buffer.RelabelingReplayBuffer.apply_rescored`).

What changes: the stored reward of each step. What does not: the episode's ``done`` flags (a step that
ended the episode stays its last; with ``terminate_on_success`` a newer version could detect success
elsewhere, but the episode already happened as it did).
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlrm.rl.episodes import EpisodeRecord

__all__ = ["rescore_episode", "Rescored", "Rescorer"]

log = logging.getLogger(__name__)


@dataclass
class Rescored:
    """Rewards of one episode from a newer model version.

    Args:
        key: the episode number (``info["rlrm_episode"][0]`` of its transitions).
        rewards: (T,) float32, the shaped reward of each step.
        version: the model version that scored them.
    """

    key: int
    rewards: np.ndarray
    version: int


def rescore_episode(template: Any, record: EpisodeRecord, scorer: Any, max_batch: int = 64) -> Rescored | None:
    """The rewards ``record`` gets from ``scorer`` now, computed as the reward wrapper computes them.

    Args:
        template: the reward wrapper's :class:`~rlrm.wrappers.episode.EpisodeReward` (its settings are
            copied: task sampling, query schedule, shaping, success detection).
        record: the stored episode.
        scorer: scores the queries (``score(queries) -> results`` with ``version`` set).
        max_batch: queries per ``score`` call.

    Returns None when the answers came from more than one model version (a swap happened meanwhile:
    try again).
    """
    planner, scorer_state = template.successor(), template.successor()
    frames = record.frames
    if frames.shape[0] != record.num_steps + 1:
        raise ValueError(f"episode {record.key} has {frames.shape[0]} frames for {record.num_steps} steps; "
                         "expected the reset frame plus one per step")
    planner.start(frames[0])
    plans = []
    for t in range(record.num_steps):
        planner.add_frame(frames[t + 1])
        plans.append(planner.queries() if planner.wants_query(env_done=t == record.num_steps - 1) else None)
    queries = [q for plan in plans if plan is not None for q in plan.queries]
    results = []
    for start in range(0, len(queries), max_batch):
        results.extend(scorer.score(queries[start : start + max_batch]))
    versions = {r.version for r in results}
    if len(versions) != 1 or None in versions:
        return None
    scorer_state.start(frames[0])
    rewards = np.zeros(record.num_steps, np.float32)
    k = 0
    for t, plan in enumerate(plans):
        answer = None
        if plan is not None:
            answer = results[k : k + len(plan.queries)]
            k += len(plan.queries)
        outcome, _ = scorer_state.finish_step(float(record.env_rewards[t]), plan, answer)
        rewards[t] = outcome.reward
    return Rescored(record.key, rewards, versions.pop())


def _served_version(scorer: Any) -> int:
    """The version ``scorer`` serves now: asked of a worker, read off an in-process scorer."""
    ask = getattr(scorer, "model_version", None)
    if callable(ask):
        return int(ask())
    return int(getattr(scorer, "version", 0) or 0)


class Rescorer:
    """Re-scores the newest finished episodes whenever the scorer serves a newer model version.

    Args:
        scorer: the run's reward source (a ``RewardClient`` to a worker, a ``LocalScorer``); it must name
            the version behind its results.
        template: the reward wrapper's :class:`~rlrm.wrappers.episode.EpisodeReward` (settings copied).
        max_episodes: episodes kept (the oldest are dropped; their transitions keep their rewards).
        poll_s: seconds between looks at the served version when there is nothing to do.

    Thread use: :meth:`add_episode` from the env's thread, :meth:`poll` from the learner's, the work on
    its own daemon thread (:meth:`start`). :attr:`rescored` counts episodes re-scored.

    >>> rescorer = Rescorer(scorer, env.get_wrapper_attr("episode_reward")).start()   # doctest: +SKIP
    >>> model.replay_buffer.attach_rescorer(rescorer)                                  # doctest: +SKIP
    """

    def __init__(self, scorer: Any, template: Any, max_episodes: int = 200, poll_s: float = 1.0) -> None:
        if max_episodes < 1:
            raise ValueError(f"max_episodes must be >= 1, got {max_episodes!r}")
        self.scorer = scorer
        self.template = template
        self.max_episodes = int(max_episodes)
        self.poll_s = float(poll_s)
        self.rescored = 0
        self.version = 0  # the newest version seen served
        self._episodes: collections.OrderedDict[int, EpisodeRecord] = collections.OrderedDict()
        self._scored_by: dict[int, int] = {}  # key -> version behind its current rewards
        self._done: list[Rescored] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def add_episode(self, record: EpisodeRecord) -> None:
        """Keep a finished episode (an :class:`~rlrm.rl.episodes.EpisodeCollector` sink)."""
        with self._lock:
            self._episodes[record.key] = record
            self._scored_by[record.key] = record.version
            while len(self._episodes) > self.max_episodes:
                old, _ = self._episodes.popitem(last=False)
                self._scored_by.pop(old, None)
        self._wake.set()

    def poll(self) -> list[Rescored]:
        """The episodes re-scored since the last call (raises the background thread's error, if it died)."""
        if self.error is not None:
            raise RuntimeError(f"the re-scoring thread failed: {self.error!r}") from self.error
        with self._lock:
            done, self._done = self._done, []
        return done

    def step(self) -> int:
        """Re-score every kept episode scored by an older version than the one served now; returns how many."""
        self.version = max(self.version, _served_version(self.scorer))
        with self._lock:
            stale = [self._episodes[k] for k, v in self._scored_by.items() if v < self.version]
        count = 0
        for record in stale:
            if self._stop.is_set():
                break
            out = rescore_episode(self.template, record, self.scorer)
            if out is None:  # a swap while it was being scored: the next round takes it
                continue
            self.version = max(self.version, out.version)
            with self._lock:
                if record.key in self._episodes:
                    self._scored_by[record.key] = out.version
                    self._done.append(out)
                    count += 1
        self.rescored += count
        return count

    def start(self) -> Rescorer:
        """Start the background thread."""
        if self._thread is not None:
            raise RuntimeError("rescorer already started")
        self._thread = threading.Thread(target=self._loop, name="rlrm-rescorer", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                if self.step() == 0:
                    self._wake.wait(self.poll_s)
                    self._wake.clear()
        except BaseException as e:  # noqa: BLE001 - handed to the learner's thread by poll()
            log.exception("re-scoring stopped")
            self.error = e

    def stop(self) -> None:
        """Stop the background thread (after the episode in progress)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(120.0)
