"""Human interventions: learn from the action the robot executed, and sample takeovers more often.

* :func:`executed_buffer_action` - the action a takeover step really executed, in the replay
  buffer's units (``info["action"]`` scaled to [-1, 1]; for residual policies, the residual that
  would have produced it).
* :class:`InterventionReplayBuffer` / :class:`InterventionDictReplayBuffer` - SB3 replay buffers
  (Box / Dict observations) that store the executed action of takeover steps, keep a copy of every
  takeover transition in a second buffer, and once that holds data draw each batch half from it
  (RLPD-style, as HIL-SERL does). They are relabelling buffers, so asynchronous rewards work too.
* :func:`intervention_buffer_class` - the right one of the two for an observation space.
* :class:`InterventionCounter` - takeover steps of the current episode -> the episode's intervention rate.
* :class:`InterventionLoggingCallback` - SB3 callback logging ``interventions/rate`` per episode.

Robot envs (:mod:`robots.base`) report a takeover in ``info["intervention"]`` and the action
they executed (the teleop command after the safety filter) in ``info["action"]``. SB3 stores the
policy's action, which the robot never executed; a person's correction would teach nothing.
The buffer's ``add`` receives the step's ``infos``, so it swaps the action there; the same
code path serves single-process runs and the distributed learner.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback

from rlrm.rl.relabel_buffer import RelabelingDictReplayBuffer, RelabelingReplayBuffer

__all__ = [
    "INTERVENTION_KEY",
    "EXECUTED_ACTION_KEY",
    "executed_buffer_action",
    "InterventionReplayBuffer",
    "InterventionDictReplayBuffer",
    "intervention_buffer_class",
    "InterventionCounter",
    "InterventionLoggingCallback",
]

log = logging.getLogger(__name__)

INTERVENTION_KEY = "intervention"
"""``info`` key: True on steps where a person (teleop) chose the action instead of the policy."""
EXECUTED_ACTION_KEY = "action"
"""``info`` key: the action the env really executed, in its action-space units."""
_BASE_ACTION_KEY = "base_action"  # rlrm.rl.residual.BASE_ACTION_KEY (not imported: residual pulls in more)


def executed_buffer_action(info: dict[str, Any], action_space: spaces.Box,
                           residual_scale: float | None = None) -> np.ndarray:
    """The executed action of a takeover step as the replay buffer stores actions: (action_dim,) in [-1, 1].

    Args:
        info: the step's info with ``info["action"]`` (env action units).
        action_space: the agent's Box action space (the buffer's).
        residual_scale: for residual policies (``info["base_action"]`` present): the residual scale;
            the stored action is then the residual ``(executed - base) / scale`` that reproduces it.

    >>> box = spaces.Box(-2.0, 2.0, (2,))
    >>> executed_buffer_action({"intervention": True, "action": np.array([1.0, -2.0])}, box).tolist()
    [0.5, -1.0]
    """
    if EXECUTED_ACTION_KEY not in info:
        raise ValueError(
            f"info[{INTERVENTION_KEY!r}] is true but info has no {EXECUTED_ACTION_KEY!r} key (the executed "
            f"action); an env with takeovers must report what it executed, got info keys {sorted(info)}"
        )
    action = np.asarray(info[EXECUTED_ACTION_KEY], dtype=np.float32).reshape(-1)
    if _BASE_ACTION_KEY in info:
        if residual_scale is None:
            raise ValueError(
                "a takeover step of a residual policy (info has 'base_action') needs residual_scale to turn the "
                "executed action into a residual; pass replay_buffer_kwargs={'residual_scale': algo.residual_scale}"
            )
        base = np.asarray(info[_BASE_ACTION_KEY], dtype=np.float32).reshape(-1)
        action = (action - base) / float(residual_scale)
    if action.shape != action_space.shape:
        raise ValueError(
            f"info[{EXECUTED_ACTION_KEY!r}] has shape {action.shape}, expected the action space's {action_space.shape}"
        )
    low, high = action_space.low.astype(np.float32), action_space.high.astype(np.float32)
    return np.clip(2.0 * (action - low) / (high - low) - 1.0, -1.0, 1.0)


def _concat(a: Any, b: Any) -> Any:
    """Concatenate two SB3 sample tuples (Box or Dict observations) along the batch axis."""
    fields = {}
    for name in a._fields:
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            fields[name] = None
        elif isinstance(x, dict):
            fields[name] = {k: torch.cat([x[k], y[k]]) for k in x}
        else:
            fields[name] = torch.cat([x, y])
    return type(a)(**fields)


class _InterventionMixin:
    """Executed-action swap, the takeover copy and the mixed sampling, shared by the Box and Dict buffers."""

    n_envs: int
    action_space: spaces.Space
    _takeover_buffer_class: type  # the relabelling buffer the takeover copy is made of

    def __init__(self, buffer_size: int, observation_space: spaces.Space, action_space: spaces.Space,
                 device: Any = "auto", n_envs: int = 1, optimize_memory_usage: bool = False,
                 handle_timeout_termination: bool = True, labeler: Any = None, wait_timeout_s: float = 120.0,
                 intervention_ratio: float = 0.5, intervention_buffer_size: int | None = None,
                 residual_scale: float | None = None):
        super().__init__(buffer_size, observation_space, action_space, device, n_envs,  # type: ignore[call-arg]
                         optimize_memory_usage, handle_timeout_termination, labeler, wait_timeout_s)
        if not 0.0 <= float(intervention_ratio) < 1.0:
            raise ValueError(f"intervention_ratio must be in [0, 1), got {intervention_ratio!r}")
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"intervention buffers need a Box action space, got {action_space}")
        self.intervention_ratio = float(intervention_ratio)
        self.residual_scale = None if residual_scale is None else float(residual_scale)
        self.interventions = self._takeover_buffer_class(
            int(intervention_buffer_size or buffer_size), observation_space, action_space, device, 1,
            handle_timeout_termination=handle_timeout_termination, wait_timeout_s=wait_timeout_s)
        """Second buffer: a copy of every takeover transition (one env column)."""
        self.num_intervention_steps = 0

    def add(self, obs, next_obs, action, reward, done, infos) -> None:
        """Store one step of every env, with the executed action on takeover steps (copied to :attr:`interventions`)."""
        taken_over = [i for i, info in enumerate(infos[: self.n_envs]) if info.get(INTERVENTION_KEY)]
        if taken_over:
            action = np.array(action, dtype=np.float32, copy=True).reshape(self.n_envs, -1)
            for i in taken_over:
                action[i] = executed_buffer_action(infos[i], self.action_space, self.residual_scale)
        super().add(obs, next_obs, action, reward, done, infos)  # type: ignore[misc]  # the relabelling buffer
        for i in taken_over:
            row = slice(i, i + 1)
            self.interventions.add(
                {k: v[row] for k, v in obs.items()} if isinstance(obs, dict) else obs[row],
                {k: v[row] for k, v in next_obs.items()} if isinstance(next_obs, dict) else next_obs[row],
                action[row], np.asarray(reward).reshape(-1)[row], np.asarray(done).reshape(-1)[row], [infos[i]],
            )
            self.num_intervention_steps += 1

    def relabel(self, ticket: int, reward: float, terminated: bool) -> bool:
        """Write a late reward into this buffer and into the takeover copy of the same step."""
        stored = super().relabel(ticket, reward, terminated)  # type: ignore[misc]
        self.interventions.relabel(ticket, reward, terminated)
        return stored

    def sample(self, batch_size: int, env=None):
        """``batch_size`` labelled transitions; ``intervention_ratio`` of them from the takeover buffer once it has data."""
        n_takeover = int(round(batch_size * self.intervention_ratio)) if self.interventions.num_labelled > 0 else 0
        if n_takeover == 0:
            return super().sample(batch_size, env)  # type: ignore[misc]
        online = super().sample(batch_size - n_takeover, env)  # type: ignore[misc]
        return _concat(online, self.interventions.sample(n_takeover, env))


class InterventionReplayBuffer(_InterventionMixin, RelabelingReplayBuffer):
    """SB3 replay buffer (Box observations) that learns from takeovers: executed actions, RLPD-style batches.

    Args:
        intervention_ratio: fraction of each batch drawn from the takeover buffer once it holds a
            labelled transition (0.5 as in RLPD / HIL-SERL; 0 turns the mixing off).
        intervention_buffer_size: capacity of the takeover buffer (default: ``buffer_size``).
        residual_scale: for residual policies, the scale turning executed actions into residuals.
        Other args as :class:`~rlrm.rl.relabel_buffer.RelabelingReplayBuffer`.

    >>> box = spaces.Box(-1, 1, (2,))
    >>> buf = InterventionReplayBuffer(8, box, box, device="cpu")
    >>> o = np.zeros((1, 2), np.float32)
    >>> buf.add(o, o, np.zeros((1, 2)), np.zeros(1), np.zeros(1), [{"intervention": True, "action": [0.3, -1.0]}])
    >>> [round(float(a), 2) for a in buf.actions[0, 0]], buf.interventions.size()
    ([0.3, -1.0], 1)
    """

    _takeover_buffer_class = RelabelingReplayBuffer


class InterventionDictReplayBuffer(_InterventionMixin, RelabelingDictReplayBuffer):
    """SB3 Dict replay buffer that learns from takeovers; as :class:`InterventionReplayBuffer` for Dict observations.

    >>> space = spaces.Dict({"state": spaces.Box(-1, 1, (2,))})
    >>> buf = InterventionDictReplayBuffer(8, space, spaces.Box(-1, 1, (1,)), device="cpu")
    >>> o = {"state": np.zeros((1, 2), np.float32)}
    >>> buf.add(o, o, np.zeros((1, 1)), np.zeros(1), np.zeros(1), [{}])
    >>> buf.size(), buf.interventions.size()
    (1, 0)
    """

    _takeover_buffer_class = RelabelingDictReplayBuffer


def intervention_buffer_class(observation_space: spaces.Space) -> type:
    """The intervention buffer class matching ``observation_space`` (Dict or not)."""
    if isinstance(observation_space, spaces.Dict):
        return InterventionDictReplayBuffer
    return InterventionReplayBuffer


class InterventionCounter:
    """Count takeover steps of one env's current episode; :meth:`end_episode` gives its intervention rate.

    >>> c = InterventionCounter()
    >>> for flag in (True, False, False, True):
    ...     c.step({"intervention": flag})
    >>> c.end_episode()
    (0.5, 2, 4)
    >>> c.step({}); c.end_episode()  # an env without takeovers has no rate
    (None, 0, 1)
    """

    def __init__(self) -> None:
        self.steps = 0
        self.takeover_steps = 0
        self.reported = False

    def step(self, info: dict[str, Any]) -> None:
        """Count one env step."""
        self.steps += 1
        self.reported = self.reported or INTERVENTION_KEY in info
        self.takeover_steps += bool(info.get(INTERVENTION_KEY, False))

    def end_episode(self) -> tuple[float | None, int, int]:
        """``(rate, takeover_steps, steps)`` of the finished episode (rate None if the env never reports
        ``info["intervention"]``); starts counting the next one."""
        rate = self.takeover_steps / self.steps if self.reported and self.steps else None
        out = (rate, self.takeover_steps, self.steps)
        self.steps = self.takeover_steps = 0
        self.reported = False
        return out


class InterventionLoggingCallback(BaseCallback):
    """Log each finished episode's intervention rate (``interventions/rate``, ``interventions/steps``) as running means.

    Envs that never report ``info["intervention"]`` log nothing.

    >>> SAC("MultiInputPolicy", env).learn(1000, callback=InterventionLoggingCallback())  # doctest: +SKIP
    """

    def __init__(self) -> None:
        super().__init__()
        self._counters: list[InterventionCounter] = []

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", [])
        dones = self.locals.get("dones", [False] * len(infos))
        while len(self._counters) < len(infos):
            self._counters.append(InterventionCounter())
        for counter, info, done in zip(self._counters, infos, dones, strict=False):
            counter.step(info)
            if done:
                rate, takeover, _ = counter.end_episode()
                if rate is not None:
                    self.logger.record_mean("interventions/rate", rate)
                    self.logger.record_mean("interventions/steps", takeover)
        return True
