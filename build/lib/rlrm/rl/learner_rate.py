"""Is the learner fast enough for a robot's control loop?

* :class:`LearnerRateCallback` - times the gradient steps SB3 runs between env steps and warns once, with
  the measured numbers, when they do not fit in the robot's control period.
* :func:`control_period_s` - the control period of an env (a robot's ``rate.period``), or None for sims.

SB3's off-policy loop trains on the thread that steps the env: with ``train_freq=1`` every gradient step
delays the next robot command. Robot runs therefore default to state observations for the policy
(``robot.env.policy_obs=state``: ~9 ms per SAC gradient step on one CPU thread, against ~900 ms on 128 px
images), and ``algo.train_freq=[1,episode] algo.gradient_steps=-1`` moves all gradient steps to the end of
each episode, while the arm holds still, as HIL-SERL's actor does.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["LearnerRateCallback", "control_period_s"]

log = logging.getLogger(__name__)


def control_period_s(env: Any) -> float | None:
    """The control period (s) of ``env`` (a gymnasium env, wrapped or not): a robot env's ``rate.period``, else None."""
    rate = getattr(getattr(env, "unwrapped", env), "rate", None)
    period = getattr(rate, "period", None)
    return float(period) if period else None


class LearnerRateCallback(BaseCallback):
    """Measure how long SB3's gradient steps hold up the env loop and warn when a robot's control tick is missed.

    The time from the end of one rollout to the start of the next is the learner's (``model.train``);
    averaged over the last ``window`` training phases (judged from the third on), it is compared with
    ``budget`` x the control period
    (the rest of the period is for the policy, the reward and the robot). Above it, one WARNING says the
    measured milliseconds per gradient step and per phase, the period, and what to change. With
    ``train_freq`` in episodes the learner runs while the arm waits between episodes: nothing to warn
    about, the pause is logged at INFO and the robot's rate limiter restarts after it (not an overrun). Scalars: ``learner/ms_per_gradient_step``, ``learner/ms_per_phase``.
    Put it last in the callback list so checkpoints are not counted as learning.

    Args:
        control_period_s: the robot's period (s); None reads it from the training env
            (:func:`control_period_s`), and without one (a sim env) the callback only records scalars.
        budget: fraction of the period the learner may take.
        window: training phases averaged before judging.
        clock: time source (tests).

    >>> from stable_baselines3 import SAC                                    # doctest: +SKIP
    >>> SAC("MultiInputPolicy", robot_env).learn(1000, callback=LearnerRateCallback())   # doctest: +SKIP
    """

    def __init__(self, control_period_s: float | None = None, budget: float = 0.5, window: int = 10,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__()
        if not 0.0 < budget <= 1.0:
            raise ValueError(f"budget must be a fraction of the control period in (0, 1], got {budget!r}")
        if window < 1:
            raise ValueError(f"window must be >= 1 training phases, got {window!r}")
        self.period_s = control_period_s
        self.budget = float(budget)
        self.clock = clock
        self.phases: deque[tuple[float, int]] = deque(maxlen=int(window))  # (seconds, gradient steps)
        self.warned = False
        self._rollout_end: float | None = None
        self._updates_at_end = 0

    def _on_training_start(self) -> None:
        if self.period_s is None:
            envs = getattr(self.training_env.unwrapped, "envs", [])
            self.period_s = control_period_s(envs[0]) if envs else None

    def _between_episodes(self) -> bool:
        unit = getattr(getattr(self.model, "train_freq", None), "unit", None)
        return getattr(unit, "value", unit) == "episode"

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self._rollout_end = self.clock()
        self._updates_at_end = int(getattr(self.model, "_n_updates", 0))

    def _on_rollout_start(self) -> None:
        if self._rollout_end is None:
            return
        seconds = self.clock() - self._rollout_end
        updates = int(getattr(self.model, "_n_updates", 0)) - self._updates_at_end
        self._rollout_end = None
        if updates <= 0:  # before learning_starts: nothing trained
            return
        self.phases.append((seconds, updates))
        self.logger.record("learner/ms_per_gradient_step", 1000.0 * seconds / updates)
        self.logger.record("learner/ms_per_phase", 1000.0 * seconds)
        if self._between_episodes():
            log.info("learner: %d gradient steps between episodes took %.2f s (%.1f ms each) while the robot waited",
                     updates, seconds, 1000.0 * seconds / updates)
            for env in getattr(self.training_env.unwrapped, "envs", []):
                rate = getattr(getattr(env, "unwrapped", env), "rate", None)
                if hasattr(rate, "reset"):
                    rate.reset()  # the env was reset before this deliberate pause: its first tick starts now
            return
        if self.period_s and not self.warned and len(self.phases) >= min(3, self.phases.maxlen):
            self._check()  # from the 3rd phase on: the first may carry one-off costs

    def _on_training_end(self) -> None:
        if self.phases:
            seconds, updates = sum(s for s, _ in self.phases), sum(n for _, n in self.phases)
            period = f"{1000.0 * self.period_s:.1f} ms control period" if self.period_s else "no control period"
            log.info("learner: %.1f ms per gradient step, %.1f ms per training phase (last %d phases; %s)",
                     1000.0 * seconds / updates, 1000.0 * seconds / len(self.phases), len(self.phases), period)

    def _check(self) -> None:
        total_s = sum(s for s, _ in self.phases)
        per_phase_s = total_s / len(self.phases)
        if per_phase_s <= self.budget * self.period_s:
            return
        self.warned = True
        per_step_ms = 1000.0 * total_s / sum(n for _, n in self.phases)
        log.warning(
            "the learner is too slow for the robot's control loop: %.1f ms per gradient step, %.1f ms of learning "
            "between env steps (mean of the last %d), but the control period is %.1f ms (%.0f Hz; budget %.0f%% = "
            "%.1f ms), so the robot holds its last target %.0f ms past its tick. Give the policy state "
            "observations (robot.env.policy_obs=state), train between episodes (algo.train_freq=[1,episode] "
            "algo.gradient_steps=-1) or use a GPU (device=cuda)",
            per_step_ms, 1000.0 * per_phase_s, len(self.phases), 1000.0 * self.period_s, 1.0 / self.period_s,
            100 * self.budget, 1000.0 * self.budget * self.period_s, 1000.0 * max(0.0, per_phase_s - self.period_s))
