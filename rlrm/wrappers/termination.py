"""Success-based episode termination as a wrapper of its own.

* :class:`SuccessTermination` - runs a :class:`rlrm.shaping.SuccessDetector` on the success
  probabilities another wrapper publishes in ``info["rlrm"]["success_prob"]``; on detection it
  pays a bonus once, sets ``info["rlrm"]["success"]`` and (optionally) ``terminated=True``.

:class:`rlrm.wrappers.RobometerReward` can do the same itself (``success=...``,
``terminate_on_success=True``); both use the one detector class. Use this wrapper when success
probabilities come from elsewhere, or to keep detection separate:
``SuccessTermination(RobometerReward(env, task, source, success=None))``.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym

from rlrm.config import ShapingConfig
from rlrm.shaping import RewardState, Shaping, SuccessDetector

__all__ = ["SuccessTermination"]


class SuccessTermination(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Ends the episode when the inner wrapper's success probabilities say the task is done.

    ``step`` reads ``info["rlrm"]["success_prob"]``; fresh values (``queried`` and not ``stale``
    when those keys are present) feed the detector. On the step success is first detected it
    adds ``bonus`` to the reward (and to ``info["rlrm"]["reward_terms"]["success"]``) and returns
    ``terminated=True`` if ``terminate``; ``info["rlrm"]["success"]`` stays True until ``reset``.
    ``reset`` clears the detector. Ending the episode pays, as :class:`RobometerReward` does, the value
    of staying in success under the shaping of the reward wrapper below
    (:meth:`rlrm.shaping.Shaping.stay_value`, in ``reward_terms["terminal"]``), so termination does not
    punish success; below another reward wrapper nothing is added.

    >>> import gymnasium as gym
    >>> from rlrm.models import make_reward_model
    >>> from rlrm.wrappers import RobometerReward
    >>> env = gym.make("CartPole-v1", render_mode="rgb_array")
    >>> env = RobometerReward(env, "balance the pole", make_reward_model("tiny"), success=None)
    >>> env = SuccessTermination(env, SuccessDetector(threshold=0.65, window=2, min_votes=2))
    >>> _ = env.reset(seed=0)
    >>> info = env.step(0)[-1]
    >>> info["rlrm"]["detector"]["window"]
    2
    >>> env.close()

    Args:
        env: a wrapper stack that publishes ``info["rlrm"]["success_prob"]`` each step.
        detector: detector settings (copied, so one instance may configure many envs).
        bonus: reward added once on detection (default 0, as ``rlrm.config.ShapingConfig.success_bonus``).
        terminate: return ``terminated=True`` on detection.
    """

    def __init__(
        self,
        env: gym.Env,
        detector: SuccessDetector | None = None,
        bonus: float = ShapingConfig.success_bonus,
        terminate: bool = True,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, _disable_deepcopy=True, detector=detector, bonus=bonus, terminate=terminate
        )
        gym.Wrapper.__init__(self, env)
        detector = detector if detector is not None else SuccessDetector()
        if not isinstance(detector, SuccessDetector):
            raise ValueError(f"detector must be an rlrm.shaping.SuccessDetector, got {type(detector).__name__}")
        if isinstance(bonus, bool) or not isinstance(bonus, (int, float)) or not math.isfinite(bonus):
            raise ValueError(f"bonus must be a finite number, got {bonus!r}")
        self.bonus = float(bonus)
        self.terminate = bool(terminate)
        # The same state machine RobometerReward drives, with only the success term switched on.
        self.state = RewardState(Shaping(w_progress=0.0, success_bonus=self.bonus), detector, self.terminate)
        self.shaping_below: Shaping | None = None  # the reward below's shaping: what staying in success pays
        below = env
        while below is not None:
            episode = getattr(below, "episode_reward", None)
            if episode is not None and self.shaping_below is None:
                self.shaping_below = episode.shaping
            if episode is not None and episode.detector is not None:
                raise ValueError(
                    f"{type(below).__name__} below already detects success (it was created with a success detector); "
                    "create it with success=None, or drop SuccessTermination and use its terminate_on_success"
                )
            below = getattr(below, "env", None)

    @property
    def detector(self) -> SuccessDetector:
        """This episode's detector."""
        return self.state.detector

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the env and the detector."""
        self.state.start()
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        """Step, update the detector with a fresh success probability, and end the episode on success."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        published = info.get("rlrm") if isinstance(info, dict) else None
        if not isinstance(published, dict) or "success_prob" not in published:
            raise KeyError(
                "SuccessTermination needs info['rlrm']['success_prob'] from the wrapper below it; "
                "wrap a RobometerReward (or another wrapper that publishes success probabilities) first"
            )
        if published.get("detector") is not None:
            raise ValueError(
                "the wrapper below already detects success (info['rlrm']['detector'] is set); "
                "create it with success=None, or drop SuccessTermination and use its terminate_on_success"
            )
        prob = float(published["success_prob"])
        fresh = published.get("queried", True) and not published.get("stale", False) and not math.isnan(prob)
        outcome = self.state.step(0.0, success_prob=prob if fresh else None)
        published = dict(published)
        terms = dict(published.get("reward_terms") or {})
        terms["success"] = terms.get("success", 0.0) + outcome.terms["success"]
        if outcome.terminate and self.shaping_below is not None:  # value-neutral termination, as built in
            progress = float(published.get("progress", math.nan))
            terms["terminal"] = self.shaping_below.stay_value(0.0 if math.isnan(progress) else progress,
                                                              float(published.get("env_reward", 0.0)))
        published["reward_terms"] = terms
        published["success"] = outcome.detected
        published["detector"] = self.detector.state()
        info = dict(info)
        info["rlrm"] = published
        terminal = terms.get("terminal", 0.0) if outcome.terminate else 0.0
        return obs, float(reward) + outcome.reward + terminal, terminated or outcome.terminate, truncated, info
