"""Ctrl-C during training: stop cleanly, keep the run, and say how to continue it.

* :class:`StopOnCtrlC` - an SB3 callback and context manager: the first Ctrl-C (SIGINT) ends
  ``learn()`` after the current env step, so the checkpoint callback saves a consistent checkpoint
  (policy, replay buffer, step counter); a second Ctrl-C raises ``KeyboardInterrupt`` at once.
* :func:`interrupted_summary` - the ``summary.json`` fields of a run stopped that way.

On a robot, Ctrl-C is how people stop; losing the run's data to it would make them use SIGKILL.

>>> stop = StopOnCtrlC()
>>> stop.requested_at is None
True
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["StopOnCtrlC", "interrupted_summary"]

log = logging.getLogger(__name__)


class StopOnCtrlC(BaseCallback):
    """First Ctrl-C: stop ``learn()`` after this env step; second Ctrl-C: ``KeyboardInterrupt`` at once.

    Use as a context manager around ``model.learn`` and pass it among the callbacks. Outside the
    main thread (where Python cannot install signal handlers) it does nothing. After ``learn``
    returns, :attr:`requested_at` is the env step of the first Ctrl-C (None if none came).

    Off-policy algorithms (SAC): SB3 checks callbacks after counting an env step and before storing
    its transition, so stopping there leaves the step uncounted (``num_timesteps`` is taken back by
    one per env); the checkpoint's step counter then equals the transitions its buffer holds.
    On-policy algorithms (PPO) drop the unfinished rollout (they never train on part of one).
    """

    def __init__(self) -> None:
        super().__init__()
        self.requested_at: int | None = None
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> StopOnCtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._on_sigint)
            self._installed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler)
            self._installed = False

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.requested_at is not None:
            self._restore()
            raise KeyboardInterrupt("second Ctrl-C")
        steps = int(self.model.num_timesteps) if self.model is not None else 0
        self.requested_at = steps
        log.warning("Ctrl-C at env step %d: stopping after this step, then saving a checkpoint and summary.json "
                    "(press Ctrl-C again to exit at once without them)", steps)

    def _on_step(self) -> bool:
        if self.requested_at is None:
            return True
        if not hasattr(self.model, "rollout_buffer"):  # off-policy: this step's transition will not be stored
            self.model.num_timesteps -= self.model.n_envs
        return False


def interrupted_summary(stopped_at: int, run_dir: str | Path, checkpoint: Path | None) -> dict[str, Any]:
    """The ``summary.json`` fields saying the run was stopped by Ctrl-C at ``stopped_at`` env steps.

    No final evaluation ran: ``eval_success_rate`` and the other evaluation fields are None, and
    ``resume_command`` continues the run (``run_rl.py resume=<run_dir>``) in a new folder.
    """
    return {
        "interrupted": True,
        "stopped_at_step": int(stopped_at),
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "resume_command": f"python run_rl.py resume={Path(run_dir)}",
        "eval_success_rate": None,
        "eval_return": None,
        "eval_model_success_detected_rate": None,
        "eval_mean_final_success_prob": None,
        "eval_person_success_rate": None,
        "eval_person_labelled": 0,
        "eval_episodes": [],
    }
