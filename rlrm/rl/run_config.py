"""Checking a ``run_rl.py`` config before anything starts (no env, worker or model is built).

Types, defaults and unknown keys are the typed configs' job (:mod:`rlrm.config`); this module checks
what types cannot say.

* :func:`validate_run_config` - every problem of a config at once, each naming the bad value
  and the allowed ones; raises :class:`RunConfigError`. A valid config is settled in place: defaults
  filled in and types converted (:func:`rlrm.config.typed_run_config`), an on-policy budget rounded up
  to whole rollouts (:func:`round_budget_to_rollouts`).
* :func:`round_budget_to_rollouts` - ``total_steps`` as whole PPO rollouts, with a warning when it changes.
* :class:`RunConfigError` - the error it raises (a ``ValueError``).
* :func:`resumed_config` - the config of a run being resumed, with value overrides applied.
* :data:`CHOICES` - the accepted values of the string settings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["RunConfigError", "validate_run_config", "round_budget_to_rollouts", "resumed_config", "RESOLVED_CONFIG",
           "CHOICES"]

log = logging.getLogger(__name__)

CHOICES: dict[str, tuple[str, ...]] = {
    "reward.kind": ("robometer", "env"),
    "reward.mode": ("auto", "sync", "async"),
    "reward.when": ("auto", "prefix", "episode_end"),
    "reward.sampling": ("prefix", "window"),
    "reward.views": ("tile", "mean"),
    "reward.on_timeout": ("raise", "hold"),
    "reward.enc": ("raw", "jpeg"),
    "reward.trainer.mode": ("auto", "full", "heads", "lora"),
    "labels.source": ("none", "human", "oracle"),
    "labels.select": ("every_k", "uncertain"),
}
"""Accepted values of the string settings (dotted key -> values)."""
# integer settings and their lowest value (robometer-only ones are checked with the reward)
_AT_LEAST = {"total_steps": 1, "eval_episodes": 0, "eval_video_episodes": 0, "checkpoint_every": 0,
             "checkpoint_keep": 1, "eval_every": 0, "curve_episodes": 1, "seed": 0, "torch_threads": 1,
             "heartbeat_every": 1}
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


def _select(cfg: Mapping[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def validate_run_config(cfg: MutableMapping[str, Any]) -> None:
    """Raise :class:`RunConfigError` listing every invalid value in ``cfg`` (a resolved plain dict).

    First the types: an unknown key or a value of the wrong type is refused on its own
    (:func:`rlrm.config.typed_run_config`). Then what types cannot say: the env (a registered gym
    id unless ``robot`` is set), the algorithm and its SB3 arguments, the string choices
    (:data:`CHOICES`), lower bounds of budgets, the reward (async needs an off-policy algorithm,
    a model or a source, shaping and success-detector values) and the resume folder. A valid ``cfg``
    is then settled in place: defaults filled in, an on-policy ``total_steps`` rounded up to whole
    rollouts (:func:`round_budget_to_rollouts`), so the config a run saves is the budget it runs.
    """
    from rlrm.config import typed_run_config

    typed = typed_run_config(cfg)
    errors: list[str] = []
    task = typed["task"]
    if task is not None and not task.strip():
        errors.append(f"task must be a non-empty instruction, got {task!r}; pass task=\"put the cube in the bowl\" "
                      "or leave it out (task=null) to use the env's own task")
    robot = typed["robot"]
    if not robot:
        known = _known_env_ids()
        if typed["env"]["id"] not in known:
            errors.append(f"unknown env id {typed['env']['id']!r}; expected one of {known} (choose with env=<name>)")
        if typed["env"]["max_episode_steps"] < 1:
            errors.append(f"env.max_episode_steps must be an integer >= 1, got {typed['env']['max_episode_steps']}")
    elif not isinstance(robot, Mapping) or not robot.get("name"):
        errors.append(f"robot must be a robot config with a name (robot=franka|xarm|so101), got {robot!r}")
    algo = typed["algo"]
    _check_algo(errors, algo)
    for dotted, allowed in CHOICES.items():
        if dotted.startswith("reward.") and dotted != "reward.kind" and typed["reward"]["kind"] != "robometer":
            continue
        value = _select(typed, dotted)
        if value not in allowed:
            errors.append(f"unknown {dotted} {value!r}; expected one of {list(allowed)}")
    for key, low in _AT_LEAST.items():
        if typed[key] < low:
            errors.append(f"{key} must be an integer >= {low}, got {typed[key]}")
    if typed["reward"]["kind"] == "robometer":
        _check_robometer_reward(errors, typed["reward"], algo)
    _check_adaptation(errors, typed)
    if typed["demos"]:
        _check_demos(errors, typed["demos"], algo, typed["distributed"]["runners"])
    resume = typed["resume"]
    if resume and not os.path.isdir(os.path.join(str(resume), "checkpoints")):
        errors.append(f"resume={resume!r} is not a run folder with a checkpoints/ subfolder")
    if errors:
        raise RunConfigError("invalid run_rl config:\n  - " + "\n  - ".join(errors))
    cfg.update(typed)
    round_budget_to_rollouts(cfg)
    # the task text the reward model receives is logged when the reward is built (it is the env's own
    # task, or task=... which reaches the env as well): rlrm.rl.environment.wrap_with_reward


def _check_adaptation(errors: list[str], typed: Mapping[str, Any]) -> None:
    """``reward.adapt``: labels to learn from, a transport that can swap versions, sane trainer numbers."""
    reward, labels = typed["reward"], typed["labels"]
    if not reward["adapt"]:
        if labels["source"] != "none":
            log.warning("labels=%s has no effect without reward.adapt=true (nothing learns from the labels)",
                        labels["source"])
        return
    if reward["kind"] != "robometer":
        errors.append(f"reward.adapt=true fine-tunes the reward model; reward.kind={reward['kind']!r} has none "
                      "(use reward=robometer)")
    if labels["source"] == "none":
        errors.append("reward.adapt=true needs labels to learn from: labels=oracle (simulation: the env's own "
                      "success) or labels=human (the y/n keys and takeovers)")
    if reward["mode"] == "async" or reward.get("when") == "episode_end":
        errors.append(f"reward.adapt=true needs rewards scored as the episode runs (reward.mode=sync or auto, "
                      f"reward.when=prefix or auto), got reward.mode={reward['mode']!r} reward.when="
                      f"{reward.get('when')!r} (late rewards arrive after the episode record is made)")
    if str(reward.get("model") or "").startswith("roboreward:"):
        errors.append(f"reward.adapt=true fine-tunes Robometer models (progress/success heads); reward.model="
                      f"{reward['model']!r} is a RoboReward model")
    transport = (typed.get("transport") or {}).get("name")
    if not reward["source"] and transport not in ("worker", "local"):
        errors.append(f"reward.adapt=true swaps model versions in transport=worker or transport=local, got "
                      f"transport={transport!r} (Ray replicas do not swap versions yet)")
    if typed["distributed"]["runners"] != 0:
        errors.append("reward.adapt=true runs in single-process runs (distributed.runners=0) for now, got "
                      f"distributed.runners={typed['distributed']['runners']}")
    trainer = reward["trainer"]
    for key, low in (("steps", 1), ("min_labels", 1), ("batch_size", 1), ("pair_batch_size", 0), ("threads", 1),
                     ("rescore_episodes", 1)):
        if trainer[key] < low:
            errors.append(f"reward.trainer.{key} must be an integer >= {low}, got {trainer[key]}")
    if not trainer["lr"] > 0:
        errors.append(f"reward.trainer.lr must be > 0, got {trainer['lr']}")
    if not 0.0 <= trainer["replay_fraction"] < 1.0:
        errors.append(f"reward.trainer.replay_fraction must lie in [0, 1), got {trainer['replay_fraction']}")
    if trainer["replay"] and not os.path.exists(str(trainer["replay"])):
        errors.append(f"reward.trainer.replay={trainer['replay']!r} does not exist; expected a trajectory folder "
                      "of the model's original training data (rlrm train's data=)")
    if labels["source"] == "oracle" and labels["budget"] < 1:
        errors.append(f"labels.budget must be an integer >= 1 with labels=oracle, got {labels['budget']}")
    if labels["every"] < 1:
        errors.append(f"labels.every must be an integer >= 1, got {labels['every']}")
    if not 0.0 <= labels["noise"] < 1.0:
        errors.append(f"labels.noise must lie in [0, 1), got {labels['noise']}")


def _check_demos(errors: list[str], demos: str, algo: Mapping[str, Any], runners: int) -> None:
    """``demos=``: a single-process run of an algorithm with a replay buffer, and a dataset that is here
    (a folder or a cached hub repo)."""
    from rlrm.rl.demos import DEMO_ALGORITHMS, DemoDatasetError, resolve_demos

    if algo.get("name") not in DEMO_ALGORITHMS:
        errors.append(f"demos= feeds the replay buffer of {list(DEMO_ALGORITHMS)}; algo={algo.get('name')!r} has none")
    if runners:
        errors.append(f"demos= is loaded by single-process runs only (distributed.runners=0), got "
                      f"distributed.runners={runners}: the learner has no env to map the dataset onto")
    try:
        resolve_demos(demos)
    except DemoDatasetError as e:
        errors.append(str(e))


def _check_algo(errors: list[str], algo: Mapping[str, Any]) -> None:
    """The algorithm name, and that every other key is an argument of its SB3 class (or one of ours)."""
    import inspect

    from rlrm.rl.algorithms import _OWN_KEYS, ALGORITHMS

    name = algo.get("name")
    if name not in ALGORITHMS:
        errors.append(f"unknown algorithm {name!r}; expected one of {sorted(ALGORITHMS)} (algo=<name>)")
        return
    cls, off_policy = ALGORITHMS[name]
    accepted: set[str] = set()
    for klass in cls.__mro__:  # a subclass taking **kwargs (ResidualSAC) passes its parent's arguments on
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        accepted |= {n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    accepted -= {"self", "env", "policy", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model"}
    own = _OWN_KEYS if name == "residual_sac" else _OWN_KEYS - {"residual_scale", "base_policy"}
    unknown = sorted(set(algo) - accepted - own)
    if unknown:
        errors.append(f"unknown algo keys {unknown} for algo={name}: nothing reads them; expected rlrm's "
                      f"{sorted(own)} or arguments of {cls.__name__}: {sorted(accepted)}")
    if not off_policy and "n_steps" in algo and (not isinstance(algo["n_steps"], int) or algo["n_steps"] < 1):
        errors.append(f"algo.n_steps must be an integer >= 1, got {algo['n_steps']!r}")


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


def _check_robometer_reward(errors: list[str], reward: Mapping[str, Any], algo: Mapping[str, Any]) -> None:
    from rlrm.rl.algorithms import ALGORITHMS
    from rlrm.shaping import Shaping, SuccessDetector

    if reward["mode"] == "async" and algo.get("name") in ALGORITHMS and not ALGORITHMS[algo["name"]][1]:
        off = [n for n, (_, off_policy) in ALGORITHMS.items() if off_policy]
        errors.append(f"reward.mode=async needs an off-policy algorithm {off}, got algo={algo.get('name')!r}")
    source = reward["source"]
    if source and not str(source).startswith(_SOURCE_SCHEMES):
        errors.append(f"reward.source must be a worker URL starting with {list(_SOURCE_SCHEMES)}, got {source!r}")
    if not source and not reward["model"]:
        errors.append("reward.model must name a reward model ('demo', 'tiny', a checkpoint dir or hub id) "
                      "when reward.source is not set")
    low = 2 if reward["sampling"] == "prefix" else 1
    if reward["max_frames"] < low:
        errors.append(f"reward.max_frames must be an integer >= {low}, got {reward['max_frames']}")
    if reward["every"] < 1:
        errors.append(f"reward.every must be an integer >= 1, got {reward['every']}")
    for name, cls in (("shaping", Shaping), ("success", SuccessDetector)):
        try:
            made = cls(**reward[name])
            if name == "shaping" and reward["terminate_on_success"]:
                made.stay_value(1.0, env_reward=1.0)  # the success-termination payment is finite only with gamma < 1
        except ValueError as e:
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
