"""Turning reward-model outputs into a scalar RL reward and a success decision.

* :class:`Shaping` - ``reward = w_progress * f(p) + success_bonus * [success detected]
  + w_env * env_reward - step_cost`` with ``f`` one of ``absolute`` (p_t), ``delta``
  (p_t - p_{t-1}) or ``potential`` (gamma * p_t - p_{t-1}); a dataclass Hydra can fill.
* :class:`SuccessDetector` - success once at least ``min_votes`` of the last ``window``
  success probabilities exceed ``threshold``; latched for the rest of the episode.
* :class:`RewardState` - the one reward state machine every wrapper drives (sync, async, vector,
  :class:`~rlrm.wrappers.SuccessTermination`): the progress baseline p_{-1}, held progress, the
  success detector, the one-time bonus and the termination decision; :class:`StepOutcome` is one step.
* :data:`PROGRESS_TERMS` - the accepted names of ``f``.

Both are plain numpy/python: no gymnasium, no torch. The wrappers in ``rlrm.wrappers``
own the per-episode bookkeeping (previous progress, when to query) and call these.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from rlrm.config import ShapingConfig, SuccessConfig

__all__ = ["Shaping", "SuccessDetector", "RewardState", "StepOutcome", "PROGRESS_TERMS"]

PROGRESS_TERMS = ("delta", "absolute", "potential")


def _check_finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Shaping:
    """How progress, detected success and the env's own reward combine into one reward per step.

    Args:
        progress: ``"delta"`` (p_t - p_{t-1}; sums over an episode to last minus reset-frame
            progress), ``"absolute"`` (p_t) or ``"potential"`` (gamma * p_t - p_{t-1}).
        w_progress: weight of the progress term.
        gamma: discount of the ``"potential"`` term, in (0, 1].
        success_bonus: paid once, on the step success is first detected.
        w_env: weight of the wrapped env's own reward (0 ignores it).
        step_cost: subtracted every step (>= 0), a time penalty.

    >>> s = Shaping(progress="delta", success_bonus=1.0, step_cost=0.01)
    >>> terms = s.terms(progress=0.6, prev_progress=0.5, success=True, env_reward=0.0)
    >>> round(s.reward(terms), 4)
    1.09
    """

    # defaults: rlrm.config.ShapingConfig, the one source (absolute progress, no bonus: the measured best)
    progress: str = ShapingConfig.progress
    w_progress: float = ShapingConfig.w_progress
    gamma: float = ShapingConfig.gamma
    success_bonus: float = ShapingConfig.success_bonus
    w_env: float = ShapingConfig.w_env
    step_cost: float = ShapingConfig.step_cost

    def __post_init__(self) -> None:
        if self.progress not in PROGRESS_TERMS:
            raise ValueError(f"Shaping.progress must be one of {PROGRESS_TERMS}, got {self.progress!r}")
        for name in ("w_progress", "gamma", "success_bonus", "w_env", "step_cost"):
            _check_finite(f"Shaping.{name}", getattr(self, name))
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"Shaping.gamma must be in (0, 1], got {self.gamma}")
        if self.step_cost < 0:
            raise ValueError(f"Shaping.step_cost is subtracted each step and must be >= 0, got {self.step_cost}")

    def progress_term(self, progress: float, prev_progress: float) -> float:
        """The unweighted progress term f(p_t, p_{t-1}) (progress values in [0, 1])."""
        if self.progress == "absolute":
            return float(progress)
        if self.progress == "delta":
            return float(progress) - float(prev_progress)
        return self.gamma * float(progress) - float(prev_progress)

    def stay_value(self, progress: float, env_reward: float) -> float:
        """The discounted reward of staying in a success state after this step: ``gamma / (1 - gamma) * r_stay``.

        ``r_stay`` is the per-step reward of holding progress ``progress`` forever (no bonus):
        ``absolute`` p, ``delta`` 0, ``potential`` (gamma - 1) p, plus the env and step-cost terms.
        Ending an episode on success pays this on the terminal step, so termination is worth what
        staying would have been (the policy has no reason to avoid the detector). ``gamma`` must then
        be the RL algorithm's discount.

        >>> round(Shaping(progress="absolute", gamma=0.95).stay_value(0.8, env_reward=0.0), 4)
        15.2
        """
        r_stay = self.reward(self.terms(progress, progress, False, env_reward))
        if r_stay == 0.0:
            return 0.0
        if self.gamma >= 1.0:
            raise ValueError(f"Shaping.gamma={self.gamma}: staying in success pays {r_stay:.3g} per step forever, an "
                             "infinite value; set gamma to the RL algorithm's discount (< 1) to end episodes on success")
        return self.gamma / (1.0 - self.gamma) * r_stay

    def terms(self, progress: float, prev_progress: float, success: bool, env_reward: float) -> dict[str, float]:
        """Each weighted reward term for one step: ``progress``, ``success``, ``env``, ``step_cost``.

        ``success`` is True only on the step success is first detected (the bonus is paid once).
        """
        return {
            "progress": self.w_progress * self.progress_term(progress, prev_progress),
            "success": self.success_bonus if success else 0.0,
            "env": self.w_env * float(env_reward),
            "step_cost": -self.step_cost,
        }

    @staticmethod
    def reward(terms: dict[str, float]) -> float:
        """The step reward: the sum of the terms from :meth:`terms`."""
        return float(sum(terms.values()))


@dataclass
class SuccessDetector:
    """Decides an episode succeeded once ``min_votes`` of the last ``window`` success probabilities exceed ``threshold``.

    Stateful per episode: call :meth:`reset` at episode start and :meth:`update` with each new
    (not held) success probability. Detection latches until :meth:`reset`. Wrappers keep their
    own copy (:meth:`fresh`), so one instance can configure many envs.

    Args:
        threshold: a probability counts as a vote when strictly greater than this.
        window: how many of the most recent probabilities are considered (K >= 1).
        min_votes: votes needed within the window (1 <= M <= K).

    >>> d = SuccessDetector(threshold=0.65, window=2, min_votes=2)
    >>> [d.update(p) for p in (0.9, 0.1, 0.8, 0.7)]
    [False, False, False, True]
    >>> d.state()["votes"]
    2
    """

    threshold: float = SuccessConfig.threshold  # defaults: rlrm.config.SuccessConfig
    window: int = SuccessConfig.window
    min_votes: int = SuccessConfig.min_votes
    _recent: deque = field(default_factory=deque, init=False, repr=False, compare=False)
    _detected: bool = field(default=False, init=False, repr=False, compare=False)
    _detected_at: int | None = field(default=None, init=False, repr=False, compare=False)
    _updates: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_finite("SuccessDetector.threshold", self.threshold)
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"SuccessDetector.threshold must be in [0, 1), got {self.threshold}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"SuccessDetector.window must be an int >= 1, got {self.window!r}")
        if (
            isinstance(self.min_votes, bool)
            or not isinstance(self.min_votes, int)
            or not 1 <= self.min_votes <= self.window
        ):
            raise ValueError(
                f"SuccessDetector.min_votes must be an int in [1, window={self.window}], got {self.min_votes!r}"
            )
        self._recent = deque(maxlen=self.window)

    def fresh(self) -> SuccessDetector:
        """A new detector with the same settings and an empty history."""
        return SuccessDetector(threshold=self.threshold, window=self.window, min_votes=self.min_votes)

    def reset(self) -> None:
        """Forget the episode: empty window, not detected."""
        self._recent.clear()
        self._detected = False
        self._detected_at = None
        self._updates = 0

    @property
    def votes(self) -> int:
        """Probabilities in the current window above the threshold."""
        return sum(p > self.threshold for p in self._recent)

    @property
    def detected(self) -> bool:
        """True once success was detected this episode."""
        return self._detected

    def update(self, success_prob: float) -> bool:
        """Add one success probability in [0, 1]; return True if success is detected (now or earlier)."""
        p = _check_finite("success_prob", success_prob)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"success_prob must be a probability in [0, 1], got {p}")
        self._recent.append(p)
        self._updates += 1
        if not self._detected and self.votes >= self.min_votes:
            self._detected = True
            self._detected_at = self._updates - 1
        return self._detected

    def state(self) -> dict:
        """Detector state for ``info["rlrm"]["detector"]``: votes, window, recent probabilities, detection."""
        return {
            "votes": self.votes,
            "min_votes": self.min_votes,
            "window": self.window,
            "threshold": self.threshold,
            "recent": [float(p) for p in self._recent],
            "detected": self._detected,
            "detected_at_update": self._detected_at,
        }


@dataclass(frozen=True)
class StepOutcome:
    """What :meth:`RewardState.step` decided for one env step.

    Args:
        reward: the shaped reward (sum of ``terms``).
        terms: weighted reward terms (see :meth:`Shaping.terms`).
        progress / success_prob: the values the step used (held ones between queries; NaN before any).
        newly_detected: success was first detected on this step (the bonus is in ``terms``).
        detected: success has been detected in this episode (latched).
        terminate: end the episode now (``newly_detected`` and termination on success is on).
    """

    reward: float
    terms: dict
    progress: float
    success_prob: float
    newly_detected: bool
    detected: bool
    terminate: bool


class RewardState:
    """One episode's reward state: progress baseline, held progress, success detector, bonus once.

    Every wrapper drives this one object, so the conventions hold everywhere:

    * :meth:`set_baseline` gives p_{-1}, the reset frame's progress (the first value of a query that
      starts at frame 0); ``delta`` rewards then sum over an episode to p_last - p_{-1}.
    * :meth:`step` with fresh model outputs (``progress``/``success_prob``) updates the held values and
      feeds the detector; with None it holds them (no query this step, or a timed-out one), so the
      ``delta`` term is 0 and the detector sees only fresh probabilities.
    * The success bonus is paid on the step the detector first fires, never again in the episode.
    * With ``terminate_on_success`` that step is the episode's last (only that one: success is latched,
      and nothing after a terminal step is part of the episode). Its reward adds the term ``terminal``,
      the discounted reward of staying in success (:meth:`Shaping.stay_value`), so ending the episode
      is worth what continuing would have been: termination does not punish success.

    Args:
        shaping: how terms combine (default :class:`Shaping`).
        success: detector settings (copied), or None to not detect success here.
        terminate_on_success: :attr:`StepOutcome.terminate` on the detection step (needs ``success``).

    >>> st = RewardState(Shaping(gamma=0.9), SuccessDetector(threshold=0.5, window=1, min_votes=1),
    ...                  terminate_on_success=True)
    >>> st.start(); st.set_baseline(0.1)
    >>> out = st.step(0.0, progress=0.4, success_prob=0.2)
    >>> round(out.reward, 3), out.terminate
    (0.4, False)
    >>> out = st.step(0.0, progress=0.9, success_prob=0.8)   # 0.9 now + 0.9 * 0.9 / (1 - 0.9) for staying
    >>> round(out.reward, 3), out.newly_detected, out.terminate, round(out.terms["terminal"], 3)
    (9.0, True, True, 8.1)
    """

    def __init__(
        self,
        shaping: Shaping | None = None,
        success: SuccessDetector | None = None,
        terminate_on_success: bool = False,
    ) -> None:
        if shaping is not None and not isinstance(shaping, Shaping):
            raise ValueError(f"shaping must be an rlrm.shaping.Shaping, got {type(shaping).__name__}")
        if success is not None and not isinstance(success, SuccessDetector):
            raise ValueError(f"success must be an rlrm.shaping.SuccessDetector or None, got {type(success).__name__}")
        self.shaping = shaping if shaping is not None else Shaping()
        self.detector = success.fresh() if success is not None else None
        self.terminate_on_success = bool(terminate_on_success) and success is not None
        if self.terminate_on_success:
            self.shaping.stay_value(1.0, env_reward=1.0)  # raises now, not at the first success, if it is infinite
        self.start()

    def start(self) -> None:
        """Begin an episode: no baseline, nothing held, detector cleared."""
        self.baseline: float | None = None
        self.progress: float | None = None
        self.success_prob: float | None = None
        if self.detector is not None:
            self.detector.reset()

    @property
    def detected(self) -> bool:
        """Success detected in this episode (False without a detector)."""
        return bool(self.detector is not None and self.detector.detected)

    def set_baseline(self, progress: float) -> None:
        """p_{-1}, the reset frame's progress; only the first call of an episode counts."""
        if self.baseline is None:
            self.baseline = float(progress)

    def step(self, env_reward: float, progress: float | None = None, success_prob: float | None = None,
             ) -> StepOutcome:
        """Close one env step; ``progress``/``success_prob`` are fresh model outputs or None (held)."""
        held_before = self.progress
        newly = False
        if progress is not None:
            self.progress = float(progress)
        if success_prob is not None and not math.isnan(float(success_prob)):
            self.success_prob = float(success_prob)
            if self.detector is not None and not self.detector.detected:
                newly = self.detector.update(self.success_prob)
        if self.progress is None:
            terms = self.shaping.terms(0.0, 0.0, newly, env_reward)
            terms["progress"] = 0.0  # nothing scored yet this episode: no progress term
        else:
            prev = held_before if held_before is not None else self.baseline
            terms = self.shaping.terms(self.progress, self.progress if prev is None else prev, newly, env_reward)
        terminate = newly and self.terminate_on_success
        # ending the episode forfeits the reward of staying in success: pay it now (value-neutral termination)
        terms["terminal"] = self.shaping.stay_value(self.progress or 0.0, env_reward) if terminate else 0.0
        return StepOutcome(
            reward=self.shaping.reward(terms),
            terms=terms,
            progress=self.progress if self.progress is not None else math.nan,
            success_prob=self.success_prob if self.success_prob is not None else math.nan,
            newly_detected=newly,
            detected=self.detected,
            terminate=terminate,
        )
