"""run_rl.py config: bad values fail before anything starts, naming the allowed values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from rlrm.rl.run_config import RunConfigError, resumed_config, validate_run_config

ROOT = Path(__file__).resolve().parents[1]


def compose_run(*overrides: str) -> dict:
    """The resolved run_rl.py config for ``overrides`` (Hydra compose API, no run folder)."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


def test_default_config_is_valid_and_is_the_cpu_default():
    cfg = compose_run()
    validate_run_config(cfg)
    assert cfg["env"]["id"] == "rlrm/FetchReach-v0"
    assert cfg["algo"]["name"] == "sac" and cfg["transport"]["name"] == "worker"
    assert cfg["reward"]["kind"] == "robometer" and cfg["reward"]["model"] == "auto"


@pytest.mark.parametrize("overrides", [("algo=ppo",), ("algo=residual_sac", "reward.mode=async"),
                                       ("reward=env_dense",), ("transport=local",)])
def test_other_groups_are_valid(overrides):
    validate_run_config(compose_run(*overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("env.id=rlrm/Nope-v0",), r"unknown env id 'rlrm/Nope-v0'; expected one of \[.*'rlrm/FetchReach-v0'"),
        (("algo.name=ddpg",), r"unknown algorithm 'ddpg'; expected one of \['ppo', 'residual_sac', 'sac'\]"),
        (("task='  '",), r"task must be a non-empty instruction"),
        (("total_steps=-5",), r"total_steps must be an integer >= 1, got -5"),
        (("eval_episodes=-1",), r"eval_episodes must be an integer >= 0, got -1"),
        (("checkpoint_every=-100",), r"checkpoint_every must be an integer >= 0, got -100"),
        (("reward.mode=later",), r"unknown reward.mode 'later'; expected one of \['auto', 'sync', 'async'\]"),
        (("algo=ppo", "reward.mode=async"), r"reward.mode=async needs an off-policy algorithm"),
        (("reward.shaping.progress=log",), r"reward.shaping: Shaping.progress must be one of"),
        (("reward.source=http://gpu:5555",), r"reward.source must be a worker URL"),
        (("transport.name=carrier_pigeon",), r"unknown transport 'carrier_pigeon'; expected one of \['worker'"),
    ],
)
def test_bad_values_are_named_with_the_allowed_ones(overrides, message):
    with pytest.raises(RunConfigError, match=message):
        validate_run_config(compose_run(*overrides))


def test_all_problems_are_reported_at_once():
    with pytest.raises(RunConfigError) as e:
        validate_run_config(compose_run("total_steps=-1", "algo.name=x", "task=' '"))
    assert str(e.value).count("\n  - ") == 3


def test_unknown_env_group_lists_the_available_envs():
    with pytest.raises(MissingConfigException) as e:
        compose_run("env=nope")
    assert "fetch_reach" in str(e.value)


def test_cli_rejects_a_negative_budget_before_starting_a_worker(tmp_path):
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_rl.py"), "total_steps=-5", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode != 0
    assert "total_steps must be an integer >= 1, got -5" in proc.stderr
    assert "reward worker" not in proc.stderr  # nothing was started
    assert not (tmp_path / "checkpoints").exists()


def test_resumed_config_applies_value_overrides_and_refuses_group_changes(tmp_path):
    cfg = compose_run()
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    resumed = resumed_config(str(tmp_path), [f"resume={tmp_path}", "total_steps=9000", "reward.shaping.step_cost=0.1"])
    assert resumed["total_steps"] == 9000 and resumed["reward"]["shaping"]["step_cost"] == 0.1
    assert resumed["resume"] == str(tmp_path)
    with pytest.raises(RunConfigError, match="cannot change config group 'algo'"):
        resumed_config(str(tmp_path), ["algo=ppo"])
    with pytest.raises(RunConfigError, match="no config.yaml"):
        resumed_config(str(tmp_path / "missing"), [])


def test_a_task_override_reaches_the_env_and_the_reward(tiny_model):
    """One source per setting: task=... is the env's task (info["task"]) and the reward model's instruction."""
    from rlrm.rl.environment import make_env, wrap_with_reward

    cfg = compose_run("task='touch the red ball'", "transport=local", "reward.model=tiny")
    env = wrap_with_reward(make_env(cfg), cfg, tiny_model)
    _, info = env.reset(seed=0)
    assert info["task"] == env.unwrapped.task == env.task == "touch the red ball"
    env.close()
    cfg = compose_run("transport=local", "reward.model=tiny")  # no override: the env's own sentence
    env = wrap_with_reward(make_env(cfg), cfg, tiny_model)
    _, info = env.reset(seed=0)
    assert env.task == info["task"] == "move the gripper to the red target"
    env.close()
