"""A run records the model its worker really served, the PPO budget it really ran and the task it scored."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlrm.rl.reward_source import open_reward_source, record_reward_model, reward_model_info
from rlrm.rl.run_config import round_budget_to_rollouts
from rlrm.transport import RewardWorker, spawn_worker

ROOT = Path(__file__).resolve().parents[1]
TINY = ["env.max_episode_steps=10", "env.kwargs.image_size=64", "eval_episodes=1", "eval_video_episodes=0",
        "progress_bar=false", "algo.net_arch=[32,32]", "checkpoint_every=0"]


def compose_run(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


def load_run_rl():
    spec = importlib.util.spec_from_file_location("run_rl", ROOT / "run_rl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reward_model_info_survives_the_source_closing(tiny_model, tmp_path):
    with RewardWorker(tiny_model, bind="tcp://127.0.0.1:0") as worker:
        with open_reward_source({"kind": "robometer", "model": "tiny", "source": worker.url},
                                {"name": "worker", "timeout_ms": 60000}) as scorer:
            live = reward_model_info(scorer)
    closed = record_reward_model(scorer, tmp_path)  # the worker is gone too: the info was read at open
    assert closed == live == json.loads((tmp_path / "reward_model.json").read_text())
    expected = tiny_model.info()
    assert closed["name"] == "tiny" and closed["checkpoint"] is None and closed["source"] == worker.url
    assert closed["parameters"] == expected.extra["parameters"] > 0
    assert closed["dtype"] == expected.dtype and closed["layout"] == expected.extra["layout"]
    assert closed["info"] == expected.to_dict()
    assert reward_model_info(None) is None and record_reward_model(None, tmp_path / "env") is None


def test_a_hub_id_or_directory_name_is_recorded_as_the_checkpoint():
    class Named:
        def __init__(self, name):
            self.name = name

        def info(self):
            from rlrm.types import ModelInfo

            return ModelInfo(name=self.name, dtype="bfloat16", extra={"layout": "upstream", "parameters": 7})

    assert reward_model_info(Named("robometer/Robometer-4B"))["checkpoint"] == "robometer/Robometer-4B"
    assert reward_model_info(Named("demo"))["checkpoint"] is None
    assert reward_model_info(Named("demo"))["source"] == "Named"


def test_ppo_budget_is_rounded_up_to_whole_rollouts_with_a_warning(caplog):
    cfg = compose_run("algo=ppo", "total_steps=300")
    with caplog.at_level(logging.WARNING, logger="rlrm.rl.run_config"):
        assert round_budget_to_rollouts(cfg) == 512
    assert cfg["total_steps"] == 512
    assert "total_steps=300 rounded up to 512" in caplog.text
    caplog.clear()
    assert round_budget_to_rollouts(compose_run("algo=ppo", "total_steps=1024")) == 1024
    assert round_budget_to_rollouts(compose_run("algo=sac", "total_steps=300")) == 300
    assert not caplog.records


@pytest.fixture(scope="module")
def worker():
    with spawn_worker("tiny", seed=0, env={"OMP_NUM_THREADS": "1"}) as w:
        yield w


def test_run_against_a_worker_records_what_it_served_ran_and_scored(worker, tmp_path, caplog):
    # the config says 'auto' (the default: 'demo' for FetchReach), the worker serves 'tiny': the run must say 'tiny'
    cfg = compose_run(*TINY, "algo=ppo", "algo.n_steps=32", "algo.batch_size=16", "algo.n_epochs=1",
                      "total_steps=40", f"reward.source={worker.url}")
    assert cfg["reward"]["model"] == "auto"
    with caplog.at_level(logging.INFO):
        summary = load_run_rl().train(cfg, tmp_path)
    assert summary["env_steps"] == 64  # two whole rollouts of 32, as the saved config says
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["total_steps"] == 64
    assert summary["reward_model"]["name"] == "tiny" and summary["reward_model"]["source"] == worker.url
    assert json.loads((tmp_path / "reward_model.json").read_text()) == summary["reward_model"]
    assert json.loads((tmp_path / "summary.json").read_text())["reward_model"]["parameters"] > 0
    text = caplog.text
    assert "total_steps=40 rounded up to 64" in text
    assert f"reward.model='demo' is ignored: the worker at {worker.url} serves 'tiny'" in text
    task_lines = [r.getMessage() for r in caplog.records if "the reward model receives the task" in r.getMessage()]
    # one source: the env's own sentence (configs no longer copy it), logged once, not again for evaluation
    assert task_lines == ["the reward model receives the task 'move the gripper to the red target' "
                          "(the env's own task; change it with task=...)"]
