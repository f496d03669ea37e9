"""Final evaluation: no invented ground truth on robots, a person's labels, latched vs final model success, scaled size."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlrm.rl.evaluation import evaluate_policy, evaluation_episodes, evaluation_summary
from rlrm.shaping import SuccessDetector
from rlrm.types import ModelInfo, RewardResult
from rlrm.wrappers import RobometerReward
from robots.base import RobotEnv

ROOT = Path(__file__).resolve().parents[1]
SO101 = ["robot=so101", "robot_sim=true", "transport=local", "reward.model=tiny", "reward.max_frames=2",
         "robot.env.max_episode_steps=10", "robot.env.fps=1000", "eval_video_episodes=0", "progress_bar=false",
         "checkpoint_every=0", "algo.learning_starts=10", "algo.batch_size=8", "algo.net_arch=[16]"]


def compose_run(*overrides: str) -> dict:
    """The resolved run_rl.py config for ``overrides``."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


class FadingSuccessModel:
    """A reward model whose success probability is 0.9 for episode steps 0-2 and 0.003 afterwards."""

    def info(self) -> ModelInfo:
        return ModelInfo(name="fading")

    def score(self, queries):
        results = []
        for q in queries:
            index = np.arange(len(q.frames)) if q.frame_index is None else np.asarray(q.frame_index)
            success = np.where(index <= 2, 0.9, 0.003).astype(np.float32)
            results.append(RewardResult(progress=np.linspace(0, 1, len(index), dtype=np.float32), success=success))
        return results


class StandStill:
    """A policy that always pushes left (CartPole stays up for a few steps)."""

    def predict(self, obs, deterministic=True):
        return 0, None


def test_latched_detection_and_final_probability_are_reported_apart():
    env = RobometerReward(gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=6), "balance",
                          FadingSuccessModel(), success=SuccessDetector(threshold=0.65, window=1, min_votes=1),
                          terminate_on_success=False)
    metrics = evaluate_policy(StandStill(), env, 1)
    env.close()
    episode = metrics["episodes"][0]
    assert episode["model_success_detected"] is True  # fired at step 0-2 and latched
    assert episode["final_success_prob"] == pytest.approx(0.003)
    assert "model_success" not in episode
    summary = evaluation_summary(metrics)
    assert summary["eval_model_success_detected_rate"] == 1.0
    assert summary["eval_mean_final_success_prob"] == pytest.approx(0.003)
    assert summary["eval_success_rate"] is None  # CartPole has no is_success: null, not NaN
    json.dumps(summary, allow_nan=False)


def test_robot_run_has_no_ground_truth_and_a_scaled_evaluation(tmp_path, caplog):
    assert RobotEnv.ground_truth_success is False
    spec = importlib.util.spec_from_file_location("run_rl", ROOT / "run_rl.py")
    run_rl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_rl)
    cfg = compose_run(*SO101, "total_steps=25", "eval_episodes=20")
    with caplog.at_level(logging.WARNING, logger="rlrm.rl.evaluation"):
        summary = run_rl.train(cfg, tmp_path)
    assert summary["eval_success_rate"] is None  # was 0.0: the robot's is_success is only a person's key
    assert len(summary["eval_episodes"]) == 3  # ceil(25 trained steps / 10-step episodes), not 20
    assert "3 episode(s) of up to 10 steps" in caplog.text and "instead of eval_episodes=20" in caplog.text
    assert all(e["is_success"] is None and e["human_label"] is None for e in summary["eval_episodes"])
    assert summary["eval_person_labelled"] == 0 and summary["eval_person_success_rate"] is None
    assert summary["eval_mean_final_success_prob"] is not None
    assert json.loads((tmp_path / "summary.json").read_text())["eval_success_rate"] is None


def test_person_labels_are_reported_as_labels():
    class Labelled(gym.Env):
        """Two steps; the person presses 'y' in even episodes and 'n' in odd ones (as RobotEnv reports it)."""

        ground_truth_success = False
        observation_space = gym.spaces.Box(-1, 1, (1,))
        action_space = gym.spaces.Discrete(1)

        def __init__(self):
            self.episode = -1

        def reset(self, *, seed=None, options=None):
            self.episode += 1
            self.t = 0
            return np.zeros(1, np.float32), {}

        def step(self, action):
            self.t += 1
            info = {"is_success": False}
            if self.t == 2:
                label = "success" if self.episode % 2 == 0 else "failure"
                info.update(human_label=label, is_success=label == "success")
            return np.zeros(1, np.float32), 0.0, self.t == 2, False, info

    metrics = evaluate_policy(StandStill(), Labelled(), 3)
    assert [e["human_label"] for e in metrics["episodes"]] == ["success", "failure", "success"]
    assert [e["is_success"] for e in metrics["episodes"]] == [None, None, None]
    assert metrics["success_rate"] is None
    assert metrics["person_success_rate"] == pytest.approx(2 / 3) and metrics["person_labelled"] == 3


def test_a_person_chooses_the_evaluation_size_on_a_real_robot():
    cfg = compose_run("robot=so101", "eval_episodes=20")
    asked = []
    assert evaluation_episodes(cfg, 40, ask=lambda q: asked.append(q) or "") == 1  # Enter: the scaled default
    assert "how many episodes of up to 200 steps" in asked[0] and "[1; 0 skips]" in asked[0]
    assert evaluation_episodes(cfg, 40, ask=lambda q: "5") == 5
    assert evaluation_episodes(cfg, 40, ask=lambda q: "0") == 0
    assert evaluation_episodes(compose_run("eval_episodes=20"), 40) == 20  # simulation: as configured
