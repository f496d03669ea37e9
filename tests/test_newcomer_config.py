"""run_rl.py refuses an empty task and string booleans, naming the value and what to pass instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
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
        (("robot_sim=yes",), r"robot_sim must be true or false, got 'yes' \(str\); pass robot_sim=true"),
        (("robot_sim=1",), r"robot_sim must be true or false, got 1 \(int\)"),
        (("progress_bar=no",), r"progress_bar must be true or false, got 'no' \(str\)"),
        (("reward.terminate_on_success=on",), r"reward.terminate_on_success must be true or false, got 'on'"),
        (("algo=ppo", "algo.n_steps=0"), r"algo.n_steps must be an integer >= 1, got 0"),
    ],
)
def test_refused_with_the_value_and_what_to_pass(overrides, message):
    with pytest.raises(RunConfigError, match=message):
        validate_run_config(compose_run(*overrides))


@pytest.mark.parametrize("overrides", [("robot_sim=true",), ("robot_sim=false", "progress_bar=false"),
                                       ("task=put the cube in the bowl",), ("reward=env_dense",)])
def test_real_booleans_and_a_real_task_pass(overrides):
    validate_run_config(compose_run(*overrides))
