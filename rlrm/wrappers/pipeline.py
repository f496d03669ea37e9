"""The one reward pipeline every Robometer wrapper holds: frames -> queries -> scorer -> reward and termination.

* :class:`RewardPipeline` - for ``num_envs`` envs (1 for the single-env wrappers): the frame check and
  tiling (:class:`~rlrm.wrappers.frames.FrameSource`), one :class:`~rlrm.wrappers.episode.EpisodeReward`
  per env (frames, query schedule, the :class:`~rlrm.shaping.RewardState`), the scorer, timeout handling
  and query statistics. Two ways to complete a step, with the same arguments, the same
  ``info["rlrm"]`` and the same success and termination semantics:

  - synchronously, :meth:`RewardPipeline.finish`: one batched ``scorer.score`` call for every env due
    for a query (:class:`~rlrm.wrappers.RobometerReward`, both vector wrappers);
  - asynchronously, :meth:`RewardPipeline.submit`: the query goes out with ``score_async`` (or a
    client's ``score_deferred``) and the step is completed when its answer arrives, in step order,
    by :attr:`RewardPipeline.labeler` (:class:`~rlrm.wrappers.AsyncRobometerReward`).
* :class:`AsyncRewardLabeler` - the asynchronous completion: in-flight steps per episode, turned into
  :class:`StepLabel` (reward, termination, the step's ``info["rlrm"]``) in step order.
* :class:`StepLabel` - one completed asynchronous step.

>>> from rlrm.models import make_reward_model
>>> import numpy as np
>>> pipe = RewardPipeline(1, "reach the target", make_reward_model("tiny"))
>>> pipe.start(0, np.zeros((32, 32, 3), np.uint8))
>>> rewards, infos, terminate = pipe.finish([np.ones((32, 32, 3), np.uint8)], [0.0], [False], [False])
>>> infos[0]["frame_index"], bool(terminate[0])
([0, 1], False)
>>> pipe.close()
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlrm.config import RewardConfig
from rlrm.shaping import Shaping, SuccessDetector
from rlrm.views import ViewMeanScorer, check_views
from rlrm.wrappers.episode import (
    ON_TIMEOUT,
    EpisodeReward,
    RewardStats,
    StepQuery,
    resolve_when,
    score_timed,
    timeout_message,
)
from rlrm.wrappers.frames import FrameBuffer, FrameSource, frame_from_observation

__all__ = ["RewardPipeline", "AsyncRewardLabeler", "StepLabel"]

log = logging.getLogger(__name__)


@dataclass
class StepLabel:
    """The finished reward of one asynchronously scored env step.

    Args:
        ticket: the id the step carried in ``info["rlrm_ticket"]``.
        reward: shaped reward (see :class:`rlrm.shaping.Shaping`).
        terminated: success was first detected on this step and termination on success is on.
        progress / success_prob: the model's outputs for the step's frame (held ones between queries).
        terms: the weighted reward terms.
        latency_ms: time from request to answer.
        info: the step's ``info["rlrm"]``, as :class:`~rlrm.wrappers.RobometerReward` publishes it.
    """

    ticket: int
    reward: float
    terminated: bool
    progress: float
    success_prob: float
    terms: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Pending:
    ticket: int
    step_query: StepQuery | None
    future: cf.Future | None  # None: a step without a query (``every`` > 1), completed with held values
    env_reward: float
    sent_at: float


class AsyncRewardLabeler:
    """Completes asynchronously scored steps in step order within each episode.

    The reward for step t needs the progress at t-1 and the detector's history, so the steps of one
    episode are completed strictly in order, each by its :class:`~rlrm.wrappers.episode.EpisodeReward`
    (the same ``finish_step`` the synchronous wrappers call). Episodes drain independently.

    Args:
        on_timeout: ``"raise"`` (a failed or timed-out request re-raises from :meth:`poll`) or ``"hold"``
            (a timed-out step keeps the last progress and is flagged ``stale``).
        timing_in_info: put ``latency_ms`` in each label's ``info``.
        stats: where query latencies are recorded (:class:`~rlrm.wrappers.episode.RewardStats`).
    """

    def __init__(self, on_timeout: str = RewardConfig.on_timeout, timing_in_info: bool = False,
                 stats: RewardStats | None = None) -> None:
        if on_timeout not in ON_TIMEOUT:
            raise ValueError(f"on_timeout must be one of {ON_TIMEOUT}, got {on_timeout!r}")
        self.on_timeout = on_timeout
        self.timing_in_info = bool(timing_in_info)
        self.stats = stats if stats is not None else RewardStats()
        self._queues: dict[int, tuple[EpisodeReward, deque[_Pending]]] = {}
        self._closed: set[int] = set()
        self._tickets = itertools.count()
        self.finished: deque[StepLabel] = deque(maxlen=10_000)  # recent labels, drained by the TB callback

    def submit(self, episode: EpisodeReward, step_query: StepQuery | None, future: cf.Future | None,
               env_reward: float) -> int:
        """Register one step of ``episode`` (its query's future, or None when not queried); returns its ticket."""
        ticket = next(self._tickets)
        _, pending = self._queues.setdefault(id(episode), (episode, deque()))
        self._closed.discard(id(episode))
        pending.append(_Pending(ticket, step_query, future, float(env_reward), time.monotonic()))
        return ticket

    def end_episode(self, episode: EpisodeReward) -> None:
        """No more steps of ``episode`` will come: it is dropped once its last label is out."""
        self._closed.add(id(episode))
        self._drop_finished()

    def has_pending(self, episode: EpisodeReward) -> bool:
        """Whether steps of ``episode`` still wait for their answers."""
        entry = self._queues.get(id(episode))
        return bool(entry and entry[1])

    @property
    def num_pending(self) -> int:
        """Steps not turned into labels yet."""
        return sum(len(pending) for _, pending in self._queues.values())

    def poll(self) -> list[StepLabel]:
        """Labels of the steps whose answers (and those of all earlier steps of their episode) have arrived.

        A failed request re-raises its exception here (a lost reward is an error, not a zero), unless it
        timed out and ``on_timeout="hold"``.
        """
        labels: list[StepLabel] = []
        now = time.monotonic()
        for episode, pending in list(self._queues.values()):
            while pending and (pending[0].future is None or pending[0].future.done()):
                item = pending.popleft()
                labels.append(self._label(episode, item, now))
        self._drop_finished()
        self.finished.extend(labels)
        return labels

    def _label(self, episode: EpisodeReward, item: _Pending, now: float) -> StepLabel:
        results = None
        latency_ms = (now - item.sent_at) * 1000.0
        if item.future is not None:
            try:
                results = item.future.result()
            except TimeoutError as e:
                if self.on_timeout == "raise":
                    raise TimeoutError(timeout_message(len(item.step_query.queries), latency_ms, e)) from e
                log.warning("reward query timed out after %.0f ms, holding the last reward: %s", latency_ms, e)
            self.stats.record(latency_ms, timed_out=results is None)
        outcome, info = episode.finish_step(item.env_reward, item.step_query, results)
        if self.timing_in_info:
            info["latency_ms"] = latency_ms if item.future is not None else None
        return StepLabel(ticket=item.ticket, reward=outcome.reward, terminated=outcome.terminate,
                         progress=outcome.progress, success_prob=outcome.success_prob, terms=outcome.terms,
                         latency_ms=latency_ms, info=info)

    def _drop_finished(self) -> None:
        for key in [k for k in self._closed if not self._queues.get(k, (None, None))[1]]:
            self._queues.pop(key, None)
            self._closed.discard(key)

    def wait(self, timeout_s: float | None = None) -> list[StepLabel]:
        """Block until the oldest step of some episode has its answer (or ``timeout_s``), then :meth:`poll`."""
        heads = [p[0].future for _, p in self._queues.values() if p and p[0].future is not None]
        if heads and not any(p and p[0].future is None for _, p in self._queues.values()):
            cf.wait(heads, timeout=timeout_s, return_when=cf.FIRST_COMPLETED)
        return self.poll()


class RewardPipeline:
    """Robometer rewards for ``num_envs`` envs: what every reward wrapper holds (it does not inherit it).

    Per env: :meth:`start` with the reset frame; per step either :meth:`finish` (synchronous, all envs
    in one batched request) or :meth:`submit` (asynchronous, completed by :attr:`labeler`).

    Args:
        num_envs: envs (sub-envs of a vector env; 1 for a single env).
        task: one instruction, or one per env.
        source: a worker URL, a ``RewardClient``, a ``RewardModel`` or any scorer (:func:`rlrm.transport.make_scorer`);
            closed by :meth:`close` only when created here.
        camera: None (the wrapper renders), or observation keys / render cameras (tiled).
        env: the single env frames are read from (:class:`~rlrm.wrappers.frames.FrameSource`); None for vector envs.
        max_frames / sampling / every / when / views / on_timeout / terminate_on_success: see
            :class:`rlrm.wrappers.RobometerReward`; defaults are :class:`rlrm.config.RewardConfig`'s.
        shaping: :class:`rlrm.shaping.Shaping` (None: its defaults).
        success: :class:`rlrm.shaping.SuccessDetector` settings (copied per episode), or None: no detection.
            With ``when="episode_end"`` (one success probability per episode) it votes on that one
            (``window=1, min_votes=1``, same threshold).
        timing_in_info: also put the query latency in ``info["rlrm"]["latency_ms"]``.
        name: prefix of the episode ids sent to the worker (``<name><i>:<episode>``).
    """

    def __init__(
        self,
        num_envs: int,
        task: str | Sequence[str] | None,
        source: Any,
        camera: str | Sequence[str] | None = None,
        *,
        env: Any = None,
        max_frames: int = RewardConfig.max_frames,
        sampling: str = RewardConfig.sampling,
        every: int = RewardConfig.every,
        shaping: Shaping | None = None,
        success: SuccessDetector | None = SuccessDetector(),  # noqa: B008 - copied per episode, never mutated
        terminate_on_success: bool = RewardConfig.terminate_on_success,
        on_timeout: str = RewardConfig.on_timeout,
        views: str = RewardConfig.views,
        timing_in_info: bool = False,
        name: str = "env",
        when: str = RewardConfig.when,
    ) -> None:
        if on_timeout not in ON_TIMEOUT:
            raise ValueError(f"on_timeout must be one of {ON_TIMEOUT}, got {on_timeout!r}")
        tasks = self._resolve_tasks(task, num_envs)
        self.frames = FrameSource(env, camera)
        self.views = check_views(views)
        self.on_timeout = on_timeout
        self.timing_in_info = bool(timing_in_info)
        self.terminate_on_success = bool(terminate_on_success) and success is not None
        resolve_when(when if when != "auto" else "prefix", None)  # a bad value fails before a scorer is opened
        from rlrm.wrappers.reward import open_scorer

        if callable(getattr(source, "score_async", None)) and not callable(getattr(source, "score", None)):
            self.scorer, self._owns_scorer = source, False  # an answer-with-futures scorer, for async completion
        else:
            self.scorer, self._owns_scorer = open_scorer(source)
        try:
            self.when = resolve_when(when, self.scorer)  # "auto": the model says (RoboReward: episode_end)
            if self.when == "episode_end" and success is not None and success.min_votes > 1:
                # one fresh success probability per episode: a detector needing several votes could never fire
                log.info("reward scored once per episode: success detection votes on that one probability "
                         "(threshold %.2f; was window=%d, min_votes=%d)", success.threshold, success.window,
                         success.min_votes)
                success = SuccessDetector(threshold=success.threshold, window=1, min_votes=1)
            self.episodes = [
                EpisodeReward(tasks[i], max_frames=max_frames, sampling=sampling, every=every,
                              shaping=shaping if shaping is not None else Shaping(), success=success,
                              name=name if num_envs == 1 and env is not None else f"{name}{i}",
                              terminate_on_success=terminate_on_success, when=self.when)
                for i in range(num_envs)
            ]
        except Exception:
            if self._owns_scorer:  # a scorer opened here (a worker connection) must not outlive a failed wrapper
                self.scorer.close()
            raise
        if self.views == "mean" and self.cameras and len(self.cameras) > 1:
            self.scorer = ViewMeanScorer(self.scorer, lambda: self.frames.view_widths, owns=self._owns_scorer)
        self.reward_stats = RewardStats()
        self.labeler = AsyncRewardLabeler(on_timeout, self.timing_in_info, self.reward_stats)

    @staticmethod
    def _resolve_tasks(task: Any, num_envs: int) -> list[str]:
        if isinstance(task, str):
            return [task] * num_envs
        if task is None:
            raise ValueError("task is required for vector envs: one instruction, or one per sub-env")
        tasks = list(task)
        if len(tasks) != num_envs:
            raise ValueError(f"task must be one instruction or {num_envs} (one per sub-env), got {len(tasks)}")
        return tasks

    @property
    def cameras(self) -> list[str] | None:
        """The camera names (None: the wrapper renders)."""
        return self.frames.cameras

    def frames_from(self, obs: Any, render_camera: Callable[[str], Sequence[np.ndarray]], num_envs: int,
                    ) -> list[np.ndarray]:
        """Per-env frames for ``self.cameras``: batched observation keys, else ``render_camera(name)``."""
        per_camera = []
        for name in self.cameras or []:
            try:
                images = frame_from_observation(obs, name)
            except (KeyError, ValueError):
                images = render_camera(name)
            per_camera.append(images)
        return [self.frames.tile([np.asarray(images[i]) for images in per_camera], f"sub-env {i} cameras {self.cameras}")
                for i in range(num_envs)]

    def start(self, i: int, frame: np.ndarray) -> None:
        """Start env ``i``'s next episode with its reset frame (the previous one may still drain asynchronously)."""
        episode = self.episodes[i]
        if self.labeler.has_pending(episode):  # its frames stay readable until its last answer is in
            self.labeler.end_episode(episode)
            episode = self.episodes[i] = episode.successor()
        episode.start(frame)

    # -- synchronous ------------------------------------------------------------------------------------

    def _score_due(self, due: list[int]) -> tuple[dict[int, Any], float | None]:
        """One batched scorer call for the episodes in ``due``; returns per-env (step query, results)."""
        if not due:
            return {}, None
        spans, batch = [], []
        for i in due:
            step_query = self.episodes[i].queries()
            spans.append((i, step_query, len(batch), len(batch) + len(step_query.queries)))
            batch.extend(step_query.queries)
        results, latency_ms = score_timed(self.scorer, batch, self.on_timeout)
        self.reward_stats.record(latency_ms, timed_out=results is None)
        if results is None:
            return {i: (sq, None) for i, sq, _, _ in spans}, latency_ms
        return {i: (sq, results[a:b]) for i, sq, a, b in spans}, latency_ms

    def finish(self, frames_after: Sequence[np.ndarray | None], env_rewards: Sequence[float], dones: Sequence[bool],
               restarting: Sequence[bool]) -> tuple[np.ndarray, list[dict | None], np.ndarray]:
        """Add each env's new frame, score the due episodes in one batch; returns rewards, infos, terminate flags.

        ``restarting[i]``: env ``i`` took no real step (a vector env's auto-reset step); its info is None.
        """
        n = len(self.episodes)
        due = []
        for i in range(n):
            if restarting[i]:
                continue
            self.episodes[i].add_frame(frames_after[i])
            if self.episodes[i].wants_query(bool(dones[i])):
                due.append(i)
        results, latency_ms = self._score_due(due)
        rewards = np.zeros(n, dtype=np.float64)
        terminate = np.zeros(n, dtype=bool)
        infos: list[dict | None] = [None] * n
        for i in range(n):
            if restarting[i]:
                continue
            step_query, answer = results.get(i, (None, None))
            outcome, infos[i] = self.episodes[i].finish_step(float(env_rewards[i]), step_query, answer)
            rewards[i], terminate[i] = outcome.reward, outcome.terminate
            if self.timing_in_info:
                infos[i]["latency_ms"] = latency_ms if step_query is not None else None
        return rewards, infos, terminate

    # -- asynchronous -----------------------------------------------------------------------------------

    def submit(self, i: int, frame: np.ndarray, env_reward: float, done: bool) -> int:
        """Add env ``i``'s new frame and send its query in the background; returns the step's ticket.

        The step is completed (reward, termination, ``info["rlrm"]``) by :attr:`labeler` when the answer
        arrives. With a scorer that has ``score_deferred`` (a ``RewardClient``) the frames are gathered and
        encoded on the client's I/O thread, so the control loop only copies the frame.
        """
        episode = self.episodes[i]
        episode.add_frame(frame)
        step_query = future = None
        if episode.wants_query(bool(done)):
            step_query = episode.plan()
            deferred = getattr(self.scorer, "score_deferred", None)
            if callable(deferred):
                future = deferred(lambda: episode.build(step_query))
            else:
                future = self.scorer.score_async(episode.build(step_query))
        ticket = self.labeler.submit(episode, step_query, future, env_reward)
        if done:
            self.labeler.end_episode(episode)
        return ticket

    def close(self) -> None:
        """Close the scorer if the pipeline created it."""
        if self._owns_scorer:
            self.scorer.close()


class PipelineAccess:
    """What the single-env reward wrappers show of their :class:`RewardPipeline` (``self.pipeline``), in one place."""

    pipeline: RewardPipeline

    @property
    def episode_reward(self) -> EpisodeReward:
        """This episode's :class:`~rlrm.wrappers.episode.EpisodeReward` (frames, schedule, reward state)."""
        return self.pipeline.episodes[0]

    @property
    def frame_source(self) -> FrameSource:
        """Where frames come from (``env.render()`` or cameras) and their checks."""
        return self.pipeline.frames

    @property
    def frame_buffer(self) -> FrameBuffer:
        """This episode's frames (reset frame first); read by :class:`~rlrm.wrappers.video.RewardVideoRecorder`."""
        return self.episode_reward.buffer

    @property
    def scorer(self) -> Any:
        """The scorer queries go to."""
        return self.pipeline.scorer

    @property
    def reward_stats(self) -> RewardStats:
        """Query counts and latencies (:class:`rlrm.wrappers.episode.RewardStats`)."""
        return self.pipeline.reward_stats

    @property
    def terminate_on_success(self) -> bool:
        """Episodes end on detected success."""
        return self.pipeline.terminate_on_success

    @property
    def task(self) -> str:
        """The instruction sent with every query."""
        return self.episode_reward.task
