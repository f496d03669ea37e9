"""Typed configs (rlrm/config.py) are the one source of every default: wrappers, worker CLI, client and run_rl.py."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlrm.config import (
    CLIENT_TIMEOUT_MS,
    CONFIG_DIR,
    RewardConfig,
    RunConfig,
    ShapingConfig,
    SuccessConfig,
    WorkerConfig,
    WorkerTransportConfig,
    typed_run_config,
)
from rlrm.rl.run_config import RunConfigError, validate_run_config
from rlrm.shaping import Shaping, SuccessDetector

ROOT = Path(__file__).resolve().parents[1]


def compose_run(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


def _wrappers():
    from rlrm.wrappers import AsyncRobometerReward, RobometerReward, RobometerSB3VecReward, RobometerVecReward

    return [RobometerReward, AsyncRobometerReward, RobometerVecReward, RobometerSB3VecReward]


def test_the_wrappers_share_every_reward_default_with_the_dataclasses():
    reward = RewardConfig()
    fields = {f.name for f in dataclasses.fields(RewardConfig)}
    assert dataclasses.asdict(Shaping()) == dataclasses.asdict(ShapingConfig())
    assert Shaping() == Shaping(**dataclasses.asdict(reward.shaping))
    assert (ShapingConfig.progress, ShapingConfig.success_bonus, RewardConfig.terminate_on_success) == (
        "absolute", 0.0, False)  # the measured best (README, "Evidence on FetchReach")
    detector = SuccessDetector()
    assert (detector.threshold, detector.window, detector.min_votes) == dataclasses.astuple(SuccessConfig())
    for cls in _wrappers():
        params = inspect.signature(cls.__init__).parameters
        shared = (fields - {"shaping", "success"}) & {n for n, p in params.items() if p.default is not inspect.Parameter.empty}
        assert {"max_frames", "sampling", "views", "terminate_on_success"} <= shared, cls.__name__
        for name in shared:
            assert params[name].default == getattr(reward, name), f"{cls.__name__}({name}=...)"
        assert params["shaping"].default is None  # None: Shaping(), whose defaults are ShapingConfig's
        success = params["success"].default
        assert isinstance(success, SuccessDetector), f"{cls.__name__}: success detection on by default"
        assert (success.threshold, success.window, success.min_votes) == dataclasses.astuple(SuccessConfig())


def test_the_worker_cli_the_client_and_the_run_share_the_worker_defaults():
    import argparse

    from rlrm.transport.client import RewardClient
    from rlrm.transport.worker_cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model", "tiny"])
    worker = WorkerConfig()
    assert (args.bind, args.max_batch, args.max_wait_ms, args.max_queue) == (
        worker.bind, worker.max_batch, worker.max_wait_ms, worker.max_queue)
    assert inspect.signature(RewardClient.__init__).parameters["timeout_ms"].default == CLIENT_TIMEOUT_MS
    transport = compose_run()["transport"]
    assert transport == dataclasses.asdict(WorkerTransportConfig())
    assert (transport["max_batch"], transport["max_wait_ms"], transport["timeout_ms"]) == (
        worker.max_batch, worker.max_wait_ms, CLIENT_TIMEOUT_MS)


def test_run_rl_defaults_are_the_dataclasses_with_only_the_yaml_overrides():
    cfg = compose_run()
    run = dataclasses.asdict(RunConfig())
    for key, value in run.items():
        if key not in ("env", "algo", "reward", "transport", "robot"):
            assert cfg[key] == value, key
    expected = dataclasses.asdict(RewardConfig())
    expected["shaping"]["gamma"] = cfg["algo"]["gamma"]  # reward/robometer.yaml: the algorithm's discount
    assert cfg["reward"] == expected


@pytest.mark.parametrize("bad", [{"total_stpes": 100}, {"reward": {"shapping": {}}}, {"transport": {"max_bach": 4}}])
def test_keys_nothing_reads_are_refused_with_the_keys_that_exist(bad):
    with pytest.raises(RunConfigError, match=r"unknown config key '.*': nothing reads it; keys at .*\["):
        typed_run_config(bad)


def test_a_plus_override_of_a_key_nothing_reads_is_refused():
    """Hydra's ``+key=value`` may add keys to a typed config; validation still refuses them."""
    cfg = compose_run("+total_stpes=100")
    with pytest.raises(RunConfigError, match=r"unknown config key 'total_stpes': nothing reads it; keys at the "
                                             r"top level: \[.*'total_steps'"):
        validate_run_config(cfg)


def test_wrong_types_name_the_key_and_the_type():
    with pytest.raises(RunConfigError, match=r"invalid config value at total_steps: Value 'many' of type 'str' "
                                             r"could not be converted to Integer"):
        typed_run_config({"total_steps": "many"})
    assert typed_run_config({"reward": {"every": "2"}})["reward"]["every"] == 2


def test_unknown_sb3_arguments_are_refused_and_known_ones_pass():
    validate_run_config(compose_run("+algo.ent_coef=0.1"))
    with pytest.raises(RunConfigError, match=r"unknown algo keys \['ent_coeff'\] for algo=sac: nothing reads them"):
        validate_run_config(compose_run("+algo.ent_coeff=0.1"))


def test_run_rl_refuses_a_misspelt_key_before_starting_anything(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "run_rl.py"), "+total_stpes=100", f"hydra.run.dir={tmp_path}"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "RLRM_DEBUG": "0"})
    assert proc.returncode == 1, proc.stderr
    assert "unknown config key 'total_stpes': nothing reads it" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "checkpoints").exists()
