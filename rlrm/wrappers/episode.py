"""Per-episode reward bookkeeping shared by the single-env and the vector wrappers.

* :class:`EpisodeReward` - one episode's frames, when to query, which frames to send,
  progress held between queries, the reset-frame progress p_{-1}, success detection and
  the ``info["rlrm"]`` record of each step.
* :func:`score_timed` - one scorer call with its latency, turning a timeout into the
  configured behaviour (raise an instructive error, or report it for holding).

Progress conventions (DESIGN.md "Reward and termination"):

* The reward at step t uses the model's value at the last sent frame, the current one: p_t.
* p_{-1} is the model's progress for the reset frame alone. Attention is causal, so it is the
  first value of any query that starts at frame 0 (always true for ``sampling="prefix"``);
  otherwise the reset frame is sent as an extra one-frame query in the same batch, once.
  Hence ``delta`` rewards sum over an episode to p_last - p_{-1}.
* Queries happen on steps 0, k, 2k, ... (``every=k``) and on the env's final step; in between
  progress and success probability are held, so ``delta`` is 0 there and the sum still telescopes.
  The detector only sees fresh (queried, not stale) success probabilities.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from rlrm.sampling import SAMPLING_MODES, sample_indices
from rlrm.shaping import Shaping, SuccessDetector
from rlrm.types import RewardQuery, RewardResult
from rlrm.wrappers.frames import FrameBuffer

__all__ = ["EpisodeReward", "score_timed", "ON_TIMEOUT"]

log = logging.getLogger(__name__)

ON_TIMEOUT = ("raise", "hold")


def _timeout_errors() -> tuple[type[BaseException], ...]:
    # The transport may define its own timeout class; it is expected to subclass TimeoutError.
    return (TimeoutError,)


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
            raise TimeoutError(
                f"reward query for {len(queries)} item(s) timed out after {latency_ms:.0f} ms ({e}); "
                "check the reward worker, raise its timeout_ms, or pass on_timeout='hold' to keep the "
                "last reward and flag info['rlrm']['stale']"
            ) from e
        log.warning("reward query timed out after %.0f ms, holding the last reward: %s", latency_ms, e)
        return None, latency_ms
    latency_ms = (time.perf_counter() - t0) * 1e3
    if not isinstance(results, list) or len(results) != len(queries):
        got = len(results) if isinstance(results, list) else type(results).__name__
        raise ValueError(f"scorer returned {got} results for {len(queries)} queries; expected one per query")
    return results, latency_ms


class EpisodeReward:
    """The reward state of one episode of one env: frames, query schedule, held values, detector.

    Usage per episode: :meth:`start` with the reset frame; per step :meth:`add_frame`, then
    if :meth:`wants_query` build :meth:`queries`, score them (batched with other envs if you
    like) and pass the results to :meth:`finish_step` (None when not queried or timed out).

    Args:
        task: instruction text sent with every query.
        max_frames / sampling: see :func:`rlrm.sampling.sample_indices`.
        every: query every ``every`` steps (>= 1); the env's final step is always queried.
        shaping: how terms combine into the reward.
        success: detector settings (copied), or None to not detect success.
        name: prefix of episode ids sent to the worker (for its logs).

    >>> ep = EpisodeReward("reach the target", max_frames=8, sampling="prefix", every=1,
    ...                    shaping=Shaping(), success=SuccessDetector())
    >>> ep.start(np.zeros((8, 8, 3), np.uint8)); ep.add_frame(np.ones((8, 8, 3), np.uint8))
    >>> [q.frame_index.tolist() for q in ep.queries()]
    [[0, 1]]
    >>> res = [RewardResult(progress=[0.2, 0.5], success=[0.1, 0.3])]
    >>> reward, info, newly = ep.finish_step(0.0, res, latency_ms=3.0)
    >>> round(reward, 3), info["progress"], newly
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
    ) -> None:
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f"task must be a non-empty instruction string, got {task!r}")
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
        sample_indices(1, max_frames, sampling)  # validates max_frames for this mode
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1 (query every k steps), got {every!r}")
        if not isinstance(shaping, Shaping):
            raise ValueError(f"shaping must be an rlrm.shaping.Shaping, got {type(shaping).__name__}")
        if success is not None and not isinstance(success, SuccessDetector):
            raise ValueError(f"success must be an rlrm.shaping.SuccessDetector or None, got {type(success).__name__}")
        self.task = task
        self.max_frames = int(max_frames)
        self.sampling = sampling
        self.every = every
        self.shaping = shaping
        self.detector = success.fresh() if success is not None else None
        self.name = name
        self.buffer = FrameBuffer()
        self.episode = -1
        self._step = 0
        self._progress: float | None = None
        self._success_prob: float | None = None
        self.reset_progress: float | None = None
        self._pending: np.ndarray | None = None

    @property
    def step_index(self) -> int:
        """Steps taken in this episode (0 right after reset)."""
        return self._step

    def start(self, frame: np.ndarray) -> None:
        """Begin a new episode with its reset frame (H, W, 3) uint8."""
        self.buffer.clear()
        self.buffer.append(frame)
        self.episode += 1
        self._step = 0
        self._progress = None
        self._success_prob = None
        self.reset_progress = None
        self._pending = None
        if self.detector is not None:
            self.detector.reset()

    def add_frame(self, frame: np.ndarray) -> None:
        """Append the frame observed after this step's action."""
        if len(self.buffer) == 0:
            raise RuntimeError("Cannot step an episode before it started: call env.reset() first")
        self.buffer.append(frame)

    def wants_query(self, env_done: bool) -> bool:
        """Whether this step is scored: steps 0, every, 2*every, ... and the env's final step."""
        return self._step % self.every == 0 or bool(env_done)

    def queries(self) -> list[RewardQuery]:
        """The queries for this step: the sampled frames, plus the reset frame alone while p_{-1} is unknown."""
        indices = sample_indices(len(self.buffer), self.max_frames, self.sampling)
        self._pending = indices
        episode_id = f"{self.name}:{self.episode}"
        out = [RewardQuery(self.buffer.gather(indices), self.task, episode_id, indices)]
        if self.reset_progress is None and indices[0] != 0:
            out.append(RewardQuery(self.buffer.gather([0]), self.task, episode_id, np.zeros(1, np.int64)))
        return out

    def finish_step(
        self,
        env_reward: float,
        results: list[RewardResult] | None,
        latency_ms: float | None = None,
        stale: bool = False,
    ) -> tuple[float, dict[str, Any], bool]:
        """Close the step: returns ``(reward, info_rlrm, newly_detected)``.

        ``results`` are the scorer's answers to :meth:`queries` of this step, or None when the
        step was not queried (``stale=False``) or its query timed out (``stale=True``).
        """
        indices = self._pending
        self._pending = None
        held_before = self._progress
        fresh = results is not None
        if fresh:
            if indices is None:
                raise RuntimeError("finish_step got results but queries() was not called this step")
            main = results[0]
            if len(main) != len(indices):
                raise ValueError(
                    f"scorer returned {len(main)} values for a query of {len(indices)} frames; expected one per frame"
                )
            if self.reset_progress is None:
                first = main if indices[0] == 0 else results[1]
                self.reset_progress = float(first.progress[0])
            self._progress = float(main.progress[-1])
            self._success_prob = float(main.success[-1])
        newly = False
        if fresh and self.detector is not None:
            newly = not self.detector.detected and self.detector.update(self._success_prob)
        if self._progress is None:
            # Nothing scored yet this episode (its first query timed out): no progress term.
            terms = self.shaping.terms(0.0, 0.0, newly, env_reward)
            terms["progress"] = 0.0
        else:
            prev = held_before if held_before is not None else self.reset_progress
            terms = self.shaping.terms(self._progress, prev, newly, env_reward)
        reward = self.shaping.reward(terms)
        info = {
            "progress": self._progress if self._progress is not None else math.nan,
            "success_prob": self._success_prob if self._success_prob is not None else math.nan,
            "success": bool(self.detector.detected) if self.detector is not None else False,
            "detector": self.detector.state() if self.detector is not None else None,
            "reward_terms": terms,
            "env_reward": float(env_reward),
            "latency_ms": latency_ms,
            "queried": indices is not None,
            "frames_sent": int(len(indices)) if indices is not None else 0,
            "frame_index": indices.tolist() if indices is not None else None,
            "reset_progress": self.reset_progress if self.reset_progress is not None else math.nan,
            "stale": bool(stale),
            "step": self._step,
        }
        self._step += 1
        return reward, info, newly
