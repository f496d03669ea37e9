"""Show the gradient steps an off-policy learner runs between episodes on SB3's progress bar.

* :class:`GradientStepProgress` - while SAC trains (``algo.train_freq=[1,episode] algo.gradient_steps=-1``
  on a robot with image observations: minutes per episode), the progress bar's description counts the
  gradient steps done (``learning 120/800 gradient steps``), so the run does not look frozen at the last
  env step.

SB3 calls ``model.train(gradient_steps, batch_size)`` once per training phase and reports nothing until it
returns. The callback counts the phase's critic optimizer steps (one per gradient step, in SAC and TD3)
with a PyTorch step hook: nothing about training changes, and nothing is added to what ``model.save`` writes.
"""

from __future__ import annotations

import time
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback, ProgressBarCallback

__all__ = ["GradientStepProgress"]


def _find_progress_bar(callback: Any) -> ProgressBarCallback | None:
    if isinstance(callback, ProgressBarCallback):
        return callback
    for inner in getattr(callback, "callbacks", []) or []:
        found = _find_progress_bar(inner)
        if found is not None:
            return found
    return None


class GradientStepProgress(BaseCallback):
    """Count an off-policy learner's gradient steps on the progress bar of ``learn(progress_bar=True)``.

    The description is refreshed at most every ``refresh_s`` seconds. Only phases of at least
    ``min_steps`` gradient steps are shown (``train_freq=1`` runs one step per env
    step, which the bar's env-step rate already reflects). Without a progress bar, or for on-policy
    algorithms, it does nothing. ``shown`` keeps the last description set (tests).

    >>> from stable_baselines3 import SAC                                                  # doctest: +SKIP
    >>> SAC("MlpPolicy", "Pendulum-v1", train_freq=(1, "episode"), gradient_steps=-1).learn(
    ...     2000, callback=GradientStepProgress(), progress_bar=True)                      # doctest: +SKIP
    """

    def __init__(self, min_steps: int = 20, refresh_s: float = 0.25) -> None:
        super().__init__()
        self.min_steps = int(min_steps)
        self.refresh_s = float(refresh_s)
        self.shown: list[str] = []
        self._bar_callback: ProgressBarCallback | None = None
        self._hook: Any = None
        self._collected = 0  # env steps of the current rollout
        self._phase = 0  # gradient steps of the training phase under way (0: none shown)
        self._done = 0
        self._shown_at = 0.0

    def _on_training_start(self) -> None:
        self._bar_callback = _find_progress_bar(self.locals.get("callback"))
        critic = getattr(self.model, "critic", None)
        if self._bar_callback is None or not hasattr(self.model, "replay_buffer") or critic is None:
            return
        self._hook = critic.optimizer.register_step_post_hook(self._after_gradient_step)

    def _on_step(self) -> bool:
        self._collected += self.model.n_envs
        return True

    def _on_rollout_end(self) -> None:
        if self._hook is None:  # no progress bar, or an on-policy algorithm
            return
        model = self.model
        steps = int(model.gradient_steps) if model.gradient_steps >= 0 else self._collected
        self._collected = 0
        trains = model.num_timesteps > 0 and model.num_timesteps > model.learning_starts
        self._phase = steps if trains and steps >= self.min_steps else 0
        self._done, self._shown_at = 0, 0.0

    def _after_gradient_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        bar = getattr(self._bar_callback, "pbar", None)
        if not self._phase or bar is None:
            return
        self._done += 1
        if self._done >= self._phase:
            self._describe(bar, f"learning {self._phase}/{self._phase} gradient steps")
            self._describe(bar, "")
            self._phase = 0
        elif time.monotonic() - self._shown_at >= self.refresh_s:
            self._describe(bar, f"learning {self._done}/{self._phase} gradient steps")
            self._shown_at = time.monotonic()

    def _describe(self, bar: Any, text: str) -> None:
        bar.set_description(text, refresh=True)
        self.shown.append(text)

    def _on_training_end(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
