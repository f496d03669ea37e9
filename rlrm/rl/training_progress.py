"""Show the gradient steps an off-policy learner runs between episodes on SB3's progress bar.

* :class:`GradientStepProgress` - while SAC trains (``algo.train_freq=[1,episode] algo.gradient_steps=-1``
  on a robot with image observations: minutes per episode), the progress bar's description counts the
  gradient steps done (``learning 120/800 gradient steps``), so the run does not look frozen at the last
  env step.

SB3 calls ``model.train(gradient_steps, batch_size)`` once per training phase and reports nothing until it
returns. The callback runs the same phase in chunks of ``target_update_interval`` gradient steps (SB3
updates the target network at chunk-local step 0, so every chunk keeps the global schedule): the same
updates in the same order, with the bar refreshed between chunks.
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
        self._original_train: Any = None

    def _on_training_start(self) -> None:
        self._bar_callback = _find_progress_bar(self.locals.get("callback"))
        if self._bar_callback is None or not hasattr(self.model, "replay_buffer"):
            return
        self._original_train = self.model.train
        self.model.train = self._train_in_chunks

    def _train_in_chunks(self, gradient_steps: int, batch_size: int = 64) -> None:
        bar = getattr(self._bar_callback, "pbar", None)
        if bar is None or gradient_steps < self.min_steps:
            self._original_train(gradient_steps=gradient_steps, batch_size=batch_size)
            return
        chunk = max(1, int(getattr(self.model, "target_update_interval", 1)))
        done, shown_at = 0, 0.0
        while done < gradient_steps:
            n = min(chunk, gradient_steps - done)
            self._original_train(gradient_steps=n, batch_size=batch_size)
            done += n
            if time.monotonic() - shown_at >= self.refresh_s or done == gradient_steps:
                self._describe(bar, f"learning {done}/{gradient_steps} gradient steps")
                shown_at = time.monotonic()
        self._describe(bar, "")

    def _describe(self, bar: Any, text: str) -> None:
        bar.set_description(text, refresh=True)
        self.shown.append(text)

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if self._original_train is not None:
            self.model.train = self._original_train
            self._original_train = None
