"""Checkpoints keep only the filled replay-buffer rows, images as uint8, and resume reads them back (issue 17)."""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from stable_baselines3 import SAC
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from rlrm.rl.algorithms import buffer_capacity, make_algorithm
from rlrm.rl.checkpoints import BUFFER_DIR, latest_checkpoint, load_replay_buffer, save_checkpoint, saved_rows
from rlrm.rl.run_config import resumed_config

ROOT = Path(__file__).resolve().parents[1]
MB = 1e6


class ImageArm(gym.Env):
    """A camera image + proprioception, 7-step episodes, a person takes over at step 3."""

    def __init__(self) -> None:
        self.observation_space = spaces.Dict({"front": spaces.Box(0, 255, (16, 16, 3), np.uint8),
                                              "joints": spaces.Box(-1, 1, (3,), np.float32)})
        self.action_space = spaces.Box(-1, 1, (2,), np.float32)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        info = {"intervention": self.t == 3, "action": [0.25, -0.5]}
        return self.observation_space.sample(), float(self.t) / 7, self.t == 6, self.t >= 7, info


def _model(buffer_size: int, total_steps: int | None = None) -> SAC:
    venv = VecNormalize(DummyVecEnv([ImageArm]), norm_reward=False)  # turns the image key's space into float32
    algo = {"name": "sac", "buffer_size": buffer_size, "learning_starts": 10_000, "net_arch": [8]}
    return make_algorithm(algo, venv, seed=0, total_steps=total_steps)


def _chronological(buf) -> np.ndarray:
    return np.r_[buf.pos:buf.buffer_size, 0:buf.pos] if buf.full else np.arange(buf.pos)


def _assert_same_rows(saved, loaded, rows: np.ndarray) -> None:
    for key in saved.observations:
        np.testing.assert_array_equal(saved.observations[key][rows], loaded.observations[key][: len(rows)])
        np.testing.assert_array_equal(saved.next_observations[key][rows], loaded.next_observations[key][: len(rows)])
    for name in ("actions", "rewards", "dones", "timeouts", "labelled"):
        np.testing.assert_array_equal(getattr(saved, name)[rows], getattr(loaded, name)[: len(rows)], err_msg=name)


def test_partial_buffer_round_trips_with_images_stored_as_uint8(tmp_path):
    model = _model(1000)
    model.learn(40)
    ckpt = save_checkpoint(model, tmp_path)
    meta = json.loads((ckpt / BUFFER_DIR / "buffer.json").read_text())
    root = meta["buffers"]["buffer"]
    assert root["rows"] == 40 and root["buffer_size"] == 1000
    assert root["arrays"]["observations/front"] == {"file": root["arrays"]["observations/front"]["file"],
                                                    "dtype": "uint8", "buffer_dtype": "float32"}
    front = np.load(ckpt / BUFFER_DIR / root["arrays"]["observations/front"]["file"])
    assert front.shape == (40, 1, 16, 16, 3) and front.dtype == np.uint8  # only the filled rows, 1 byte per pixel
    assert root["arrays"]["observations/joints"]["dtype"] == "float32"  # non-integer values stay as they are
    # each frame once: a next observation is written only at an episode's end (6-step episodes) and the last row
    nxt = root["arrays"]["next_observations/front"]
    assert nxt["follows"] == "observations/front"
    assert np.load(ckpt / BUFFER_DIR / nxt["rows_file"]).tolist() == [5, 11, 17, 23, 29, 35, 39]
    assert np.load(ckpt / BUFFER_DIR / nxt["file"]).shape == (7, 1, 16, 16, 3)
    np.testing.assert_array_equal(saved_rows(ckpt, "next_observations/front")[:-1, 0, 0, 0],
                                  model.replay_buffer.next_observations["front"][:39, 0, 0, 0])
    assert not (ckpt / "replay_buffer.pkl").exists() and (ckpt / "vecnormalize.pkl").exists()

    restored = _model(1000)
    assert load_replay_buffer(restored, ckpt) == 40
    saved, loaded = model.replay_buffer, restored.replay_buffer
    assert (loaded.pos, loaded.full) == (saved.pos, saved.full) == (40, False)
    _assert_same_rows(saved, loaded, np.arange(40))
    # the takeover copy of the intervention buffer comes back too
    assert loaded.num_intervention_steps == saved.num_intervention_steps == loaded.interventions.size() > 0
    n = saved.interventions.size()
    np.testing.assert_array_equal(saved.interventions.actions[:n], loaded.interventions.actions[:n])


def test_full_ring_buffer_resumes_oldest_first_into_a_larger_or_smaller_capacity(tmp_path):
    model = _model(30)
    model.learn(47)  # wrapped: the oldest row sits at pos 17
    saved = model.replay_buffer
    assert saved.full and saved.pos == 17
    ckpt = save_checkpoint(model, tmp_path)
    order = _chronological(saved)

    same = _model(30)
    load_replay_buffer(same, ckpt)
    _assert_same_rows(saved, same.replay_buffer, order)
    assert same.replay_buffer.full and same.replay_buffer.pos == 0  # the next write replaces the oldest row

    larger = _model(30)
    load_replay_buffer(larger, ckpt, buffer_size=100)
    assert larger.replay_buffer.buffer_size == larger.buffer_size == 100
    assert (larger.replay_buffer.pos, larger.replay_buffer.full) == (30, False)
    _assert_same_rows(saved, larger.replay_buffer, order)

    smaller = _model(30)
    load_replay_buffer(smaller, ckpt, buffer_size=10)
    assert smaller.replay_buffer.full and smaller.replay_buffer.size() == 10
    _assert_same_rows(saved, smaller.replay_buffer, order[-10:])  # the newest rows


def test_other_spaces_are_refused_and_old_pickled_buffers_still_load(tmp_path):
    model = _model(100)
    model.learn(20)
    ckpt = save_checkpoint(model, tmp_path)

    class WideArm(ImageArm):
        def __init__(self) -> None:
            super().__init__()
            self.observation_space = spaces.Dict({"front": spaces.Box(0, 255, (8, 8, 3), np.uint8),
                                                  "joints": spaces.Box(-1, 1, (3,), np.float32)})

    other = make_algorithm({"name": "sac", "buffer_size": 100, "net_arch": [8]},
                           VecNormalize(DummyVecEnv([WideArm]), norm_reward=False))
    with pytest.raises(ValueError, match=r"observations/front.*\(1, 16, 16, 3\).*\(1, 8, 8, 3\)"):
        load_replay_buffer(other, ckpt)

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    with open(legacy / "replay_buffer.pkl", "wb") as f:
        pickle.dump(model.replay_buffer, f)
    fresh = _model(100)
    assert load_replay_buffer(fresh, legacy) == 20
    assert load_replay_buffer(fresh, tmp_path / "nothing_saved") is None


def test_budget_caps_the_preallocated_buffer():
    assert buffer_capacity({"name": "sac", "buffer_size": 50_000}, 40) == 40
    assert buffer_capacity({"name": "sac", "buffer_size": 500}, 40_000) == 500
    assert buffer_capacity({"name": "sac"}, 40) == 40  # SB3's default of 1e6, capped
    assert buffer_capacity({"name": "ppo"}, 40) is None
    assert _model(50_000, total_steps=40).replay_buffer.buffer_size == 40


# ---------------------------------------------------------------- the run: SO-101 with images, 40 steps
def _load_run_rl():
    spec = importlib.util.spec_from_file_location("run_rl", ROOT / "run_rl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose_run(*overrides: str) -> dict:
    """The resolved run_rl.py config for ``overrides``."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


# the command with a cheap reward and a fast loop; the cameras stay at the robot's 128 px
SO101_IMAGES = ["robot=so101", "robot_sim=true", "robot.env.policy_obs=images", "robot.env.fps=200",
                "robot.env.max_episode_steps=15", "transport=local", "reward.model=tiny", "reward.max_frames=2",
                "reward.every=5", "eval_episodes=0", "progress_bar=false", "algo.learning_starts=30",
                "algo.batch_size=8", "algo.net_arch=[16]"]


def _buffer_files_mb(ckpt: Path) -> float:
    return sum(f.stat().st_size for f in (ckpt / BUFFER_DIR).iterdir()) / MB


def test_forty_step_so101_image_run_checkpoint_is_small_and_resumes_with_the_same_buffer(tmp_path):
    run_rl = _load_run_rl()
    first = tmp_path / "first"
    cfg = compose_run(*SO101_IMAGES, "total_steps=40", "checkpoint_every=0")
    run_rl.train(cfg, first)
    ckpt = latest_checkpoint(first)
    # 40 rows of two 128x128x3 uint8 images: ~3.9 MB (the pickled 50000-row float32 buffer was ~39 GB here)
    assert _buffer_files_mb(ckpt) < 50
    assert sum(f.stat().st_size for f in ckpt.iterdir() if f.is_file() and f.name != "model.zip") / MB < 50
    assert (ckpt / "vecnormalize.pkl").exists()
    saved = json.loads((ckpt / "state.json").read_text())
    assert saved["buffer_size"] == 40

    # resume into a new folder with a larger budget: the first 40 rows are the saved ones
    second = tmp_path / "second"
    resumed = resumed_config(str(first), [f"resume={first}", "total_steps=50"])
    summary = run_rl.train(resumed, second)
    assert summary["resumed_from"] == str(ckpt) and summary["env_steps"] == 50
    final = latest_checkpoint(second)
    before, after = (json.loads((c / BUFFER_DIR / "buffer.json").read_text())["buffers"]["buffer"]
                     for c in (ckpt, final))
    assert before["rows"] == 40 and after["rows"] == 50 and after["buffer_size"] == 50
    for name in ("observations/front", "observations/joints", "next_observations/front", "actions", "rewards",
                 "dones", "timeouts"):
        old, new = saved_rows(ckpt, name), saved_rows(final, name)
        np.testing.assert_array_equal(old, new[:40], err_msg=name)
    assert np.load(ckpt / BUFFER_DIR / before["arrays"]["observations/front"]["file"]).any()  # real camera frames
