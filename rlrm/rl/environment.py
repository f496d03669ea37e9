"""Building a run's env from its config: the sim or robot env, its reward, the residual action.

* :func:`make_env` - the bare env: ``gym.make(env.id, **env.kwargs)`` with the episode limit,
  or ``robots.make_robot_env(robot.name, ...)`` when ``robot`` is set.
* :func:`task_text` - the instruction of the run (``task=`` override, else the env config's).
* :func:`reward_camera` - which image the reward model sees.
* :func:`resolve_env_defaults` - fill ``reward.model: auto`` and ``algo.base_policy.kind: env`` from the env
  config's ``reward_model`` and ``base_policy`` (each task names the reward model and base it was made for).
* :func:`wrap_with_reward` - the Robometer reward (synchronous or asynchronous) or the env's
  own reward, then the policy's action wrapper (:func:`with_policy_action`).
* :func:`with_policy_action` - :class:`~rlrm.rl.residual.ResidualAction` for ``algo=residual_sac``; the
  same wrapper goes on training, learning-curve and evaluation envs, so the policy always sees its inputs.
* :func:`vectorize` - the SB3 vector env the algorithm trains on: ``Monitor`` + ``DummyVecEnv``,
  with observation normalisation (``VecNormalize``, observations only) when ``algo.normalize_obs``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from rlrm.config import RewardConfig
from rlrm.shaping import Shaping, SuccessDetector
from rlrm.types import Scorer

__all__ = ["make_env", "task_text", "reward_camera", "resolve_env_defaults", "wrap_with_reward", "with_policy_action",
           "find_wrapper", "vectorize"]

#: ``reward.model`` value that means "the env config's ``reward_model``, else ``demo``".
AUTO_REWARD_MODEL = "auto"
#: ``algo.base_policy.kind`` value that means "the env config's ``base_policy``".
ENV_BASE_POLICY = "env"

log = logging.getLogger(__name__)


def make_env(cfg: Mapping[str, Any]) -> gym.Env:
    """The bare env of a run config (plain dict): a registered sim env, or a robot when ``robot`` is set."""
    reward_env_kwargs = dict((cfg.get("reward") or {}).get("env_kwargs") or {})
    robot = cfg.get("robot")
    if robot:
        import robots

        overrides = dict(reward_env_kwargs)
        if cfg.get("task"):
            overrides["task"] = cfg["task"]
        return robots.make_robot_env(robot["name"], sim=bool(cfg.get("robot_sim")), config=robot, **overrides)
    import envs  # noqa: F401  (registers rlrm/* ids)

    env_cfg = cfg["env"]
    kwargs = {**dict(env_cfg.get("kwargs") or {}), **reward_env_kwargs}
    if cfg.get("task"):
        kwargs["task_text"] = cfg["task"]  # one source: the override reaches the env, the reward reads the env
    return gym.make(env_cfg["id"], max_episode_steps=int(env_cfg["max_episode_steps"]), **kwargs)


def task_text(cfg: Mapping[str, Any]) -> str | None:
    """The run's ``task=`` override, or None: then the env's own task (``env.unwrapped.task``) is used.

    One source per setting: an override is passed to the env too (sim envs' ``task_text``, robots'
    ``task``), so the env's ``info["task"]`` and the reward model's instruction always agree.
    """
    return cfg.get("task") or None


def reward_camera(cfg: Mapping[str, Any]) -> str | list[str] | None:
    """What the reward model sees: the ``reward_camera`` override, else the env config's ``reward_camera``
    (None = ``env.render()``; render cameras / observation keys, a list is tiled), for robots the first
    camera of the robot config. (``env.kwargs.camera`` is something else: the env's own render camera.)"""
    if cfg.get("reward_camera"):
        return cfg["reward_camera"]
    robot = cfg.get("robot")
    if robot:
        cameras = ((robot.get("sim") or {}).get("cameras") if cfg.get("robot_sim") else None) or robot.get("cameras")
        if not cameras:
            raise ValueError(f"robot {robot.get('name')!r} has no cameras configured; the reward model needs frames")
        return next(iter(cameras))
    return (cfg.get("env") or {}).get("reward_camera")


def resolve_env_defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """Fill the settings that follow the task (in place; returns ``cfg``).

    * ``reward.model: auto`` becomes the env config's ``reward_model`` (e.g. ``demo_mw`` for the MetaWorld
      tasks), else ``demo``: the model trained for what that env renders.
    * ``algo.base_policy.kind: env`` becomes the env config's ``base_policy`` (e.g. the behaviour-cloned
      base shipped for a MetaWorld task); an env without one gets an error that says what to set.
    """
    env_cfg = cfg.get("env") or {}
    reward = cfg.get("reward") or {}
    if reward.get("kind") == "robometer" and reward.get("model") == AUTO_REWARD_MODEL:
        reward["model"] = env_cfg.get("reward_model") or "demo"
    algo = cfg.get("algo") or {}
    base = algo.get("base_policy")
    if algo.get("name") == "residual_sac" and isinstance(base, Mapping) and base.get("kind") == ENV_BASE_POLICY:
        if cfg.get("robot") or not env_cfg.get("base_policy"):
            where = f"robot {cfg['robot'].get('name')!r}" if cfg.get("robot") else f"env {env_cfg.get('id')!r}"
            raise ValueError(
                f"algo.base_policy.kind=env, but the {where} config names no base_policy; choose one, e.g. "
                "algo.base_policy.kind=sb3 +algo.base_policy.path=model.zip (kinds: goal_reaching, scripted, sb3, "
                "bc, lerobot)"
            )
        algo["base_policy"] = dict(env_cfg["base_policy"])
    return cfg


def with_policy_action(env: gym.Env, cfg: Mapping[str, Any]) -> gym.Env:
    """Put the policy's action wrapper on ``env``: :class:`~rlrm.rl.residual.ResidualAction` for
    ``algo=residual_sac`` (the frozen base plus the learned residual), else ``env`` unchanged."""
    algo = cfg["algo"]
    if algo["name"] != "residual_sac":
        return env
    from rlrm.rl.residual import ResidualAction, make_base_policy

    base = make_base_policy(dict(algo["base_policy"]), env.action_space)
    return ResidualAction(env, base, scale=float(algo["residual_scale"]))


def wrap_with_reward(env: gym.Env, cfg: Mapping[str, Any], scorer: Scorer | None, *, asynchronous: bool | None = None,
                     ) -> gym.Env:
    """Put the run's reward (and, for residual algorithms, the residual action) on ``env``.

    Args:
        env: from :func:`make_env`.
        cfg: the resolved run config (plain dict).
        scorer: from :func:`rlrm.rl.reward_source.open_reward_source`; unused for ``reward.kind=env``.
        asynchronous: override ``reward.mode`` (evaluation always scores synchronously); ``reward.mode=auto`` is
            ``async`` for rewards scored at episode end (``reward.when``) with an off-policy algorithm, else ``sync``.
    """
    reward = cfg["reward"]
    if reward["kind"] == "robometer":
        from rlrm.rl.algorithms import ALGORITHMS
        from rlrm.wrappers.episode import resolve_when

        when = resolve_when(reward.get("when", RewardConfig.when), scorer)
        mode = reward.get("mode", RewardConfig.mode)
        if mode == "auto":  # episode-end scores arrive late: relabel them in the replay buffer, never wait for them
            off_policy = ALGORITHMS.get(cfg["algo"].get("name"), (None, False))[1]
            mode = "async" if when == "episode_end" and off_policy else "sync"
        mode_async = (mode == "async") if asynchronous is None else asynchronous
        common = dict(
            task=task_text(cfg), camera=reward_camera(cfg), max_frames=int(reward["max_frames"]),
            sampling=reward["sampling"], every=int(reward["every"]), shaping=Shaping(**dict(reward["shaping"])),
            success=SuccessDetector(**dict(reward["success"])), on_timeout=reward.get("on_timeout", RewardConfig.on_timeout),
            terminate_on_success=bool(reward["terminate_on_success"]), views=reward.get("views", RewardConfig.views),
            when=when,
        )
        if mode_async:  # the same pipeline, completed when answers arrive (rewards relabelled in the buffer)
            from rlrm.wrappers.async_reward import AsyncRobometerReward

            env = AsyncRobometerReward(env, source=scorer, **common)
        else:
            from rlrm.wrappers.reward import RobometerReward

            env = RobometerReward(env, source=scorer, **common)
        if asynchronous is None:  # the training env (evaluation envs pass asynchronous=False): log once per run
            log.info("the reward model receives the task %r (%s)", env.task,
                     "from task=" if cfg.get("task") else "the env's own task; change it with task=...")
    return with_policy_action(env, cfg)


def find_wrapper(env: gym.Env, cls: type) -> gym.Env | None:
    """The outermost wrapper of type ``cls`` in ``env``'s wrapper chain, or None."""
    while env is not None:
        if isinstance(env, cls):
            return env
        env = getattr(env, "env", None)
    return None


VECNORMALIZE_FILE = "vecnormalize.pkl"


def vectorize(env: gym.Env, normalize_obs: bool, load_from: Any = None) -> Any:
    """The SB3 vector env for ``env``: ``DummyVecEnv([Monitor(env)])``, wrapped in ``VecNormalize``
    (observations only, rewards untouched) when ``normalize_obs``.

    ``load_from``: a checkpoint's ``vecnormalize.pkl`` whose running statistics a resumed run continues.
    Fetch-style goal observations differ in scale by 10x between keys; normalising them is what lets
    SAC learn FetchReach in a few thousand steps instead of tens of thousands.
    """
    from pathlib import Path

    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = DummyVecEnv([lambda: Monitor(env)])
    if not normalize_obs:
        return venv
    # images stay uint8 for SB3's CNN policies: only state entries are normalised. SB3 would put its
    # channel-first transpose *above* VecNormalize and then store untransposed original observations,
    # so the transpose goes below it here.
    from gymnasium import spaces
    from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
    from stable_baselines3.common.vec_env import VecTransposeImage

    space = venv.observation_space
    subspaces = space.spaces.values() if isinstance(space, spaces.Dict) else [space]
    if any(is_image_space(sub) and not is_image_space_channels_first(sub) for sub in subspaces):
        venv = VecTransposeImage(venv)
        space = venv.observation_space
    if load_from is not None and Path(load_from).exists():
        log.info("observation statistics from %s", load_from)
        return VecNormalize.load(str(load_from), venv)
    keys = [k for k, sub in space.spaces.items() if not is_image_space(sub)] if isinstance(space, spaces.Dict) else None
    if keys == [] or (keys is None and is_image_space(space)):
        return venv  # nothing but images: nothing to normalise
    return VecNormalize(venv, norm_obs=True, norm_reward=False, clip_obs=10.0, norm_obs_keys=keys)
