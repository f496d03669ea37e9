"""Thin builders of stable-baselines3 algorithms from a Hydra ``algo`` config.

* :data:`ALGORITHMS` - the algorithm names ``run_rl.py`` accepts (``algo=...``).
* :func:`policy_for` - the SB3 policy name for an observation space (Dict/image/state).
* :func:`make_algorithm` - build SAC, PPO or residual SAC on an env.
* :class:`ResidualSAC` - SAC for a residual: critic warm-up, self-imitation of successes, residual penalty;
  :class:`SuccessReplay` and :func:`episode_succeeded` - the successful steps it imitates and the verdict.
* :func:`buffer_capacity` - the replay buffer size of a run: ``algo.buffer_size`` capped at its budget.
* :func:`describe_space` - an observation space on one log line.
* :func:`load_algorithm` - load a checkpoint of any of them onto an env (resume).

Everything algorithmic is SB3's; what is ours is choosing the policy for the observation
space, the replay buffer (relabelling, for rewards that arrive late; storing a person's executed
action on takeover steps, :mod:`rlrm.rl.interventions`), and the zero-initialised residual head.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.preprocessing import is_image_space

from rlrm.rl.interventions import INTERVENTION_KEY, executed_buffer_action, intervention_buffer_class
from rlrm.rl.relabel_buffer import relabeling_buffer_class
from rlrm.rl.residual import zero_init_residual

__all__ = ["ALGORITHMS", "ResidualSAC", "SuccessReplay", "episode_succeeded", "policy_for", "make_algorithm",
           "load_algorithm", "buffer_capacity", "describe_space"]

log = logging.getLogger(__name__)

def episode_succeeded(info: dict[str, Any]) -> bool | None:
    """The success verdict a learner may use at an episode's end: a person's label, else the reward model's
    detector (``info["rlrm"]["success"]``), else the env's ``is_success``; None when there is none."""
    if info.get("human_label") is not None:
        return bool(info["human_label"])
    rlrm = info.get("rlrm") or {}
    if "success" in rlrm:
        return bool(rlrm["success"])
    if "is_success" in info:
        return bool(info["is_success"])
    return None


class SuccessReplay:
    """The (observation, action) pairs of the latest successful episodes, a ring of ``capacity`` steps."""

    def __init__(self, capacity: int, seed: int | None = None) -> None:
        if int(capacity) <= 0:
            raise ValueError(f"the success replay needs a capacity > 0, got {capacity}")
        self.capacity = int(capacity)
        self.obs: list[Any] = []
        self.actions: list[np.ndarray] = []
        self.episodes = 0
        self._next = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.actions)

    def add_episode(self, steps: list[tuple[Any, np.ndarray]]) -> None:
        """Append one successful episode's steps (oldest steps leave first when full)."""
        for obs, action in steps:
            if len(self.actions) < self.capacity:
                self.obs.append(obs)
                self.actions.append(action)
            else:
                self.obs[self._next], self.actions[self._next] = obs, action
            self._next = (self._next + 1) % self.capacity
        self.episodes += 1

    def sample(self, n: int) -> tuple[Any, np.ndarray]:
        """``n`` random pairs: observations stacked (a dict of arrays for Dict spaces) and actions (n, A)."""
        idx = self.rng.integers(len(self.actions), size=int(n))
        first = self.obs[0]
        if isinstance(first, dict):
            obs = {k: np.stack([self.obs[i][k] for i in idx]) for k in first}
        else:
            obs = np.stack([self.obs[i] for i in idx])
        return obs, np.stack([self.actions[i] for i in idx])


class _AuxLossOptimizer(th.optim.Optimizer):
    """An optimizer that adds ``aux()``'s gradient to the one already accumulated before each step.

    SB3's SAC builds the actor loss and calls ``optimizer.step()``; wrapping the actor's optimizer adds the
    residual's extra terms to that same update without copying SB3's training loop. It is an ``Optimizer``
    (SB3 saves and loads optimizers by that type) that hands everything but ``step`` to the one it wraps.
    """

    def __init__(self, optimizer: th.optim.Optimizer, aux: Callable[[], Any]) -> None:  # noqa: D107
        # no super().__init__: the wrapped optimizer owns the parameter groups and state
        self.optimizer = optimizer
        self.aux = aux

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.optimizer.state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.optimizer.defaults

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)

    def step(self, closure: Any = None) -> Any:
        loss = self.aux()
        if loss is not None:
            loss.backward()
        return self.optimizer.step(closure)


class ResidualSAC(SAC):
    """SAC for a residual on a frozen base: a critic warm-up, then optional self-imitation of successes.

    An untrained critic's action gradient is noise; following it moves the residual's mean away from zero
    and degrades the base before anything is learned (measured on MetaWorld drawer-open with the env's
    dense reward: rollout success 0.50 -> 0.22 over the first 4800 steps without a warm-up). During the
    warm-up the actor's learning rate is 0, so the policy stays exactly the base (plus exploration) while
    the critic fits its returns.

    A mediocre base succeeds on some layouts and, with exploration, now and then on others. With
    ``self_imitation > 0`` the residual also regresses onto the actions it executed in its successful
    episodes (success as the learner sees it: a person's label, else the reward model's detector, else the
    env's ``is_success``; see :func:`episode_succeeded`), so a lucky correction is kept and the base's
    successes are not unlearned: self-imitation learning (Oh et al., 2018) with success as the filter. With
    ``residual_penalty > 0`` the residual's mean is pulled toward zero on replayed states (TD3+BC's
    regulariser with the base as the behaviour). Both terms are scaled by the critic's mean |Q| of the
    batch (as TD3+BC scales its Q term) and added to SAC's actor loss in the same update.

    Args:
        actor_warmup_steps: env steps before the actor starts to learn (0: plain SAC).
        self_imitation: weight of the regression onto successful episodes' actions (0: off).
        success_buffer_size: steps of successful episodes kept for it.
        residual_penalty: weight of the pull of the residual's mean toward zero (0: off).

    The successful steps are kept in memory, not in checkpoints: a resumed run gathers them again from its
    new successes (and ``demos=`` are not re-read on resume).
    """

    def __init__(self, *args: Any, actor_warmup_steps: int = 0, self_imitation: float = 0.0,
                 success_buffer_size: int = 20_000, residual_penalty: float = 0.0, **kwargs: Any) -> None:
        if int(actor_warmup_steps) < 0:
            raise ValueError(f"actor_warmup_steps must be >= 0, got {actor_warmup_steps}")
        for name, value in (("self_imitation", self_imitation), ("residual_penalty", residual_penalty)):
            if not (float(value) >= 0.0 and np.isfinite(float(value))):
                raise ValueError(f"{name} must be a finite weight >= 0, got {value}")
        self.actor_warmup_steps = int(actor_warmup_steps)
        self.self_imitation = float(self_imitation)
        self.residual_penalty = float(residual_penalty)
        self.success_buffer_size = int(success_buffer_size)
        self.successes = SuccessReplay(self.success_buffer_size, seed=kwargs.get("seed"))
        self._episode_steps: list[list[tuple[Any, np.ndarray]]] = []
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.self_imitation > 0 or self.residual_penalty > 0:
            self.actor.optimizer = _AuxLossOptimizer(self.actor.optimizer, self._aux_actor_loss)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "successes", "_episode_steps"]

    def _update_learning_rate(self, optimizers: Any) -> None:
        super()._update_learning_rate(optimizers)
        if self.num_timesteps < self.actor_warmup_steps:
            for group in self.actor.optimizer.param_groups:
                group["lr"] = 0.0

    def _store_transition(self, replay_buffer: Any, buffer_action: np.ndarray, new_obs: Any, reward: np.ndarray,
                          dones: np.ndarray, infos: list[dict[str, Any]]) -> None:
        if self.self_imitation > 0:
            obs = self._last_original_obs if self._vec_normalize_env is not None else self._last_obs
            if len(self._episode_steps) != len(dones):
                self._episode_steps = [[] for _ in dones]
            for i, done in enumerate(dones):
                row = {k: np.array(v[i]) for k, v in obs.items()} if isinstance(obs, dict) else np.array(obs[i])
                action = np.array(buffer_action[i], np.float32)
                if infos[i].get(INTERVENTION_KEY):  # a person's takeover: what was executed, as the buffer stores it
                    action = executed_buffer_action(infos[i], self.action_space,
                                                    getattr(self.replay_buffer, "residual_scale", None))
                self._episode_steps[i].append((row, action))
                if done:
                    if episode_succeeded(infos[i]):
                        self.successes.add_episode(self._episode_steps[i])
                        self.logger.record("train/success_episodes", self.successes.episodes)
                    self._episode_steps[i] = []
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)

    def imitate(self, observations: Any, actions: np.ndarray) -> int:
        """Add known-good steps (raw observations, buffer actions in [-1, 1]; e.g. demonstrations) to the
        steps self-imitation regresses onto; returns how many (0 when ``self_imitation`` is off)."""
        if self.self_imitation <= 0:
            return 0
        n = len(actions)
        rows = ([{k: np.array(v[i]) for k, v in observations.items()} for i in range(n)]
                if isinstance(observations, dict) else [np.array(observations[i]) for i in range(n)])
        self.successes.add_episode(list(zip(rows, np.asarray(actions, np.float32), strict=True)))
        return n

    def _aux_actor_loss(self) -> Any:
        """Self-imitation and residual-penalty terms of the actor loss (None when neither applies yet)."""
        if self.num_timesteps < self.actor_warmup_steps:
            return None
        terms = []
        batch = self.batch_size
        if self.self_imitation > 0 and len(self.successes) >= batch:
            obs, actions = self.successes.sample(batch)
            if self._vec_normalize_env is not None:
                obs = self._vec_normalize_env.normalize_obs(obs)
            obs_t, _ = self.policy.obs_to_tensor(obs)
            target = th.as_tensor(actions, device=self.device)
            mean = self.actor(obs_t, deterministic=True)
            with th.no_grad():
                q_scale = th.cat(self.critic(obs_t, target), dim=1).abs().mean().clamp(min=1e-3)
            mse = ((mean - target) ** 2).sum(dim=1).mean()
            terms.append(self.self_imitation * q_scale * mse)
            self.logger.record("train/self_imitation_mse", float(mse.detach()))
        if self.residual_penalty > 0 and self.replay_buffer is not None and self.replay_buffer.size() > 0:
            data = self.replay_buffer.sample(batch, env=self._vec_normalize_env)
            mean = self.actor(data.observations, deterministic=True)
            with th.no_grad():
                q_scale = th.cat(self.critic(data.observations, data.actions), dim=1).abs().mean().clamp(min=1e-3)
            terms.append(self.residual_penalty * q_scale * (mean ** 2).sum(dim=1).mean())
        return sum(terms) if terms else None


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
