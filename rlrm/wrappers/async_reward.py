"""Asynchronous Robometer rewards: the env steps at its own rate, rewards are filled in later.

* :class:`AsyncRewardLabeler` - keeps the in-flight ``score_async`` futures of every episode and
  turns finished ones, in step order, into :class:`StepLabel` (reward, termination), with the
  same shaping and success detection as the synchronous wrapper.
* :class:`AsyncRobometerReward` - env wrapper: each step sends a reward query in the
  background, returns a placeholder reward and puts a ticket in ``info["rlrm_ticket"]``
  (:data:`TICKET_KEY`). Same arguments as :class:`rlrm.wrappers.RobometerReward` (``source=``).

Conventions are those of the synchronous :class:`rlrm.wrappers.RobometerReward` (see
``rlrm.wrappers.episode``): the reward at step t uses p_t, the value at the current frame;
p_{-1} is the first value of the episode's first query (it starts at the reset frame and
attention is causal); the success bonus is paid on the step the detector first fires.
* :class:`StepLabel` - the finished reward of one ticket.

On a real robot the model takes longer than a control step (hundreds of ms for the 4B
model); waiting would slow the control loop to the model's rate. Here the loop keeps its
rate and the relabelling replay buffer (:mod:`rlrm.rl.relabel_buffer`) writes each reward
when it arrives; learning only samples labelled transitions.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from rlrm.sampling import sample_indices
from rlrm.config import RewardConfig
from rlrm.shaping import RewardState, Shaping, SuccessDetector
from rlrm.types import RewardQuery
from rlrm.views import ViewMeanScorer, check_views
from rlrm.wrappers.frames import FrameBuffer, FrameSource
from rlrm.wrappers.reward import open_scorer, resolve_task

__all__ = ["StepLabel", "AsyncRewardLabeler", "AsyncRobometerReward", "TICKET_KEY"]

TICKET_KEY = "rlrm_ticket"  # info key of a step's ticket; the relabelling replay buffer reads it

log = logging.getLogger(__name__)


@dataclass
class StepLabel:
    """The finished reward of one env step.

    Args:
        ticket: the id the step carried in ``info["rlrm_ticket"]``.
        reward: shaped reward (see :class:`rlrm.shaping.Shaping`).
        terminated: the success detector has fired (and termination on success is on).
        progress / success_prob: the model's outputs for the step's frame.
        terms: the weighted reward terms.
        latency_ms: time from request to answer.
    """

    ticket: int
    reward: float
    terminated: bool
    progress: float
    success_prob: float
    terms: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0


@dataclass
class _Pending:
    future: cf.Future
    ticket: int
    env_reward: float
    sent_at: float


class _EpisodeLabels:
    """One episode's in-flight requests and its reward state machine (:class:`rlrm.shaping.RewardState`)."""

    def __init__(self, state: RewardState) -> None:
        self.pending: deque[_Pending] = deque()
        self.state = state
        self.closed = False  # no more steps will be submitted


class AsyncRewardLabeler:
    """Turns background reward requests into per-step labels, in step order within each episode.

    The reward for step t needs the progress at t and at t-1 (``delta``/``potential``) and the
    success detector's history, so labels of one episode are produced strictly in order. The
    first query of an episode must start at the reset frame (it does for both sampling modes,
    it holds two frames): its first value is the progress baseline p_{-1}, as in the
    synchronous wrapper.

    Args:
        shaping: how progress/success/env reward become one reward.
        success: success detector settings (each episode gets a fresh copy).
        terminate_on_success: label the detection step as terminal (that step only, as the synchronous
            wrapper ends the episode there; its reward includes the value of staying in success).

    >>> import concurrent.futures as cf
    >>> from rlrm.types import RewardResult
    >>> lab = AsyncRewardLabeler()
    >>> ep = lab.start_episode()
    >>> def done(p, s):
    ...     f = cf.Future(); f.set_result([RewardResult([p], [s])]); return f
    >>> t = lab.submit_step(ep, done([0.1, 0.4], [0.0, 0.0]), env_reward=0.0)
    >>> [(x.ticket, round(x.reward, 2)) for x in lab.poll()]
    [(0, 0.4)]
    """

    def __init__(
        self,
        shaping: Shaping | None = None,
        success: SuccessDetector | None = SuccessDetector(),  # noqa: B008 - copied per episode, never mutated
        terminate_on_success: bool = RewardConfig.terminate_on_success,
    ) -> None:
        self.shaping = shaping if shaping is not None else Shaping()
        self.success = success  # None: no success detection (as in RobometerReward)
        self.terminate_on_success = bool(terminate_on_success) and success is not None
        self._episodes: dict[int, _EpisodeLabels] = {}
        self._tickets = itertools.count()
        self._episode_ids = itertools.count()
        self.finished: deque[StepLabel] = deque(maxlen=10_000)  # recent labels, drained by the TB callback

    def start_episode(self) -> int:
        """Open a new episode and return its id; the previous ones keep draining."""
        ep = next(self._episode_ids)
        self._episodes[ep] = _EpisodeLabels(RewardState(self.shaping, self.success, self.terminate_on_success))
        return ep

    def end_episode(self, ep: int) -> None:
        """Mark ``ep`` finished: it is dropped once its last label is out."""
        if ep in self._episodes:
            self._episodes[ep].closed = True

    def submit_step(self, ep: int, future: cf.Future, env_reward: float) -> int:
        """Register the request for one step of ``ep``; returns the step's ticket."""
        ticket = next(self._tickets)
        self._episodes[ep].pending.append(_Pending(future, ticket, float(env_reward), time.monotonic()))
        return ticket

    @property
    def num_pending(self) -> int:
        """Requests not turned into labels yet."""
        return sum(len(e.pending) for e in self._episodes.values())

    def poll(self) -> list[StepLabel]:
        """Labels whose requests (and all earlier ones of the same episode) have finished.

        A failed request re-raises its exception here: a lost reward is an error, not a zero.
        """
        labels: list[StepLabel] = []
        now = time.monotonic()
        for ep in list(self._episodes):
            state = self._episodes[ep]
            while state.pending and state.pending[0].future.done():
                item = state.pending.popleft()
                result = item.future.result()[0]
                state.state.set_baseline(float(result.progress[0]))  # p_{-1}: the reset frame (first query only)
                label = self._label(state, item, float(result.progress[-1]), float(result.success[-1]), now)
                labels.append(label)
                self.finished.append(label)
            if state.closed and not state.pending:
                del self._episodes[ep]
        return labels

    def _label(self, state: _EpisodeLabels, item: _Pending, progress: float, success_prob: float,
               now: float) -> StepLabel:
        outcome = state.state.step(item.env_reward, progress, success_prob)
        return StepLabel(
            ticket=item.ticket, reward=outcome.reward,
            terminated=outcome.terminate,  # the detection step only, as in RobometerReward
            progress=progress, success_prob=success_prob, terms=outcome.terms,
            latency_ms=(now - item.sent_at) * 1000.0,
        )

    def wait(self, timeout_s: float | None = None) -> list[StepLabel]:
        """Block until the oldest request of some episode finishes (or ``timeout_s``), then :meth:`poll`."""
        heads = [e.pending[0].future for e in self._episodes.values() if e.pending]
        if heads:
            cf.wait(heads, timeout=timeout_s, return_when=cf.FIRST_COMPLETED)
        return self.poll()


class AsyncRobometerReward(gym.Wrapper):
    """Score every step in the background; return a placeholder reward and a ticket.

    ``reset`` starts the episode's frames with the reset frame; each ``step`` sends frames 0..t
    subsampled to ``max_frames`` (:func:`rlrm.sampling.sample_indices`) with ``scorer.score_async``
    and returns reward ``placeholder`` at once, with ``info["rlrm_ticket"]``. With a scorer that
    has ``score_deferred`` (a :class:`~rlrm.transport.RewardClient`) the step only copies the frame
    and enqueues: gathering, encoding and sending happen on the client's I/O thread. Rewards and
    success terminations arrive through :attr:`labeler` (consumed by the relabelling replay
    buffer). The env's own termination and truncation pass through unchanged.

    Args:
        env: env whose ``render()`` (or ``obs[camera]``) gives (H, W, 3) uint8 frames.
        task: instruction sentence; None reads ``env.unwrapped.task``.
        source: what :class:`rlrm.wrappers.RobometerReward` takes: a worker URL, a ``RewardClient``, a
            ``RewardModel`` or any scorer with ``score_async`` (:func:`rlrm.transport.make_scorer`). The
            wrapper closes a scorer it created.
        camera: None (``env.render()``), an observation key or render camera name, or a list of them (tiled).
        views: ``"tile"`` or ``"mean"`` with several cameras (see :class:`rlrm.wrappers.RobometerReward`).
        max_frames / sampling: which frames each query sends.
        shaping / success / terminate_on_success: as :class:`AsyncRewardLabeler`.
        placeholder: reward returned by ``step`` until the real one is known.

    >>> import gymnasium as gym, envs
    >>> from rlrm.models import make_reward_model
    >>> env = AsyncRobometerReward(gym.make("rlrm/FetchReach-v0", image_size=64), None,
    ...                            source=make_reward_model("tiny"))
    >>> _ = env.reset(seed=0)
    >>> _, r, *_, info = env.step(env.action_space.sample())
    >>> r, info["rlrm_ticket"]
    (0.0, 0)
    """

    def __init__(
        self,
        env: gym.Env,
        task: str | None,
        source: Any,
        camera: str | list[str] | None = None,
        max_frames: int = RewardConfig.max_frames,
        sampling: str = RewardConfig.sampling,
        shaping: Shaping | None = None,
        success: SuccessDetector | None = SuccessDetector(),  # noqa: B008 - copied per episode, never mutated
        terminate_on_success: bool = RewardConfig.terminate_on_success,
        placeholder: float = 0.0,
        views: str = RewardConfig.views,
    ) -> None:
        super().__init__(env)
        sample_indices(1, max_frames, sampling)  # validates max_frames/sampling now, not mid-episode
        self.task = resolve_task(env, task)
        if callable(getattr(source, "score_async", None)):  # any scorer that answers with futures, as given
            scorer, self._owns_scorer = source, False
        else:
            scorer, self._owns_scorer = open_scorer(source)
        self.scorer = scorer
        self.frame_source = FrameSource(env, camera)
        self.views = check_views(views)
        if views == "mean" and self.frame_source.cameras and len(self.frame_source.cameras) > 1:
            self.scorer = ViewMeanScorer(scorer, lambda: self.frame_source.view_widths, owns=self._owns_scorer)
        self.frame_buffer = FrameBuffer()
        self.max_frames = int(max_frames)
        self.sampling = sampling
        self.placeholder = float(placeholder)
        self.labeler = AsyncRewardLabeler(shaping, success, terminate_on_success)
        self._episode: int | None = None

    def _query(self) -> cf.Future:
        buffer, num_frames, episode_id = self.frame_buffer, len(self.frame_buffer), f"async:{self._episode}"

        def build() -> list[RewardQuery]:
            # frames 0..num_frames-1 of this episode's buffer never change (reset starts a new buffer)
            idx = sample_indices(num_frames, self.max_frames, self.sampling)
            return [RewardQuery(buffer.gather(idx), self.task, episode_id=episode_id, frame_index=idx)]

        deferred = getattr(self.scorer, "score_deferred", None)
        if callable(deferred):  # a RewardClient gathers, encodes and sends on its I/O thread
            return deferred(build)
        return self.scorer.score_async(build())

    def reset(self, **kwargs):
        """Reset the env and start a new episode of frames with the reset frame."""
        obs, info = self.env.reset(**kwargs)
        if self._episode is not None:
            self.labeler.end_episode(self._episode)
        self._episode = self.labeler.start_episode()
        self.frame_buffer = FrameBuffer()  # not clear(): queries still being built may read the old one
        self.frame_buffer.append(self.frame_source.read(obs))
        return obs, info

    def step(self, action):
        """Step the env, send the step's query in the background, return the placeholder reward."""
        if self._episode is None:
            raise RuntimeError("Cannot call env.step() before calling env.reset()")
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        self.frame_buffer.append(self.frame_source.read(obs))
        ticket = self.labeler.submit_step(self._episode, self._query(), float(env_reward))
        info = dict(info)
        info[TICKET_KEY] = ticket
        if terminated or truncated:
            self.labeler.end_episode(self._episode)
        return obs, self.placeholder, terminated, truncated, info

    def close(self) -> None:
        """Close the env, and the scorer if this wrapper created it."""
        try:
            super().close()
        finally:
            if self._owns_scorer:
                self.scorer.close()
