"""run_rl.py refuses an empty task and string booleans, naming the value and what to pass instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from rlrm.rl.run_config import RunConfigError, validate_run_config

ROOT = Path(__file__).resolve().parents[1]


def compose_run(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("task=''",), r"task must be a non-empty instruction, got ''; pass task=\"put the cube in the bowl\""),
        (("task='   '",), r"task must be a non-empty instruction, got '   '"),
        (("reward=env_dense", "task=''"), r"task must be a non-empty instruction, got ''"),
        (("algo=ppo", "algo.n_steps=0"), r"algo.n_steps must be an integer >= 1, got 0"),
    ],
)
def test_refused_with_the_value_and_what_to_pass(overrides, message):
    with pytest.raises(RunConfigError, match=message):
        validate_run_config(compose_run(*overrides))


@pytest.mark.parametrize(("override", "key", "value"), [
    ("robot_sim=yes", "robot_sim", True), ("robot_sim=no", "robot_sim", False), ("progress_bar=0", "progress_bar", False),
    ("reward.terminate_on_success=off", "reward", {"terminate_on_success": False})])
def test_switches_are_typed_booleans(override, key, value):
    """Typed configs convert yes/no/on/off/1/0 to what they say (a string 'no' is never taken as True)."""
    cfg = compose_run(override)
    validate_run_config(cfg)
    assert cfg[key] == value if not isinstance(value, dict) else cfg[key]["terminate_on_success"] is False


@pytest.mark.parametrize("override", ["robot_sim=maybe", "progress_bar=sometimes"])
def test_a_switch_that_is_not_a_boolean_is_refused_when_composed(override):
    with pytest.raises(ConfigCompositionException, match=override):
        compose_run(override)


@pytest.mark.parametrize("overrides", [("robot_sim=true",), ("robot_sim=false", "progress_bar=false"),
                                       ("task=put the cube in the bowl",), ("reward=env_dense",)])
def test_real_booleans_and_a_real_task_pass(overrides):
    validate_run_config(compose_run(*overrides))
