"""Thin builders of stable-baselines3 algorithms from a Hydra ``algo`` config.

* :data:`ALGORITHMS` - the algorithm names ``run_rl.py`` accepts (``algo=...``).
* :func:`policy_for` - the SB3 policy name for an observation space (Dict/image/state).
* :func:`make_algorithm` - build SAC, PPO or residual SAC on an env.
* :func:`buffer_capacity` - the replay buffer size of a run: ``algo.buffer_size`` capped at its budget.
* :func:`describe_space` - an observation space on one log line.
* :func:`load_algorithm` - load a checkpoint of any of them onto an env (resume).

Everything algorithmic is SB3's; what is ours is choosing the policy for the observation
space, the replay buffer (relabelling, for rewards that arrive late; storing a person's executed
action on takeover steps, :mod:`rlrm.rl.interventions`), and the zero-initialised residual head.
"""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
from gymnasium import spaces
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.preprocessing import is_image_space

from rlrm.rl.interventions import intervention_buffer_class
from rlrm.rl.relabel_buffer import relabeling_buffer_class
from rlrm.rl.residual import zero_init_residual

__all__ = ["ALGORITHMS", "ResidualSAC", "policy_for", "make_algorithm", "load_algorithm", "buffer_capacity", "describe_space"]

log = logging.getLogger(__name__)

class ResidualSAC(SAC):
    """SAC for a residual on a frozen base: the critic learns alone for the first ``actor_warmup_steps``.

    An untrained critic's action gradient is noise; following it moves the residual's mean away from zero
    and degrades the base before anything is learned (measured on MetaWorld drawer-open with the env's
    dense reward: rollout success 0.50 -> 0.22 over the first 4800 steps without a warm-up). During the
    warm-up the actor's learning rate is 0, so the policy stays exactly the base (plus exploration) while
    the critic fits its returns. Everything else is SB3's SAC.

    Args:
        actor_warmup_steps: env steps before the actor starts to learn (0: plain SAC).
    """

    def __init__(self, *args: Any, actor_warmup_steps: int = 0, **kwargs: Any) -> None:
        if int(actor_warmup_steps) < 0:
            raise ValueError(f"actor_warmup_steps must be >= 0, got {actor_warmup_steps}")
        self.actor_warmup_steps = int(actor_warmup_steps)
        super().__init__(*args, **kwargs)

    def _update_learning_rate(self, optimizers: Any) -> None:
        super()._update_learning_rate(optimizers)
        if self.num_timesteps < self.actor_warmup_steps:
            for group in self.actor.optimizer.param_groups:
                group["lr"] = 0.0


# name -> (SB3 class, off-policy?)
ALGORITHMS: dict[str, tuple[type[BaseAlgorithm], bool]] = {
    "sac": (SAC, True),
    "ppo": (PPO, False),
    "residual_sac": (ResidualSAC, True),
}

# config keys that are ours, not SB3 constructor arguments
_OWN_KEYS = {"name", "policy", "net_arch", "residual_scale", "base_policy", "normalize_obs", "initial_residual_std"}


def policy_for(observation_space: spaces.Space) -> str:
    """``MultiInputPolicy`` for Dict, ``CnnPolicy`` for images, else ``MlpPolicy``."""
    if isinstance(observation_space, spaces.Dict):
        return "MultiInputPolicy"
    if is_image_space(observation_space):
        return "CnnPolicy"
    return "MlpPolicy"


def describe_space(space: spaces.Space) -> str:
    """``space`` on one line: ``Dict(ee_pose: float32 (6,), front: uint8 (128, 128, 3))`` instead of every bound.

    >>> describe_space(spaces.Dict({"x": spaces.Box(-1, 1, (2,)), "img": spaces.Box(0, 255, (8, 8, 3), "uint8")}))
    'Dict(img: uint8 (8, 8, 3), x: float32 (2,))'
    """
    if isinstance(space, spaces.Dict):
        return "Dict(" + ", ".join(f"{key}: {describe_space(sub)}" for key, sub in space.spaces.items()) + ")"
    if isinstance(space, spaces.Box):
        return f"{space.dtype} {space.shape}"
    return " ".join(str(space).split())


def buffer_capacity(algo_cfg: dict[str, Any], total_steps: int | None) -> int | None:
    """The replay buffer size for a run of ``total_steps`` env steps: ``algo.buffer_size`` (SB3's default if
    unset) capped at the budget, since rows beyond it are never filled. None for on-policy algorithms.

    >>> buffer_capacity({"name": "sac", "buffer_size": 50000}, 40)
    40
    """
    cls, off_policy = ALGORITHMS[algo_cfg["name"]]
    if not off_policy:
        return None
    import inspect

    configured = algo_cfg.get("buffer_size")
    if configured is None:
        configured = inspect.signature(cls).parameters["buffer_size"].default
    return int(configured) if total_steps is None else max(1, min(int(configured), int(total_steps)))


def _sb3_kwargs(algo_cfg: dict[str, Any]) -> dict[str, Any]:
    kwargs = {k: v for k, v in algo_cfg.items() if k not in _OWN_KEYS}
    if isinstance(kwargs.get("train_freq"), list):  # algo.train_freq=[1,episode] from the command line
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    if algo_cfg.get("net_arch") is not None:
        kwargs["policy_kwargs"] = {**kwargs.get("policy_kwargs", {}), "net_arch": list(algo_cfg["net_arch"])}
    return kwargs


def make_algorithm(
    algo_cfg: dict[str, Any],
    env: gym.Env,
    *,
    seed: int = 0,
    tensorboard_log: str | None = None,
    relabel: bool = False,
    device: str = "cpu",
    total_steps: int | None = None,
) -> BaseAlgorithm:
    """Build the SB3 algorithm ``algo_cfg["name"]`` on ``env``.

    Args:
        algo_cfg: the ``algo`` config group (plain dict): ``name`` plus SB3 constructor arguments
            (``learning_rate``, ``batch_size``, ...), ``policy`` (``auto`` picks from the observation
            space) and ``net_arch``.
        env: the (reward-wrapped) env; for ``residual_sac`` already wrapped in
            :class:`~rlrm.rl.residual.ResidualAction`.
        relabel: use the relabelling replay buffer (asynchronous rewards; off-policy only). Off-policy
            algorithms get :func:`~rlrm.rl.interventions.intervention_buffer_class` unless ``algo_cfg``
            names a ``replay_buffer_class``: takeovers store the executed action (a relabelling buffer too).
        total_steps: the run's budget; an off-policy replay buffer gets :func:`buffer_capacity` rows, not
            more (a 40-step robot run does not preallocate 50000 image rows).
    """
    name = algo_cfg.get("name")
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; expected one of {sorted(ALGORITHMS)}")
    cls, off_policy = ALGORITHMS[name]
    if relabel and not off_policy:
        raise ValueError(
            f"asynchronous rewards need a replay buffer; {name!r} is on-policy. "
            f"Use reward.mode=sync or one of {[n for n, (_, o) in ALGORITHMS.items() if o]}"
        )
    policy = algo_cfg.get("policy", "auto")
    if policy in (None, "auto"):
        policy = policy_for(env.observation_space)
    kwargs = _sb3_kwargs(algo_cfg)
    if off_policy and total_steps is not None:
        kwargs["buffer_size"] = buffer_capacity(algo_cfg, total_steps)
    if off_policy and "replay_buffer_class" not in kwargs:
        # takeover steps store the executed action and also fill a second buffer (rlrm.rl.interventions);
        # it is a relabelling buffer, so asynchronous rewards work with it as well
        kwargs["replay_buffer_class"] = intervention_buffer_class(env.observation_space)
        if name == "residual_sac":
            kwargs["replay_buffer_kwargs"] = {"residual_scale": float(algo_cfg["residual_scale"]),
                                              **kwargs.get("replay_buffer_kwargs", {})}
    elif relabel:
        kwargs["replay_buffer_class"] = relabeling_buffer_class(env.observation_space)
    model = cls(policy, env, seed=seed, tensorboard_log=tensorboard_log, device=device, verbose=0, **kwargs)
    if name == "residual_sac":
        zero_init_residual(model, initial_std=algo_cfg.get("initial_residual_std"))
    log.info("built %s (%s) on %s%s", name, policy, describe_space(env.observation_space),
             f", replay buffer of {model.buffer_size} transitions" if off_policy else "")
    return model


def load_algorithm(name: str, path: str, env: gym.Env, device: str = "cpu") -> BaseAlgorithm:
    """Load a checkpoint saved by ``model.save`` for algorithm ``name`` onto ``env``."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; expected one of {sorted(ALGORITHMS)}")
    cls, _ = ALGORITHMS[name]
    return cls.load(path, env=env, device=device)
