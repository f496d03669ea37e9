"""Residual policies: a frozen base policy plus a learned correction.

* :class:`BasePolicy` - the protocol of a frozen base policy: ``act(obs) -> action``.
* :class:`ScriptedPolicy` - adapter for any ``callable(obs) -> action``.
* :class:`GoalReachingController` - a proportional controller for goal-conditioned dict
  observations (``achieved_goal``/``desired_goal``), the default scripted base for Fetch.
* :class:`SB3Policy` - adapter for a saved stable-baselines3 model (``.zip``).
* :class:`LeRobotPolicy` - a LeRobot policy through its saved processors; re-exported from
  :mod:`rlrm.bridges.lerobot_policy` (needs the ``rlrm[lerobot]`` extra when loaded).
* :func:`make_base_policy` - build one of the above from a config dict.
* :class:`ResidualAction` - env wrapper: the agent's action is the residual,
  ``env action = clip(base + scale * residual)``, and the observation gains ``base_action``.
* :func:`zero_init_residual` - zero the last layer of an SB3 actor so it starts as the base.

Following residual fine-tuning work (e.g. Ankile et al., 2024), the residual sees the
observation *and* the base action, and its output layer starts at zero so training begins
exactly at the base policy's behaviour.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlrm.bridges.lerobot_policy import LeRobotPolicy

__all__ = [
    "BasePolicy",
    "ScriptedPolicy",
    "GoalReachingController",
    "SB3Policy",
    "LeRobotPolicy",
    "make_base_policy",
    "ResidualAction",
    "zero_init_residual",
    "BASE_ACTION_KEY",
]

log = logging.getLogger(__name__)

BASE_ACTION_KEY = "base_action"
"""Observation key under which :class:`ResidualAction` shows the base action to the residual."""


@runtime_checkable
class BasePolicy(Protocol):
    """A frozen policy: ``act(obs) -> action`` for one (unbatched) observation, in env action units."""

    def act(self, obs: Any) -> np.ndarray:
        """The base action for ``obs`` (same shape as the env's action space)."""
        ...


class ScriptedPolicy:
    """Wrap a plain function ``fn(obs) -> action`` as a :class:`BasePolicy`.

    >>> p = ScriptedPolicy(lambda obs: -obs)
    >>> p.act(np.array([0.5, -1.0]))
    array([-0.5,  1. ])
    """

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        if not callable(fn):
            raise TypeError(f"ScriptedPolicy needs a callable obs -> action, got {type(fn).__name__}")
        self.fn = fn

    def act(self, obs: Any) -> np.ndarray:
        """Call the wrapped function."""
        return np.asarray(self.fn(obs))


class GoalReachingController:
    """Proportional controller ``a[:k] = gain * (desired_goal - achieved_goal)``, rest zero.

    A reasonable but imperfect base for goal-reaching tasks (Fetch): with a low ``gain`` it
    moves slowly, so a residual has something to add.

    Args:
        action_dim: size of the env action (Fetch: 4, xyz + gripper).
        gain: proportional gain, action units per metre.
        noise: std of Gaussian noise added to the action (0 for a deterministic base).

    >>> c = GoalReachingController(action_dim=4, gain=10.0)
    >>> c.act({"achieved_goal": np.zeros(3), "desired_goal": np.array([0.05, 0.0, -0.2])})
    array([ 0.5,  0. , -1. ,  0. ])
    """

    def __init__(self, action_dim: int, gain: float = 10.0, noise: float = 0.0, seed: int = 0) -> None:
        self.action_dim = int(action_dim)
        self.gain = float(gain)
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Action towards the goal, clipped to [-1, 1]."""
        if not isinstance(obs, dict) or "achieved_goal" not in obs or "desired_goal" not in obs:
            raise ValueError(
                "GoalReachingController needs a dict observation with 'achieved_goal' and 'desired_goal', "
                f"got {type(obs).__name__} {sorted(obs) if isinstance(obs, dict) else ''}"
            )
        delta = np.asarray(obs["desired_goal"], np.float64) - np.asarray(obs["achieved_goal"], np.float64)
        action = np.zeros(self.action_dim)
        k = min(len(delta), self.action_dim)
        action[:k] = self.gain * delta[:k]
        if self.noise > 0:
            action = action + self.rng.normal(0.0, self.noise, size=action.shape)
        return np.clip(action, -1.0, 1.0)


class SB3Policy:
    """A saved stable-baselines3 model used as a frozen base (deterministic ``predict``).

    Args:
        path: the ``.zip`` written by ``model.save``.
        algo: SB3 class name that saved it (``"SAC"``, ``"PPO"``, ``"TD3"``, ...).
    """

    def __init__(self, path: str, algo: str = "SAC", device: str = "cpu") -> None:
        import stable_baselines3 as sb3

        if not hasattr(sb3, algo):
            raise ValueError(f"unknown stable-baselines3 algorithm {algo!r}; expected e.g. 'SAC', 'PPO', 'TD3'")
        self.model = getattr(sb3, algo).load(path, device=device)

    def act(self, obs: Any) -> np.ndarray:
        """The model's deterministic action for ``obs``."""
        action, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(action)


def _import_callable(target: str) -> Callable[..., Any]:
    if ":" not in target:
        raise ValueError(f"base policy target must look like 'package.module:function', got {target!r}")
    module, name = target.split(":", 1)
    return getattr(importlib.import_module(module), name)


def _lerobot_base(action_space: spaces.Box, **kwargs: Any) -> LeRobotPolicy:
    """A :class:`LeRobotPolicy` whose action shape is checked against the env's action space."""
    policy = LeRobotPolicy(**kwargs)
    if tuple(policy.action_shape) != tuple(action_space.shape):
        raise ValueError(f"LeRobot policy at {kwargs.get('path')} outputs actions of shape {policy.action_shape}, "
                         f"but the env's action space is {action_space.shape}")
    return policy


BASE_POLICY_KINDS = ("goal_reaching", "scripted", "sb3", "bc", "lerobot")


def _bc_policy(path: str) -> BasePolicy:
    from rlrm.rl.bc import BCPolicy

    return BCPolicy.load(_package_path(path))


def _package_path(path: str) -> str:
    """``path`` as given, or relative to the installed packages (``envs/assets/...`` works from any folder)."""
    from pathlib import Path

    candidate = Path(path)
    if candidate.exists() or candidate.is_absolute():
        return str(candidate)
    root = Path(__file__).resolve().parents[2]  # the folder holding rlrm/ and envs/
    return str(root / candidate) if (root / candidate).exists() else str(candidate)


def make_base_policy(spec: dict[str, Any], action_space: spaces.Box) -> BasePolicy:
    """Build a frozen base policy from a config dict ``{kind: ..., ...}``.

    Kinds: ``goal_reaching`` (``gain``, ``noise``), ``scripted`` (``target: "module:fn"``),
    ``sb3`` (``path``, ``algo``), ``bc`` (``path`` of a :class:`~rlrm.rl.bc.BCPolicy` file),
    ``lerobot`` (``path``, optional ``obs_keys``, ``device``, ``task``, ``policy_type``; the policy's action
    shape must match the env's).
    """
    spec = dict(spec)
    kind = spec.pop("kind", None)
    builders: dict[str, Callable[..., BasePolicy]] = {
        "goal_reaching": lambda **kw: GoalReachingController(action_dim=int(np.prod(action_space.shape)), **kw),
        "scripted": lambda target: ScriptedPolicy(_import_callable(target)),
        "sb3": SB3Policy,
        "bc": _bc_policy,
        "lerobot": lambda **kw: _lerobot_base(action_space, **kw),
    }
    if kind not in builders:
        raise ValueError(f"unknown base policy kind {kind!r}; expected one of {list(BASE_POLICY_KINDS)}")
    # A Hydra override such as base_policy.kind=sb3 keeps the default kind's fields: drop those, loudly.
    accepted = {
        "goal_reaching": {"gain", "noise", "seed"}, "scripted": {"target"},
        "sb3": {"path", "algo", "device"}, "bc": {"path"},
        "lerobot": {"path", "policy_type", "obs_keys", "device", "task"},
    }[kind]
    unused = sorted(set(spec) - accepted)
    if unused:
        log.warning("base_policy kind %r ignores %s (it takes %s)", kind, unused, sorted(accepted))
    return builders[kind](**{k: v for k, v in spec.items() if k in accepted})


class ResidualAction(gym.Wrapper):
    """Make the agent learn a residual on top of a frozen base policy.

    ``step(residual)`` sends ``clip(base + scale * residual, low, high)`` to the env, where
    ``base = base_policy.act(obs)`` for the current observation. The observation becomes a
    dict with the base action under ``"base_action"`` (dict observations keep their keys;
    others go under ``"observation"``), so the residual sees what the base wants to do.
    The agent's action space is [-1, 1]^d; ``info["base_action"]`` and ``info["env_action"]``
    report what was really sent.

    Args:
        env: env with a Box action space.
        base_policy: the frozen :class:`BasePolicy`.
        scale: residual scale, in env action units per unit of residual.

    >>> import gymnasium as gym, envs
    >>> env = ResidualAction(gym.make("rlrm/FetchReach-v0", image_size=64),
    ...                      GoalReachingController(action_dim=4), scale=0.3)
    >>> obs, _ = env.reset(seed=0)
    >>> _, _, _, _, info = env.step(np.zeros(4, np.float32))
    >>> bool(np.allclose(info["env_action"], info["base_action"]))
    True
    """

    def __init__(self, env: gym.Env, base_policy: BasePolicy, scale: float = 0.2) -> None:
        super().__init__(env)
        if not isinstance(env.action_space, spaces.Box):
            raise ValueError(f"ResidualAction needs a Box action space, got {env.action_space}")
        if not scale > 0:
            raise ValueError(f"residual scale must be > 0, got {scale}")
        self.base_policy = base_policy
        self.scale = float(scale)
        box = env.action_space
        self._low, self._high = box.low.astype(np.float32), box.high.astype(np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=box.shape, dtype=np.float32)
        base_space = spaces.Box(self._low, self._high, dtype=np.float32)
        inner = env.observation_space
        if isinstance(inner, spaces.Dict):
            if BASE_ACTION_KEY in inner.spaces:
                raise ValueError(f"observation already has a {BASE_ACTION_KEY!r} key")
            self.observation_space = spaces.Dict({**inner.spaces, BASE_ACTION_KEY: base_space})
        else:
            self.observation_space = spaces.Dict({"observation": inner, BASE_ACTION_KEY: base_space})
        self._base_action = np.zeros(box.shape, np.float32)

    def with_base_action(self, obs: Any) -> dict[str, Any]:
        """The agent's observation for the inner env's ``obs``: it plus the base action the frozen base takes
        there (clipped to the env's action space); that base action is what the next :meth:`step` adds to.
        Demonstrations (:mod:`rlrm.rl.demos`) use it to turn an executed action into a residual."""
        base = np.asarray(self.base_policy.act(obs), dtype=np.float32).reshape(self._low.shape)
        self._base_action = np.clip(base, self._low, self._high)
        if isinstance(obs, dict):
            return {**obs, BASE_ACTION_KEY: self._base_action.copy()}
        return {"observation": obs, BASE_ACTION_KEY: self._base_action.copy()}

    def reset(self, **kwargs):
        """Reset the env (and the base policy if it keeps state) and compute the first base action."""
        if hasattr(self.base_policy, "reset"):
            self.base_policy.reset()
        obs, info = self.env.reset(**kwargs)
        return self.with_base_action(obs), info

    def step(self, residual):
        """Send ``clip(base + scale * residual)``; return the next observation with its base action."""
        residual = np.clip(np.asarray(residual, dtype=np.float32).reshape(self._low.shape), -1.0, 1.0)
        base = self._base_action
        env_action = np.clip(base + self.scale * residual, self._low, self._high)
        obs, reward, terminated, truncated, info = self.env.step(env_action)
        info = dict(info)
        info["base_action"] = base
        info["env_action"] = env_action
        return self.with_base_action(obs), reward, terminated, truncated, info


def zero_init_residual(model: Any, initial_std: float | None = None) -> None:
    """Zero the output layer of an SB3 actor so the initial (deterministic) residual is 0.

    SAC/TD3: the actor's ``mu`` layer; PPO/A2C: the policy's ``action_net``. With a tanh
    squash (SAC) or a Gaussian mean (PPO), zero weights and bias give a zero residual.
    ``initial_std`` (SAC only) also sets the actor's exploration at the start: its ``log_std`` layer
    outputs ``log(initial_std)`` for every observation (SAC then adapts it as usual).
    """
    import torch

    policy = model.policy
    layers = []
    if hasattr(policy, "actor") and hasattr(policy.actor, "mu"):
        layers.append(policy.actor.mu)
    if hasattr(policy, "action_net"):
        layers.append(policy.action_net)
    if not layers:
        raise ValueError(f"don't know the output layer of {type(policy).__name__}; expected an SAC or PPO policy")
    with torch.no_grad():
        for layer in layers:
            mods = [m for m in layer.modules() if isinstance(m, torch.nn.Linear)]
            last = mods[-1]
            last.weight.zero_()
            if last.bias is not None:
                last.bias.zero_()
        if initial_std is not None:
            if not initial_std > 0:
                raise ValueError(f"initial_residual_std must be > 0, got {initial_std}")
            log_std = getattr(getattr(policy, "actor", None), "log_std", None)
            if not isinstance(log_std, torch.nn.Linear):
                raise ValueError("initial_residual_std needs an SAC actor with a state-dependent log_std layer")
            log_std.weight.zero_()
            log_std.bias.fill_(float(np.log(initial_std)))
