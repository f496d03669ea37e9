"""Checking a ``run_rl.py`` config before anything starts (no env, worker or model is built).

* :func:`validate_run_config` - every problem of a config at once, each naming the bad value
  and the allowed ones; raises :class:`RunConfigError`.
* :class:`RunConfigError` - the error it raises (a ``ValueError``).
* :func:`resumed_config` - the config of a run being resumed, with value overrides applied.
* :data:`REWARD_KINDS`, :data:`REWARD_MODES`, :data:`TRANSPORTS` - accepted values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["RunConfigError", "validate_run_config", "resumed_config", "RESOLVED_CONFIG", "REWARD_KINDS", "REWARD_MODES", "TRANSPORTS"]

REWARD_KINDS = ("robometer", "env")
REWARD_MODES = ("sync", "async")
TRANSPORTS = ("worker", "local", "ray")
_SOURCE_SCHEMES = ("tcp://", "ipc://")
_GROUPS = ("env", "algo", "reward", "transport", "robot")
RESOLVED_CONFIG = "config.yaml"
"""File name of the resolved run config ``run_rl.py`` writes into every run folder."""


class RunConfigError(ValueError):
    """A ``run_rl.py`` config value is invalid; the message lists every problem found."""


def _known_env_ids() -> list[str]:
    import gymnasium as gym

    import envs  # noqa: F401  (registers the rlrm/* ids)

    return sorted(i for i in gym.registry if i.startswith("rlrm/"))


def _int_at_least(errors: list[str], name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        errors.append(f"{name} must be an integer >= {low}, got {value!r}")


def validate_run_config(cfg: Mapping[str, Any]) -> None:
    """Raise :class:`RunConfigError` listing every invalid value in ``cfg`` (a resolved plain dict).

    Checks the env (a registered gym id unless ``robot`` is set), the algorithm, the reward
    (kind, mode, model or source, task text, shaping and success-detector fields), the
    transport and the budgets (``total_steps``, ``eval_episodes``, ``checkpoint_every`` ...).
    """
    from rlrm.rl.algorithms import ALGORITHMS

    errors: list[str] = []
    env = cfg.get("env") or {}
    robot = cfg.get("robot")
    if not robot:
        env_id = env.get("id")
        known = _known_env_ids()
        if env_id not in known:
            errors.append(f"unknown env id {env_id!r}; expected one of {known} (choose with env=<name>)")
        _int_at_least(errors, "env.max_episode_steps", env.get("max_episode_steps"), 1)
    elif not isinstance(robot, Mapping) or not robot.get("name"):
        errors.append(f"robot must be a robot config with a name (robot=franka|xarm|so101), got {robot!r}")

    algo = cfg.get("algo") or {}
    if algo.get("name") not in ALGORITHMS:
        errors.append(f"unknown algorithm {algo.get('name')!r}; expected one of {sorted(ALGORITHMS)} (algo=<name>)")

    reward = cfg.get("reward") or {}
    kind = reward.get("kind")
    if kind not in REWARD_KINDS:
        errors.append(f"unknown reward.kind {kind!r}; expected one of {list(REWARD_KINDS)}")
    if kind == "robometer":
        _check_robometer_reward(errors, cfg, reward, algo)

    transport = (cfg.get("transport") or {}).get("name")
    if transport not in TRANSPORTS:
        errors.append(f"unknown transport {transport!r}; expected one of {list(TRANSPORTS)} (transport=<name>)")

    _int_at_least(errors, "total_steps", cfg.get("total_steps"), 1)
    _int_at_least(errors, "eval_episodes", cfg.get("eval_episodes"), 0)
    _int_at_least(errors, "eval_video_episodes", cfg.get("eval_video_episodes", 0), 0)
    _int_at_least(errors, "checkpoint_every", cfg.get("checkpoint_every"), 0)
    _int_at_least(errors, "seed", cfg.get("seed"), 0)

    resume = cfg.get("resume")
    if resume and not os.path.isdir(os.path.join(str(resume), "checkpoints")):
        errors.append(f"resume={resume!r} is not a run folder with a checkpoints/ subfolder")

    if errors:
        raise RunConfigError("invalid run_rl config:\n  - " + "\n  - ".join(errors))


def _check_robometer_reward(errors: list[str], cfg: Mapping[str, Any], reward: Mapping[str, Any],
                            algo: Mapping[str, Any]) -> None:
    from rlrm.rl.algorithms import ALGORITHMS
    from rlrm.rl.environment import task_text
    from rlrm.sampling import SAMPLING_MODES
    from rlrm.shaping import Shaping, SuccessDetector

    task = task_text(cfg)
    if not isinstance(task, str) or not task.strip():
        errors.append(
            f"the Robometer reward needs the task text, got task={cfg.get('task')!r} and env.task="
            f"{(cfg.get('env') or {}).get('task')!r}; pass task=\"put the cube in the bowl\""
        )
    mode = reward.get("mode")
    if mode not in REWARD_MODES:
        errors.append(f"unknown reward.mode {mode!r}; expected one of {list(REWARD_MODES)}")
    elif mode == "async" and algo.get("name") in ALGORITHMS and not ALGORITHMS[algo["name"]][1]:
        off = [n for n, (_, off_policy) in ALGORITHMS.items() if off_policy]
        errors.append(f"reward.mode=async needs an off-policy algorithm {off}, got algo={algo.get('name')!r}")
    source = reward.get("source")
    if source and not str(source).startswith(_SOURCE_SCHEMES):
        errors.append(f"reward.source must be a worker URL starting with {list(_SOURCE_SCHEMES)}, got {source!r}")
    if not source and not reward.get("model"):
        errors.append("reward.model must name a reward model ('demo', 'tiny', a checkpoint dir or hub id) "
                      "when reward.source is not set")
    if reward.get("sampling") not in SAMPLING_MODES:
        errors.append(f"unknown reward.sampling {reward.get('sampling')!r}; expected one of {list(SAMPLING_MODES)}")
    _int_at_least(errors, "reward.max_frames", reward.get("max_frames"), 2 if reward.get("sampling") == "prefix" else 1)
    _int_at_least(errors, "reward.every", reward.get("every"), 1)
    if mode == "async" and reward.get("every") != 1:
        errors.append(f"reward.mode=async scores every step; reward.every must be 1, got {reward.get('every')!r}")
    for name, cls in (("shaping", Shaping), ("success", SuccessDetector)):
        try:
            cls(**dict(reward.get(name) or {}))
        except (TypeError, ValueError) as e:
            errors.append(f"reward.{name}: {e}")


def resumed_config(run_dir: str, overrides: list[str]) -> dict[str, Any]:
    """The resolved config saved in ``run_dir`` with command-line value ``overrides`` applied.

    ``overrides`` are Hydra-style ``key=value`` strings (``total_steps=6000``); ``resume=...``
    is kept, changing a config group (``algo=ppo``) is refused since the checkpoint would not fit.
    """
    import yaml
    from omegaconf import OmegaConf

    path = os.path.join(run_dir, RESOLVED_CONFIG)
    if not os.path.exists(path):
        raise RunConfigError(f"resume={run_dir!r} has no {RESOLVED_CONFIG}; is it a run_rl.py run folder?")
    conf = OmegaConf.load(path)
    for item in overrides:
        key, _, value = item.lstrip("+~").partition("=")
        if key == "resume" or key.startswith("hydra."):
            continue
        if key in _GROUPS:
            raise RunConfigError(
                f"cannot change config group {key!r} when resuming ({item!r}); the checkpoint was trained "
                f"with {key}={OmegaConf.select(conf, key + '.name', default='<saved>')!r}. Start a new run instead"
            )
        OmegaConf.update(conf, key, yaml.safe_load(value) if value else None, merge=True)
    plain = OmegaConf.to_container(conf, resolve=True)
    plain["resume"] = run_dir
    return plain
