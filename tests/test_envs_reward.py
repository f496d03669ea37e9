"""rlrm envs under RobometerReward with the tiny Qwen3-VL model: frames flow, rewards come back."""

from __future__ import annotations

import pathlib

import gymnasium as gym
import numpy as np
import pytest
import yaml

import envs  # noqa: F401  (registers the ids)

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs" / "env"


def _run_wrapped(env, tiny_model, steps: int = 4):
    from rlrm.wrappers import RobometerReward

    wrapped = RobometerReward(env, task=None, source=tiny_model, success=None, timing_in_info=False)
    assert wrapped.task == env.unwrapped.task
    obs, info = wrapped.reset(seed=0)
    sent = []
    for _ in range(steps):
        obs, reward, terminated, truncated, info = wrapped.step(wrapped.action_space.sample())
        assert np.isfinite(reward)
        assert 0.0 <= info["rlrm"]["progress"] <= 1.0
        assert isinstance(info["is_success"], bool) and info["task"] == env.unwrapped.task
        sent.append(info["rlrm"]["frames_sent"])
    assert sent == sorted(sent) and sent[-1] > sent[0], "each query sends the growing episode prefix"
    wrapped.close()


def test_fetch_reach_with_robometer_reward(tiny_model):
    _run_wrapped(gym.make("rlrm/FetchReach-v0", image_size=64), tiny_model)


def test_metaworld_with_robometer_reward(tiny_model):
    pytest.importorskip("metaworld", reason="needs pip install 'rlrm[metaworld]'")
    _run_wrapped(gym.make("rlrm/MetaWorld-v0", task_name="reach-v3", image_size=64), tiny_model)


def _env_config(path):
    """An env config's YAML with the env config it extends (``defaults: [<other env>, _self_]``) merged under it."""
    cfg = yaml.safe_load(path.read_text())
    defaults = cfg.pop("defaults")
    assert len(defaults) == 2 and defaults[1] == "_self_", f"{path.name}: defaults {defaults}"
    if defaults[0] == "base_env":  # typed: rlrm.config.EnvConfig
        return cfg
    parent_path = path.parent / f"{defaults[0]}.yaml"
    assert parent_path.exists(), f"{path.name} extends {defaults[0]!r}, which is neither base_env nor an env config"
    parent = _env_config(parent_path)
    return {**parent, **cfg, "kwargs": {**parent.get("kwargs", {}), **cfg.get("kwargs", {})}}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_env_configs_follow_the_schema(path):
    cfg = _env_config(path)  # base_env at the root of every chain
    # one source per setting: the task sentence is the env's own (task= overrides it for env and reward)
    import dataclasses

    from rlrm.config import EnvConfig

    assert {"id", "kwargs", "reward_camera", "max_episode_steps"} <= set(cfg) <= {
        f.name for f in dataclasses.fields(EnvConfig)}
    assert cfg["id"] in gym.registry, f"{path.name}: {cfg['id']} is not registered by `import envs`"
    assert cfg["reward_camera"] is None or isinstance(cfg["reward_camera"], (str, list))
    assert isinstance(cfg["max_episode_steps"], int) and cfg["max_episode_steps"] > 0
    assert cfg["kwargs"].get("fast_render", True) is True
