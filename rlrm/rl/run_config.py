"""Checking a ``run_rl.py`` config before anything starts (no env, worker or model is built).

* :func:`validate_run_config` - every problem of a config at once, each naming the bad value
  and the allowed ones; raises :class:`RunConfigError`. On a valid config it rounds an on-policy
  budget up to whole rollouts (:func:`round_budget_to_rollouts`) and logs the task text the reward
  model will receive.
* :func:`round_budget_to_rollouts` - ``total_steps`` as whole PPO rollouts, with a warning when it changes.
* :class:`RunConfigError` - the error it raises (a ``ValueError``).
* :func:`resumed_config` - the config of a run being resumed, with value overrides applied.
* :data:`REWARD_KINDS`, :data:`REWARD_MODES`, :data:`TRANSPORTS` - accepted values.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["RunConfigError", "validate_run_config", "round_budget_to_rollouts", "resumed_config", "RESOLVED_CONFIG",
           "REWARD_KINDS", "REWARD_MODES", "TRANSPORTS"]

log = logging.getLogger(__name__)

REWARD_KINDS = ("robometer", "env")
REWARD_MODES = ("sync", "async")
TRANSPORTS = ("worker", "local", "ray")
_SOURCE_SCHEMES = ("tcp://", "ipc://")
_GROUPS = ("env", "algo", "reward", "transport", "robot")
RESOLVED_CONFIG = "config.yaml"
"""File name of the resolved run config ``run_rl.py`` writes into every run folder."""
# true/false switches: Hydra reads `robot_sim=yes` as the string 'yes', which bool() would take as True
_BOOLEAN_FIELDS = ("robot_sim", "progress_bar", "reward.terminate_on_success")


class RunConfigError(ValueError):
    """A ``run_rl.py`` config value is invalid; the message lists every problem found."""


def _known_env_ids() -> list[str]:
    import gymnasium as gym

    import envs  # noqa: F401  (registers the rlrm/* ids)

    return sorted(i for i in gym.registry if i.startswith("rlrm/"))


def _int_at_least(errors: list[str], name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        errors.append(f"{name} must be an integer >= {low}, got {value!r}")


def _check_booleans(errors: list[str], cfg: Mapping[str, Any]) -> None:
    for dotted in _BOOLEAN_FIELDS:
        group, _, key = dotted.rpartition(".")
        section = cfg.get(group) if group else cfg
        if not isinstance(section, Mapping) or key not in section:
            continue  # a group without this switch (reward=env_dense has no terminate_on_success)
        value = section[key]
        if not isinstance(value, bool):
            errors.append(f"{dotted} must be true or false, got {value!r} ({type(value).__name__}); "
                          f"pass {dotted}=true or {dotted}=false")


def _check_task(errors: list[str], cfg: Mapping[str, Any]) -> None:
    task = cfg.get("task")
    if task is not None and (not isinstance(task, str) or not task.strip()):
        errors.append(f"task must be a non-empty instruction, got {task!r}; pass task=\"put the cube in the bowl\" "
                      "or leave it out (task=null) to use the env's own task")


def validate_run_config(cfg: Mapping[str, Any]) -> None:
    """Raise :class:`RunConfigError` listing every invalid value in ``cfg`` (a resolved plain dict).

    Checks the env (a registered gym id unless ``robot`` is set), the algorithm, the reward
    (kind, mode, model or source, task text, shaping and success-detector fields), the
    transport, the true/false switches and the budgets (``total_steps``, ``eval_episodes``,
    ``checkpoint_every`` ...). A valid ``cfg`` is then settled in place: an on-policy
    ``total_steps`` is rounded up to whole rollouts (:func:`round_budget_to_rollouts`), so the
    config a run saves is the budget it runs; and the task text the reward model will receive is
    logged at INFO.
    """
    from rlrm.rl.algorithms import ALGORITHMS

    errors: list[str] = []
    _check_task(errors, cfg)
    _check_booleans(errors, cfg)
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
    _int_at_least(errors, "eval_every", cfg.get("eval_every", 0), 0)
    _int_at_least(errors, "curve_episodes", cfg.get("curve_episodes", 1), 1)
    _int_at_least(errors, "seed", cfg.get("seed"), 0)

    resume = cfg.get("resume")
    if resume and not os.path.isdir(os.path.join(str(resume), "checkpoints")):
        errors.append(f"resume={resume!r} is not a run folder with a checkpoints/ subfolder")

    if algo.get("name") in ALGORITHMS and not ALGORITHMS[algo["name"]][1] and "n_steps" in algo:
        _int_at_least(errors, "algo.n_steps", algo.get("n_steps"), 1)

    if errors:
        raise RunConfigError("invalid run_rl config:\n  - " + "\n  - ".join(errors))
    round_budget_to_rollouts(cfg)
    # the task text the reward model receives is logged when the reward is built (it is the env's own
    # task, or task=... which reaches the env as well): rlrm.rl.environment.wrap_with_reward


def round_budget_to_rollouts(cfg: Mapping[str, Any]) -> int:
    """The ``total_steps`` a run really trains: for an on-policy algorithm, whole rollouts of ``algo.n_steps``.

    SB3's PPO always finishes the rollout it started, so ``algo=ppo total_steps=300`` with
    ``n_steps=512`` trains 512 steps. The budget is rounded up here instead, with a warning, and
    written back into ``cfg`` (when it is a mutable dict) so the saved config and the summary agree
    with what ran. Off-policy algorithms stop at any step: their budget is returned unchanged.

    >>> cfg = {"algo": {"name": "ppo", "n_steps": 512}, "total_steps": 300}
    >>> round_budget_to_rollouts(cfg), cfg["total_steps"]
    (512, 512)
    """
    from rlrm.rl.algorithms import ALGORITHMS

    algo = cfg.get("algo") or {}
    total = int(cfg["total_steps"])
    if algo.get("name") not in ALGORITHMS or ALGORITHMS[algo["name"]][1]:
        return total
    n_steps = algo.get("n_steps")
    if n_steps is None:  # the algorithm's own default rollout length
        import inspect

        n_steps = inspect.signature(ALGORITHMS[algo["name"]][0]).parameters["n_steps"].default
    n_steps = int(n_steps)  # run_rl trains one env, so a rollout is n_steps env steps
    rounded = -(-total // n_steps) * n_steps
    if rounded != total:
        log.warning("algo=%s collects whole rollouts of algo.n_steps=%d env steps: total_steps=%d rounded up to %d "
                    "(%d x %d); pass a multiple of %d to choose another budget",
                    algo["name"], n_steps, total, rounded, rounded // n_steps, n_steps, n_steps)
        if isinstance(cfg, MutableMapping):
            cfg["total_steps"] = rounded
    return rounded


def _check_robometer_reward(errors: list[str], cfg: Mapping[str, Any], reward: Mapping[str, Any],
                            algo: Mapping[str, Any]) -> None:
    from rlrm.rl.algorithms import ALGORITHMS
    from rlrm.sampling import SAMPLING_MODES
    from rlrm.shaping import Shaping, SuccessDetector

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
    if reward.get("views", "tile") not in ("tile", "mean"):
        errors.append(f"reward.views must be 'tile' or 'mean', got {reward.get('views')!r}")
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
