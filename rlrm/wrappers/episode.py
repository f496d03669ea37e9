"""Per-episode reward bookkeeping shared by the single-env and the vector wrappers.

* :class:`EpisodeReward` - one episode's frames, when to query and which frames to send; the
  reward itself comes from the one state machine :class:`rlrm.shaping.RewardState` (progress
  baseline p_{-1}, held progress, success detector, one-time bonus).
* :class:`StepQuery` - the queries planned for one step, handed back explicitly to
  :meth:`EpisodeReward.finish_step` with their results.
* :class:`RewardStats` - query counts and latencies of a wrapper (for TensorBoard; never in step
  info, so infos stay reproducible and gymnasium's ``check_env`` passes).
* :func:`score_timed` - one scorer call with its latency, turning a timeout into the
  configured behaviour (raise an instructive error, or report it for holding).

Progress conventions (docs/architecture.md, "Reward and termination"):

* The reward at step t uses the model's value at the last sent frame, the current one: p_t.
* p_{-1} is the model's progress for the reset frame alone. Attention is causal, so it is the
  first value of any query that starts at frame 0 (always true for ``sampling="prefix"``);
  otherwise the reset frame is sent as an extra one-frame query in the same batch, once.
  Hence ``delta`` rewards sum over an episode to p_last - p_{-1}.
* Queries happen on steps 0, k, 2k, ... (``every=k``) and on the env's final step; in between
  progress and success probability are held, so ``delta`` is 0 there and the sum still telescopes.
  With ``when="episode_end"`` only the env's final step is queried: the steps before it have no
  progress term, and the last one pays f(p_last) (``delta``: p_last - p_{-1}).
  The detector only sees fresh (queried, not stale) success probabilities.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlrm.sampling import SAMPLING_MODES, sample_indices
from rlrm.shaping import RewardState, Shaping, SuccessDetector
from rlrm.types import RewardQuery, RewardResult, check_results
from rlrm.wrappers.frames import FrameBuffer

__all__ = ["EpisodeReward", "StepQuery", "RewardStats", "score_timed", "timeout_message", "ON_TIMEOUT", "WHEN",
           "resolve_when"]

log = logging.getLogger(__name__)

ON_TIMEOUT = ("raise", "hold")
WHEN = ("auto", "prefix", "episode_end")


def resolve_when(when: str, scorer: Any) -> str:
    """``"prefix"`` or ``"episode_end"``: ``when`` itself, or for ``"auto"`` the model's own choice
    (``info().extra["when"]``: RoboReward judges whole episodes; Robometer, and anything silent or without
    ``info()``, scores prefixes)."""
    if when not in WHEN:
        raise ValueError(f"when must be one of {WHEN}, got {when!r}")
    if when != "auto":
        return when
    info = getattr(scorer, "info", None)
    try:
        extra = info().extra if callable(info) else {}
    except NotImplementedError:  # a scorer that does not describe its model (BaseScorer's default): silent
        extra = {}
    chosen = (extra or {}).get("when", "prefix")
    return chosen if chosen in WHEN[1:] else "prefix"


def _timeout_errors() -> tuple[type[BaseException], ...]:
    # The transport may define its own timeout class; it is expected to subclass TimeoutError.
    return (TimeoutError,)


def timeout_message(num_queries: int, latency_ms: float, error: BaseException) -> str:
    """The error of a reward query that timed out with ``on_timeout="raise"``: what happened and what to change."""
    return (f"reward query for {num_queries} item(s) timed out after {latency_ms:.0f} ms ({error}); "
            "check the reward worker, raise its timeout_ms, or pass on_timeout='hold' to keep the "
            "last reward and flag info['rlrm']['stale']")


def score_timed(scorer: Any, queries: list[RewardQuery], on_timeout: str) -> tuple[list[RewardResult] | None, float]:
    """Score ``queries`` with ``scorer``; return ``(results, latency_ms)``, results None after a held timeout.

    With ``on_timeout="raise"`` a timeout is re-raised as a TimeoutError that says how to hold instead.
    """
    t0 = time.perf_counter()
    try:
        results = scorer.score(queries)
    except _timeout_errors() as e:
        latency_ms = (time.perf_counter() - t0) * 1e3
        if on_timeout == "raise":
            raise TimeoutError(timeout_message(len(queries), latency_ms, e)) from e
        log.warning("reward query timed out after %.0f ms, holding the last reward: %s", latency_ms, e)
        return None, latency_ms
    latency_ms = (time.perf_counter() - t0) * 1e3
    return check_results(queries, results, type(scorer).__name__), latency_ms


@dataclass
class StepQuery:
    """The queries of one step: the sampled frames (``indices``, episode step numbers) and, while
    p_{-1} is unknown and the sample does not start at the reset frame, the reset frame alone
    (``with_reset_frame``). ``queries`` is filled by :meth:`EpisodeReward.build`."""

    indices: np.ndarray
    queries: list[RewardQuery] = field(default_factory=list)
    with_reset_frame: bool = False


@dataclass
class RewardStats:
    """Reward-query statistics of a wrapper: counts and recent latencies (for logging, not step info)."""

    queries: int = 0
    timeouts: int = 0
    last_latency_ms: float | None = None
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))

    def record(self, latency_ms: float | None, timed_out: bool) -> None:
        """Count one scorer call and its latency."""
        self.queries += 1
        self.timeouts += int(timed_out)
        if latency_ms is not None:
            self.last_latency_ms = float(latency_ms)
            self.latencies_ms.append(float(latency_ms))

    def drain(self) -> list[float]:
        """Latencies recorded since the last drain (the TensorBoard callback empties them)."""
        out = list(self.latencies_ms)
        self.latencies_ms.clear()
        return out


class EpisodeReward:
    """The reward state of one episode of one env: frames, query schedule, and its :class:`RewardState`.

    Usage per episode: :meth:`start` with the reset frame; per step :meth:`add_frame`, then
    if :meth:`wants_query` plan the step's :meth:`queries`, score ``step_query.queries`` (batched
    with other envs if you like) and pass both to :meth:`finish_step` (None when not queried;
    results None when the query timed out).

    Args:
        task: instruction text sent with every query.
        max_frames / sampling: see :func:`rlrm.sampling.sample_indices`.
        every: query every ``every`` steps (>= 1); the env's final step is always queried.
        when: ``"prefix"`` (on the ``every`` schedule) or ``"episode_end"`` (only on the env's final step).
        shaping: how terms combine into the reward.
        success: detector settings (copied), or None to not detect success.
        name: prefix of episode ids sent to the worker (for its logs).
        terminate_on_success: :meth:`finish_step` reports termination on the detection step.

    >>> ep = EpisodeReward("reach the target", max_frames=8, sampling="prefix", every=1,
    ...                    shaping=Shaping(progress="delta"), success=SuccessDetector())
    >>> ep.start(np.zeros((8, 8, 3), np.uint8)); ep.add_frame(np.ones((8, 8, 3), np.uint8))
    >>> sq = ep.queries()
    >>> [q.frame_index.tolist() for q in sq.queries]
    [[0, 1]]
    >>> res = [RewardResult(progress=[0.2, 0.5], success=[0.1, 0.3])]
    >>> out, info = ep.finish_step(0.0, sq, res)
    >>> round(out.reward, 3), info["progress"], out.newly_detected
    (0.3, 0.5, False)
    """

    def __init__(
        self,
        task: str,
        max_frames: int,
        sampling: str,
        every: int,
        shaping: Shaping,
        success: SuccessDetector | None,
        name: str = "env",
        terminate_on_success: bool = False,
        when: str = "prefix",
    ) -> None:
        if when not in WHEN[1:]:
            raise ValueError(f"when must be one of {WHEN[1:]} (resolve 'auto' with resolve_when), got {when!r}")
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f"task must be a non-empty instruction string, got {task!r}")
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
        sample_indices(1, max_frames, sampling)  # validates max_frames for this mode
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1 (query every k steps), got {every!r}")
        self.task = task
        self.max_frames = int(max_frames)
        self.sampling = sampling
        self.every = every
        self.when = when
        self.state = RewardState(shaping, success, terminate_on_success)
        self.name = name
        self.buffer = FrameBuffer()
        self.episode = -1
        self._step = 0  # steps finished (finish_step) in this episode
        self._reset_frame_sent = False  # a planned query holds the reset frame (p_{-1} will come from it)
        self.version: int | None = None  # model version of the latest answer (held between queries)

    @property
    def shaping(self) -> Shaping:
        """The reward shaping in use."""
        return self.state.shaping

    @property
    def detector(self) -> SuccessDetector | None:
        """This episode's success detector (None when success is not detected here)."""
        return self.state.detector

    @property
    def reset_progress(self) -> float | None:
        """p_{-1}, the reset frame's progress (None until the first answer)."""
        return self.state.baseline

    @property
    def step_index(self) -> int:
        """Steps finished in this episode (0 right after reset)."""
        return self._step

    def successor(self) -> EpisodeReward:
        """A new object for this env's next episode, same settings, while this one's answers still drain."""
        nxt = EpisodeReward(self.task, self.max_frames, self.sampling, self.every, self.state.shaping,
                            self.state.detector, self.name, self.state.terminate_on_success, self.when)
        nxt.episode = self.episode
        return nxt

    def start(self, frame: np.ndarray) -> None:
        """Begin a new episode with its reset frame (H, W, 3) uint8."""
        self.buffer.clear()
        self.buffer.append(frame)
        self.episode += 1
        self._step = 0
        self._reset_frame_sent = False
        self.state.start()

    def add_frame(self, frame: np.ndarray) -> None:
        """Append the frame observed after this step's action."""
        if len(self.buffer) == 0:
            raise RuntimeError("Cannot step an episode before it started: call env.reset() first")
        self.buffer.append(frame)

    def wants_query(self, env_done: bool) -> bool:
        """Whether the step just added is scored: steps 0, every, 2*every, ... and the env's final step
        (only the final step with ``when="episode_end"``)."""
        if self.when == "episode_end":
            return bool(env_done)
        return (len(self.buffer) - 2) % self.every == 0 or bool(env_done)

    def plan(self) -> StepQuery:
        """Which frames the step just added sends (no frames copied yet: :meth:`build` does that).

        The reset frame is added alone while no planned query holds it (p_{-1} comes from it).
        """
        indices = sample_indices(len(self.buffer), self.max_frames, self.sampling)
        extra = self.reset_progress is None and indices[0] != 0 and not self._reset_frame_sent
        self._reset_frame_sent = self._reset_frame_sent or extra or indices[0] == 0
        return StepQuery(indices, with_reset_frame=extra)

    def build(self, step_query: StepQuery) -> list[RewardQuery]:
        """The queries of ``step_query`` with their frames (fills ``step_query.queries``); safe on another
        thread while this episode's frames grow (planned frames never change)."""
        episode_id = f"{self.name}:{self.episode}"
        indices = step_query.indices
        out = [RewardQuery(self.buffer.gather(indices), self.task, episode_id, indices)]
        if step_query.with_reset_frame:
            out.append(RewardQuery(self.buffer.gather([0]), self.task, episode_id, np.zeros(1, np.int64)))
        step_query.queries = out
        return out

    def queries(self) -> StepQuery:
        """This step's queries: the sampled frames, plus the reset frame alone while p_{-1} is unknown."""
        step_query = self.plan()
        self.build(step_query)
        return step_query

    def finish_step(
        self,
        env_reward: float,
        step_query: StepQuery | None,
        results: list[RewardResult] | None,
    ) -> tuple[Any, dict[str, Any]]:
        """Close the step: returns ``(outcome, info_rlrm)`` (:class:`rlrm.shaping.StepOutcome`, the step record).

        ``step_query`` is what :meth:`queries` planned this step (None: not queried); ``results`` the
        scorer's answers to ``step_query.queries``, or None when the query timed out (the step is stale).
        """
        progress = success_prob = None
        if step_query is not None and results is not None:
            indices = step_query.indices
            main = results[0]
            if len(main) != len(indices):
                raise ValueError(
                    f"scorer returned {len(main)} values for a query of {len(indices)} frames; expected one per frame"
                )
            if self.reset_progress is None and (indices[0] == 0 or step_query.with_reset_frame):
                first = main if indices[0] == 0 else results[1]
                self.state.set_baseline(float(first.progress[0]))
            progress, success_prob = float(main.progress[-1]), float(main.success[-1])
            self.version = main.version
        elif step_query is not None and self.reset_progress is None:
            self._reset_frame_sent = False  # the answer holding the reset frame is lost: send it again
        outcome = self.state.step(float(env_reward), progress, success_prob)
        queried = step_query is not None
        info = {
            "progress": outcome.progress,
            "success_prob": outcome.success_prob,
            "success": outcome.detected,
            "detector": self.detector.state() if self.detector is not None else None,
            "reward_terms": outcome.terms,
            "env_reward": float(env_reward),
            "queried": queried,
            "frames_sent": int(len(step_query.indices)) if queried else 0,
            "frame_index": step_query.indices.tolist() if queried else None,
            "reset_progress": self.reset_progress if self.reset_progress is not None else math.nan,
            "stale": queried and results is None,
            "step": self._step,
            "version": self.version,
        }
        self._step += 1
        return outcome, info
