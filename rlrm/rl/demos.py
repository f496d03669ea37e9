"""Demonstrations as offline data for SAC and residual SAC (RLPD): a LeRobot dataset into the takeover buffer.

* :func:`resolve_demos` - ``demos=DIR_OR_REPO`` -> a local LeRobot dataset folder (a hub repo id only from the
  local Hugging Face cache; never downloads).
* :func:`reward_name` - what a run's ``next.reward`` holds (``env:dense``, ``env``, ``robometer``); recordings
  store it per episode as ``rlrm/reward``.
* :class:`DemoTransitions` - demonstration transitions in the replay buffer's units (observations,
  next observations, actions in [-1, 1], rewards, dones).
* :func:`demo_transitions` - read a dataset and map it onto a run's observation and action spaces.
* :func:`add_demos` - put them in the replay buffer's takeover part, which then makes half of each batch.
* :func:`load_demos` - both, for a run config (what :func:`rlrm.run.train_single` calls).

The buffer is :class:`rlrm.rl.interventions.InterventionReplayBuffer` (every SAC / residual SAC run has it):
its second buffer holds human takeovers and demonstrations alike, and once it holds data each batch is
drawn ``intervention_ratio`` (0.5) from it, as RLPD and HIL-SERL do. Nothing else changes in SAC.

How a dataset frame becomes a transition (LeRobot's convention: ``observation.*`` before the step,
``action`` executed at it, ``next.*`` what it returned):

* observation: the env's Box observation from ``observation.state``; a Dict observation key by key,
  named as :class:`~rlrm.bridges.lerobot_dataset.RecordEpisodes` records them (:func:`feature_for_key`).
  Shapes must match the env's; a mismatch or a missing feature names what was expected.
* next observation: the next frame's. A LeRobot dataset does not store the observation after an episode's
  last step, so each episode's last frame gives no transition (a dataset of N-step episodes gives N-1
  per episode). Transitions are never terminal (``done=0``): a dataset does not say whether an episode
  ended by termination or by a time limit, and bootstrapping is right for the second.
* action: ``action`` in env units, scaled to [-1, 1] as SB3 stores actions. For ``algo=residual_sac`` it
  becomes the residual that reproduces it: ``base = clip(base_policy.act(obs))`` (the run's frozen base on
  the demonstration's observation, reset per episode), ``residual = clip((action - base) / residual_scale,
  -1, 1)``, and the observation gains ``base_action``, as :class:`~rlrm.rl.residual.ResidualAction` and
  the takeover path (:func:`~rlrm.rl.interventions.executed_buffer_action`) store them.
* reward: ``reward.kind=env`` takes the dataset's ``next.reward`` (the env's dense reward needs the simulator
  state and cannot be recomputed offline); episodes recorded with another reward (``rlrm/reward``) are
  refused. ``reward.kind=robometer`` scores every demonstration episode once at load with the run's reward
  model, cameras, frame sampling and shaping (the recorded ``next.reward`` came from whatever model and
  shaping recorded it), through the same :class:`~rlrm.wrappers.pipeline.RewardPipeline` the env uses.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

__all__ = ["resolve_demos", "reward_name", "feature_for_key", "DemoTransitions", "demo_transitions", "add_demos",
           "load_demos", "DemoDatasetError", "DEMO_ALGORITHMS"]

log = logging.getLogger(__name__)

DEMO_ALGORITHMS = ("sac", "residual_sac")
"""The ``algo`` names ``demos=`` works with (those with a takeover buffer)."""


class DemoDatasetError(ValueError):
    """A ``demos=`` dataset that cannot feed this run (not found, or features that do not fit its spaces)."""


def reward_name(reward: Mapping[str, Any]) -> str:
    """What a run's reward is, as recordings store it (``rlrm/reward``): ``env:<reward_type>``, ``env``, ``robometer``.

    >>> reward_name({"kind": "env", "env_kwargs": {"reward_type": "dense"}}), reward_name({"kind": "robometer"})
    ('env:dense', 'robometer')
    """
    kind = str(reward.get("kind", "robometer"))
    reward_type = (reward.get("env_kwargs") or {}).get("reward_type")
    return f"{kind}:{reward_type}" if kind == "env" and reward_type else kind


def _lerobot_home() -> Path:
    """LeRobot's dataset cache (``$HF_LEROBOT_HOME``, else ``$HF_HOME/lerobot``, else ``~/.cache/huggingface/lerobot``)."""
    if os.environ.get("HF_LEROBOT_HOME"):
        return Path(os.environ["HF_LEROBOT_HOME"]).expanduser()
    hf_home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser()
    return hf_home / "lerobot"


def resolve_demos(source: str | os.PathLike) -> Path:
    """The local LeRobot dataset folder for ``demos=``: a folder with ``meta/info.json``, or a hub repo id
    (``user/name``) already in LeRobot's or the Hugging Face hub's local cache. Never downloads.

    Raises :class:`DemoDatasetError` saying how to fetch a repo that is not cached.
    """
    path = Path(source).expanduser()
    if (path / "meta" / "info.json").exists():
        return path
    if path.exists():
        raise DemoDatasetError(f"demos={str(source)!r} is a folder without meta/info.json; expected a LeRobot v3 "
                               "dataset (record one with experiments/record_metaworld_demos.py, record.dataset=DIR "
                               "or LeRobot's lerobot-record)")
    repo = str(source)
    if repo.count("/") != 1 or repo.startswith((".", "/", "~")):
        raise DemoDatasetError(f"demos={repo!r} is neither a LeRobot dataset folder (no such folder) nor a hub repo "
                               "id of the form user/name")
    lerobot_copy = _lerobot_home() / repo
    if (lerobot_copy / "meta" / "info.json").exists():
        return lerobot_copy
    try:
        from huggingface_hub import snapshot_download

        cached = Path(snapshot_download(repo, repo_type="dataset", local_files_only=True))
    except Exception as e:  # noqa: BLE001 - any miss means "not cached"; reported with how to fetch it
        cached, reason = None, f"{type(e).__name__}"
    else:
        reason = "no meta/info.json in the cached snapshot"
    if cached is not None and (cached / "meta" / "info.json").exists():
        return cached
    raise DemoDatasetError(
        f"demos={repo!r}: not a local folder and not in the local cache ({lerobot_copy} or the Hugging Face hub "
        f"cache: {reason}); runs never download. Fetch it first, on a machine with network: "
        f"`hf download --repo-type dataset {repo}` (or LeRobot's `LeRobotDataset({repo!r})`), "
        "or pass the dataset's folder")


def feature_for_key(key: str, space: spaces.Space) -> str:
    """The dataset feature that holds Dict observation key ``key`` (RecordEpisodes' naming).

    >>> feature_for_key("state", spaces.Box(-1, 1, (3,))), feature_for_key("wrist", spaces.Box(0, 255, (8, 8, 3)))
    ('observation.state', 'observation.images.wrist')
    """
    from stable_baselines3.common.preprocessing import is_image_space

    from rlrm.bridges.lerobot_dataset import STATE_KEYS

    name = key.replace("/", ".")
    if is_image_space(space, check_channels=False):
        return f"observation.images.{name}"
    return "observation.state" if key in STATE_KEYS else f"observation.{name}"


@dataclass
class DemoTransitions:
    """Demonstration transitions as the replay buffer stores them (N transitions).

    ``observations`` / ``next_observations``: (N, *obs_shape) arrays, or dicts of them for Dict spaces, raw
    (the buffer's observation normalisation applies when sampling); ``actions``: (N, action_dim) in [-1, 1];
    ``rewards``, ``dones``: (N,) float32; ``episodes``: demonstration episodes they came from.
    """

    observations: Any
    next_observations: Any
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    episodes: int

    def __len__(self) -> int:
        return len(self.actions)


def _check_shape(name: str, values: np.ndarray, expected: tuple[int, ...], what: str) -> None:
    if tuple(values.shape[1:]) != tuple(expected):
        raise DemoDatasetError(f"demos: feature {name!r} has shape {tuple(values.shape[1:])} per frame, expected "
                               f"{tuple(expected)} ({what})")


def _feature_array(features: Mapping[str, np.ndarray], name: str, space: spaces.Box, what: str,
                   available: list[str]) -> np.ndarray:
    """One observation feature of an episode, (T, *space.shape) in the space's dtype, or a named error."""
    if name not in features:
        raise DemoDatasetError(f"demos: {what} {space} needs dataset feature {name!r}; the dataset has {available}")
    values = np.asarray(features[name])
    if values.ndim == 1:
        values = values[:, None]
    _check_shape(name, values, space.shape, f"{what} {space}")
    return values.astype(space.dtype)


def _observation_arrays(features: Mapping[str, np.ndarray], space: spaces.Space, available: list[str]) -> Any:
    """The env observations (T, ...) of one episode: an array for a Box space, a dict of them for a Dict space."""
    if isinstance(space, spaces.Dict):
        return {key: _feature_array(features, feature_for_key(key, sub), sub, f"the env's observation {key!r}",
                                    available) for key, sub in space.spaces.items()}
    if not isinstance(space, spaces.Box):
        raise DemoDatasetError(f"demos need a Box or Dict observation space, got {space}")
    return _feature_array(features, "observation.state", space, "the env's observation", available)


def _to_buffer_layout(obs: Any, env_space: spaces.Space, buffer_space: spaces.Space) -> Any:
    """Observations as the buffer holds them: images channel-first where the vector env transposed them."""
    if isinstance(env_space, spaces.Dict):
        return {k: _to_buffer_layout(obs[k], env_space[k], buffer_space[k]) for k in env_space.spaces}
    if obs.ndim == 4 and tuple(buffer_space.shape) != tuple(env_space.shape) \
            and tuple(buffer_space.shape) == (env_space.shape[2], env_space.shape[0], env_space.shape[1]):
        return np.ascontiguousarray(obs.transpose(0, 3, 1, 2))
    return obs


def _slice(obs: Any, index: Any) -> Any:
    return {k: _slice(v, index) for k, v in obs.items()} if isinstance(obs, dict) else obs[index]


def _concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], dict):
        return {k: _concat([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)


def _episode_rewards(episode: dict[str, Any], reward: Mapping[str, Any], scorer: Any, cfg: Mapping[str, Any],
                     dataset: Path, available: list[str]) -> np.ndarray:
    """Rewards of an episode's T-1 transitions, as the run's reward would pay them (see the module docstring)."""
    features, n = episode["features"], episode["length"]
    if reward["kind"] == "env":
        if "next.reward" not in features:
            raise DemoDatasetError(
                f"demos={dataset}: reward.kind=env needs the dataset's next.reward (the env's reward cannot be "
                f"recomputed offline: it needs the simulator state); it has {available}. Record the demonstrations "
                "with the env's reward (reward=env_dense) or train with reward=robometer, which scores them with the "
                "reward model")
        return np.asarray(features["next.reward"], np.float32).reshape(-1)[: n - 1]
    return _scored_rewards(episode, reward, scorer, cfg, dataset, available)[: n - 1]


def _scored_rewards(episode: dict[str, Any], reward: Mapping[str, Any], scorer: Any, cfg: Mapping[str, Any],
                    dataset: Path, available: list[str]) -> np.ndarray:
    """Score one episode's frames with the run's reward model and shaping: the reward of each step (T-1,)."""
    from rlrm.rl.environment import reward_camera, task_text
    from rlrm.shaping import Shaping, SuccessDetector
    from rlrm.wrappers.pipeline import RewardPipeline

    if scorer is None:
        raise ValueError("reward.kind=robometer demos need the run's scorer to score them")
    if float(reward["shaping"].get("w_env", 0.0)) != 0.0:
        raise DemoDatasetError("demos with reward.shaping.w_env != 0: the env's reward cannot be recomputed offline "
                               "for demonstration episodes; set reward.shaping.w_env=0 or reward=env_dense")
    features = episode["features"]
    cameras = reward_camera(cfg)
    names = [cameras] if isinstance(cameras, str) else list(cameras or ["render"])
    image_features = _reward_image_features(cfg)
    missing = [f for f in image_features if f not in features]
    if missing:
        have = [f for f in available if f.startswith("observation.images.")]
        raise DemoDatasetError(f"demos={dataset}: the reward model sees cameras {names} (reward_camera), so the dataset "
                               f"needs {image_features}; it has image features {have}. Record the demonstrations "
                               "with the run's reward cameras, or set reward_camera= to cameras the dataset has")
    task = task_text(cfg) or episode["task"]
    pipe = RewardPipeline(1, task, scorer, camera=names if len(names) > 1 else names[0],
                          max_frames=int(reward["max_frames"]), sampling=reward["sampling"], every=int(reward["every"]),
                          shaping=Shaping(**dict(reward["shaping"])), success=SuccessDetector(**dict(reward["success"])),
                          views=reward["views"], when=reward.get("when", "auto"), on_timeout="raise", name="demo")
    try:
        frames = [pipe.frames.tile([features[f][t] for f in image_features], f"demo frame {t}")
                  for t in range(episode["length"])]
        pipe.start(0, frames[0])
        rewards = []
        for t in range(1, len(frames)):
            done = t == len(frames) - 1
            r, _, _ = pipe.finish([frames[t]], [0.0], [done], [False])
            rewards.append(float(r[0]))
    finally:
        pipe.close()
    return np.asarray(rewards, np.float32)


def _needed_columns(features: Mapping[str, Any], space: spaces.Space, reward: Mapping[str, Any],
                    cfg: Mapping[str, Any] | None) -> list[str]:
    """The dataset columns a run reads (images only for the spaces and the reward cameras that need them)."""
    names = {"action", "next.reward"}
    if isinstance(space, spaces.Dict):
        names |= {feature_for_key(k, sub) for k, sub in space.spaces.items()}
    else:
        names.add("observation.state")
    if reward.get("kind") != "env":
        names |= set(_reward_image_features(cfg or {}))
    return sorted(n for n in names if n in features)  # a missing one is named by the check that needs it


def _reward_image_features(cfg: Mapping[str, Any]) -> list[str]:
    """The image features holding the run's reward cameras (``reward_camera``; ``render`` when unset)."""
    from rlrm.rl.environment import reward_camera

    cameras = reward_camera(cfg) if cfg else None
    names = [cameras] if isinstance(cameras, str) else list(cameras or ["render"])
    return [f"observation.images.{n.replace('/', '.')}" for n in names]


def demo_transitions(dataset: str | os.PathLike, observation_space: spaces.Space, action_space: spaces.Box, *,
                     reward: Mapping[str, Any], cfg: Mapping[str, Any] | None = None, scorer: Any = None,
                     residual: Any = None, buffer_observation_space: spaces.Space | None = None,
                     max_episodes: int | None = None) -> DemoTransitions:
    """Read a LeRobot dataset and map it onto a run's spaces (the rules are in the module docstring).

    Args:
        dataset: a LeRobot v3 dataset folder (:func:`resolve_demos`).
        observation_space: the env's observation space (for residual runs, the one *under* the residual wrapper).
        action_space: the env's Box action space (env units; ``action`` is scaled from it).
        reward: the run's ``reward`` config; ``cfg``: the whole run config (reward cameras, task) and ``scorer``
            (the run's reward source) for ``reward.kind=robometer``.
        residual: for ``algo=residual_sac``, the run's :class:`~rlrm.rl.residual.ResidualAction` wrapper.
        buffer_observation_space: the replay buffer's space (images channel-first after SB3's transpose).
        max_episodes: read only the first this many episodes.
    """
    from rlrm.bridges.lerobot_dataset import read_lerobot_episodes
    from rlrm.rl.interventions import executed_buffer_action

    dataset = Path(dataset)
    info = json.loads((dataset / "meta" / "info.json").read_text())
    available = sorted(info["features"])
    episodes = read_lerobot_episodes(dataset, episodes=None if max_episodes is None else list(range(int(max_episodes))),
                                     columns=_needed_columns(info["features"], observation_space, reward, cfg))
    if not episodes:
        raise DemoDatasetError(f"demos={dataset} holds no episodes")
    if not isinstance(action_space, spaces.Box):
        raise DemoDatasetError(f"demos need a Box action space, got {action_space}")
    run_reward = reward_name(reward)
    parts_obs, parts_next, parts_act, parts_rew = [], [], [], []
    used = 0
    for episode in episodes:
        features, n = episode["features"], episode["length"]
        recorded = (episode.get("meta") or {}).get("rlrm/reward")
        if reward["kind"] == "env" and recorded is not None and recorded != run_reward:
            raise DemoDatasetError(
                f"demos={dataset}: episode {episode['episode_index']} recorded next.reward as {recorded!r}, this run's "
                f"reward is {run_reward!r}; the env's reward cannot be recomputed offline. Record demonstrations "
                f"with the run's reward, or use reward=robometer (scores them with the reward model)")
        if n < 2:
            continue
        if "action" not in features:
            raise DemoDatasetError(f"demos: the dataset has no 'action' feature (the executed action, "
                                   f"{action_space.shape}); it has {available}")
        actions = np.asarray(features["action"], np.float32)
        actions = actions[:, None] if actions.ndim == 1 else actions
        _check_shape("action", actions, action_space.shape, f"the env's action space {action_space}")
        obs = _observation_arrays(features, observation_space, available)
        if residual is not None:
            obs, infos = _with_base_actions(obs, actions, residual)
            buffer_actions = np.stack([executed_buffer_action(info, residual.action_space, residual.scale)
                                       for info in infos[: n - 1]])
        else:
            buffer_actions = np.stack([executed_buffer_action({"action": a}, action_space) for a in actions[: n - 1]])
        parts_obs.append(_slice(obs, slice(0, n - 1)))
        parts_next.append(_slice(obs, slice(1, n)))
        parts_act.append(buffer_actions.astype(np.float32))
        parts_rew.append(_episode_rewards(episode, reward, scorer, cfg or {}, dataset, available))
        used += 1
    if not parts_act:
        raise DemoDatasetError(f"demos={dataset}: every episode has fewer than 2 frames; no transition to learn from")
    env_space = residual.observation_space if residual is not None else observation_space
    observations, next_observations = _concat(parts_obs), _concat(parts_next)
    if buffer_observation_space is not None:
        observations = _to_buffer_layout(observations, env_space, buffer_observation_space)
        next_observations = _to_buffer_layout(next_observations, env_space, buffer_observation_space)
    actions = np.concatenate(parts_act)
    rewards = np.concatenate(parts_rew).astype(np.float32)
    return DemoTransitions(observations, next_observations, actions, rewards, np.zeros(len(actions), np.float32), used)


def _with_base_actions(obs: Any, actions: np.ndarray, residual: Any) -> tuple[dict[str, np.ndarray], list[dict]]:
    """The residual agent's observations (with ``base_action``) of one episode, and per frame the info that
    turns the executed action into a residual (``action``, ``base_action``), from the frozen base policy."""
    base_policy = residual.base_policy
    if hasattr(base_policy, "reset"):
        base_policy.reset()  # a new episode for a base that keeps state (action chunks)
    n = len(actions)
    agent_obs, infos = [], []
    for t in range(n):
        frame = _slice(obs, t)
        with_base = residual.with_base_action(frame)
        agent_obs.append(with_base)
        infos.append({"action": actions[t], "base_action": with_base["base_action"]})
    stacked = {k: np.stack([o[k] for o in agent_obs]) for k in agent_obs[0]}
    return stacked, infos


def add_demos(buffer: Any, demos: DemoTransitions) -> int:
    """Add ``demos`` to the takeover part of an :class:`~rlrm.rl.interventions.InterventionReplayBuffer`
    (half of each batch from then on); returns the transitions added."""
    offline = getattr(buffer, "interventions", None)
    if offline is None:
        raise ValueError(f"demos need the replay buffer with a takeover part (InterventionReplayBuffer, what "
                         f"SAC and residual SAC runs build), got {type(buffer).__name__}")
    capacity = offline.buffer_size
    if len(demos) > capacity:
        raise ValueError(f"{len(demos)} demonstration transitions do not fit the takeover buffer of {capacity}; "
                         "raise algo.buffer_size or pass fewer episodes")
    for i in range(len(demos)):
        row = slice(i, i + 1)
        offline.add(_slice(demos.observations, row), _slice(demos.next_observations, row), demos.actions[row],
                    demos.rewards[row], demos.dones[row], [{}])
    return len(demos)


def load_demos(model: Any, env: Any, cfg: Mapping[str, Any], scorer: Any = None) -> dict[str, Any] | None:
    """``demos=`` of a run config into ``model``'s replay buffer; returns ``{dataset, episodes, transitions}``
    (None when ``demos`` is unset). ``env`` is the run's (reward-wrapped) env."""
    source = cfg.get("demos")
    if not source:
        return None
    from rlrm.rl.environment import find_wrapper
    from rlrm.rl.residual import ResidualAction

    if cfg["algo"]["name"] not in DEMO_ALGORITHMS:
        raise DemoDatasetError(f"demos= feeds the replay buffer of {list(DEMO_ALGORITHMS)}; "
                               f"algo={cfg['algo']['name']!r} has none")
    dataset = resolve_demos(source)
    residual = find_wrapper(env, ResidualAction)
    inner = residual.env if residual is not None else env
    demos = demo_transitions(dataset, inner.observation_space, inner.action_space, reward=cfg["reward"], cfg=cfg,
                             scorer=scorer, residual=residual, buffer_observation_space=model.observation_space)
    added = add_demos(model.replay_buffer, demos)
    log.info("demos: %d transitions of %d episodes from %s in the offline half of each batch (mean reward %.3f)",
             added, demos.episodes, dataset, float(np.mean(demos.rewards)))
    # residual SAC with self-imitation also regresses onto the demonstrations' (residual) actions
    imitated = model.imitate(demos.observations, demos.actions) if hasattr(model, "imitate") else 0
    if imitated:
        log.info("demos: %d transitions also in residual SAC's self-imitation set", imitated)
    return {"dataset": str(dataset), "episodes": demos.episodes, "transitions": added, "imitated": imitated}
