"""Finished episodes kept for the reward model's second look: labels and re-scoring with newer versions.

* :data:`EPISODE_KEY` - ``info`` key the collector writes each step: ``(episode number, step)``; the
  replay buffer stores it, so a transition can be found again when its episode is re-scored.
* :class:`EpisodeRecord` - one finished episode: frames (reset frame first), task, per-step env reward,
  the reward model's progress / success probability / version, env success, a person's label, takeovers.
* :class:`EpisodeCollector` - a gymnasium wrapper on top of a reward wrapper that builds an
  :class:`EpisodeRecord` at every episode end and hands it to its sinks (a labeller, a re-scorer).

>>> import gymnasium as gym                                                   # doctest: +SKIP
>>> env = EpisodeCollector(RobometerReward(gym.make(...), None, scorer), sinks=[rescorer.add_episode])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["EPISODE_KEY", "EpisodeRecord", "EpisodeCollector"]

log = logging.getLogger(__name__)

EPISODE_KEY = "rlrm_episode"
"""``info`` key: ``(episode number, step)`` of this transition, written by :class:`EpisodeCollector`."""


@dataclass
class EpisodeRecord:
    """One finished episode as the reward model saw it.

    Args:
        key: the episode number (counts up per collector from 0).
        frames: (T + 1, H, W, 3) uint8: the reset frame, then the frame after each of the T steps.
        task: the instruction.
        env_rewards: (T,) the env's own reward per step (the shaping's ``w_env`` term reads it).
        progress / success_prob: (T,) what the reward model said at each step (held between queries).
        versions: (T,) the model version behind each step's reward (-1 where unknown).
        env_success: the env's ``info["is_success"]`` at the last step (None when the env has none).
        human_label: ``"success"`` / ``"failure"`` when a person pressed the key, else None.
        takeovers: (T,) bool, steps a person controlled (``info["intervention"]``).
    """

    key: int
    frames: np.ndarray
    task: str
    env_rewards: np.ndarray
    progress: np.ndarray
    success_prob: np.ndarray
    versions: np.ndarray
    env_success: bool | None = None
    human_label: str | None = None
    takeovers: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def num_steps(self) -> int:
        """T, the steps of the episode."""
        return int(self.env_rewards.shape[0])

    @property
    def version(self) -> int:
        """The oldest model version among its steps' rewards (-1: unknown)."""
        return int(self.versions.min()) if self.versions.size else -1


def _reward_wrapper_attr(env: gym.Env, name: str) -> Any:
    try:
        return env.get_wrapper_attr(name)
    except AttributeError:
        raise ValueError(
            f"EpisodeCollector must sit on top of a reward wrapper (RobometerReward or AsyncRobometerReward): "
            f"{type(env).__name__} has no {name!r}"
        ) from None


class EpisodeCollector(gym.Wrapper):
    """Builds an :class:`EpisodeRecord` of every finished episode and hands it to ``sinks``.

    ``step`` copies the reward wrapper's ``info["rlrm"]`` values into the episode's record and adds
    ``info["rlrm_episode"] = (episode number, step)``; on the episode's last step (terminated or
    truncated) each sink gets the record. ``reset`` and the action pass through unchanged.

    Args:
        env: a reward wrapper (or a wrapper above one): its ``frame_buffer`` holds the episode's frames.
        sinks: callables taking an :class:`EpisodeRecord` (e.g. a labeller's ``consider``, a re-scorer's
            ``add_episode``); an exception in one is raised (a broken sink should stop the run, not hide).
    """

    def __init__(self, env: gym.Env, sinks: Sequence[Callable[[EpisodeRecord], Any]] = ()) -> None:
        super().__init__(env)
        _reward_wrapper_attr(env, "frame_buffer")
        self.sinks = list(sinks)
        self.episodes = 0  # finished episodes
        self._key = -1
        self._steps: list[dict[str, Any]] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the env and start a new record."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._key += 1
        self._steps = []
        return obs, info

    def step(self, action):
        """Step, note the reward model's answer, and hand the record to the sinks at the episode's end."""
        if self._key < 0:
            raise RuntimeError("Cannot call env.step() before calling env.reset()")
        obs, reward, terminated, truncated, info = self.env.step(action)
        rlrm_info = info.get("rlrm") or {}
        info = dict(info)
        info[EPISODE_KEY] = (self._key, len(self._steps))
        self._steps.append({
            "env_reward": float(rlrm_info.get("env_reward", 0.0)),
            "progress": float(rlrm_info.get("progress", np.nan)),
            "success_prob": float(rlrm_info.get("success_prob", np.nan)),
            "version": rlrm_info.get("version"),
            "takeover": bool(info.get("intervention", False)),
        })
        if terminated or truncated:
            record = self._record(info)
            self.episodes += 1
            for sink in self.sinks:
                sink(record)
        return obs, reward, terminated, truncated, info

    def _record(self, last_info: dict[str, Any]) -> EpisodeRecord:
        frames = np.array(_reward_wrapper_attr(self.env, "frame_buffer").frames(), copy=True)
        steps = self._steps
        success = last_info.get("is_success")
        return EpisodeRecord(
            key=self._key,
            frames=frames,
            task=_reward_wrapper_attr(self.env, "task"),
            env_rewards=np.array([s["env_reward"] for s in steps], np.float32),
            progress=np.array([s["progress"] for s in steps], np.float32),
            success_prob=np.array([s["success_prob"] for s in steps], np.float32),
            versions=np.array([-1 if s["version"] is None else int(s["version"]) for s in steps], np.int64),
            env_success=None if success is None else bool(success),
            human_label=last_info.get("human_label"),
            takeovers=np.array([s["takeover"] for s in steps], bool),
        )
