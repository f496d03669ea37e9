"""record.dataset=DIR: runs recorded as LeRobot v3 datasets that LeRobot (its own venv) and rlrm both load."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from lerobot_support import run_in_lerobot_venv
from omegaconf import OmegaConf

from rlrm.bridges.lerobot_dataset import LeRobotDatasetWriter, RecordEpisodes, read_lerobot_episodes
from rlrm.rl.checkpoints import latest_checkpoint
from rlrm.train.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = ["env.max_episode_steps=10", "env.kwargs.image_size=64", "eval_episodes=2", "eval_video_episodes=0",
        "progress_bar=false", "algo.net_arch=[32,32]", "algo.learning_starts=20", "algo.batch_size=16",
        "algo.buffer_size=1000", "reward.model=tiny", "transport=local", "eval_every=0"]
TASK = "move the gripper to the red target"


def _compose(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


def _load_run_rl():
    spec = importlib.util.spec_from_file_location("run_rl", ROOT / "run_rl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    """A short FetchReach SAC run with the tiny reward model, recorded: (summary, run dir, dataset dir)."""
    tmp = tmp_path_factory.mktemp("recorded")
    dataset = tmp / "dataset"
    cfg = _compose(*TINY, "total_steps=30", "checkpoint_every=0", f"record.dataset={dataset}")
    summary = _load_run_rl().train(cfg, tmp / "run")
    return summary, tmp / "run", dataset


def _replay_buffer(run_dir: Path) -> dict[str, np.ndarray]:
    folder = latest_checkpoint(run_dir) / "replay_buffer"
    meta = json.loads((folder / "buffer.json").read_text())["buffers"]["buffer"]
    rows = int(meta["rows"])
    return {name: np.load(folder / spec["file"])[:rows] for name, spec in meta["arrays"].items()}


def test_recorded_run_matches_what_the_run_logged(recorded_run):
    """Frame count, rewards, actions, observations, success, progress, labels and task: as the run saw them."""
    summary, run_dir, dataset = recorded_run
    assert summary["recorded"] == {"dataset": str(dataset), "episodes": 5, "frames": 50}
    episodes = read_lerobot_episodes(dataset)
    assert [e["length"] for e in episodes] == [10] * 5
    assert [e["meta"]["rlrm/evaluation"] for e in episodes] == [False, False, False, True, True]
    assert {e["task"] for e in episodes} == {TASK}
    train = episodes[:3]
    buffer = _replay_buffer(run_dir)  # SB3's own record of every training transition
    cat = lambda key: np.concatenate([e["features"][key] for e in train])  # noqa: E731
    np.testing.assert_allclose(cat("next.reward"), buffer["rewards"].reshape(-1), rtol=0, atol=1e-6)
    np.testing.assert_allclose(cat("action"), buffer["actions"].reshape(30, 4), rtol=0, atol=1e-6)
    np.testing.assert_allclose(cat("observation.state"), buffer["observations/observation"].reshape(30, -1),
                               rtol=0, atol=1e-6)
    np.testing.assert_array_equal(cat("next.done"), buffer["dones"].reshape(-1).astype(bool)
                                  | buffer["timeouts"].reshape(-1).astype(bool))
    for ep, logged in zip(episodes[3:], summary["eval_episodes"], strict=True):
        f = ep["features"]
        assert len(f["next.reward"]) == logged["length"]
        assert float(f["next.reward"].sum()) == pytest.approx(logged["return"], abs=1e-4)
        assert bool(f["next.success"][-1]) == logged["is_success"]
        assert float(f["next.progress"][-1]) == pytest.approx(logged["final_progress"], abs=1e-6)
        assert float(f["next.success_prob"][-1]) == pytest.approx(logged["final_success_prob"], abs=1e-6)
    for ep in episodes:
        f = ep["features"]
        assert f["observation.images.front"].shape == (10, 64, 64, 3)
        assert f["observation.images.side"].shape == (10, 64, 64, 3)
        assert (f["label"] == -1).all() and not f["intervention"].any()
        # every frame was scored, by the model's first version (0; reward.adapt would publish 1, 2, ...)
        assert np.isfinite(f["next.progress"]).all() and (f["next.reward_version"] == 0).all()
        assert f["observation.images.front"].std() > 1  # real rendered frames, not blanks
    # rlrm train reads it (pyarrow, no lerobot in this venv)
    trajectories = load_dataset(dataset, camera="observation.images.side")
    assert len(trajectories) == 5 and trajectories[0].frames.shape == (10, 64, 64, 3)
    np.testing.assert_array_equal(trajectories[4].frames, episodes[4]["features"]["observation.images.side"])
    assert trajectories[0].task == TASK and trajectories[0].quality == "success"


def test_lerobot_loads_the_recorded_run(recorded_run):
    """LeRobot's own LeRobotDataset (in the LeRobot venv) sees the same frames, rewards, labels and task."""
    _, _, dataset = recorded_run
    out = run_in_lerobot_venv("dataset_check.py", dataset)
    episodes = read_lerobot_episodes(dataset)
    cat = lambda key: np.concatenate([e["features"][key] for e in episodes]).astype(float)  # noqa: E731
    assert out["num_frames"] == 50 and out["num_episodes"] == 5 and out["fps"] == 10
    assert sorted(out["camera_keys"]) == ["observation.images.front", "observation.images.side"]
    assert out["image_shapes"]["observation.images.front"] == [3, 64, 64]
    np.testing.assert_allclose(out["reward"], cat("next.reward"), rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["progress"], cat("next.progress"), rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["action"], np.concatenate([e["features"]["action"] for e in episodes]), atol=1e-6)
    assert out["label"] == cat("label").tolist() and out["evaluation"] == cat("evaluation").tolist()
    assert out["episode_index"] == [float(i) for i in range(5) for _ in range(10)]
    assert out["frame_index"] == [float(t) for _ in range(5) for t in range(10)]
    assert set(out["task"]) == {TASK}
    for key in out["camera_keys"]:  # LeRobot decodes the PNGs to the pixels rlrm wrote
        ours = [float(img.astype(np.float32).mean() / 255) for e in episodes for img in e["features"][key]]
        np.testing.assert_allclose(out["image_means"][key], ours, rtol=0, atol=1e-5)
    assert {"action", "next.reward", "observation.images.front"} <= set(out["stats_keys"])


class _Takeover(gym.Wrapper):
    """A person on FetchReach: takes over steps 3-5 (their action executed), labels the episode at its end."""

    def __init__(self, env, labels):
        super().__init__(env)
        self.labels, self.episode, self.t = list(labels), -1, 0

    def reset(self, **kwargs):
        self.episode, self.t = self.episode + 1, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        takeover = 3 <= self.t <= 5
        executed = np.full(4, 0.5, np.float32) if takeover else np.asarray(action, np.float32)
        obs, reward, terminated, truncated, info = self.env.step(executed)
        info = {**info, "intervention": takeover, "action": executed}
        self.t += 1
        if (terminated or truncated) and self.labels[self.episode] is not None:
            info["human_label"] = self.labels[self.episode]
        return obs, reward, terminated, truncated, info


def test_labels_interventions_and_executed_actions(tmp_path):
    import envs  # noqa: F401

    writer = LeRobotDatasetWriter(tmp_path / "ds", fps=20, robot_type="fetch")
    env = RecordEpisodes(_Takeover(gym.make("rlrm/FetchReach-v0", image_size=32, max_episode_steps=8,
                                            render_mode="rgb_array"), ["success", None, "failure"]), writer)
    sent = []
    for seed in range(3):
        env.reset(seed=seed)
        done = False
        while not done:
            a = env.action_space.sample()
            sent.append(a)
            _, _, terminated, truncated, _ = env.step(a)
            done = terminated or truncated
    writer.close()
    episodes = read_lerobot_episodes(tmp_path / "ds")
    assert [int(e["features"]["label"][0]) for e in episodes] == [1, -1, 0]
    assert [e["meta"]["rlrm/label"] for e in episodes] == [1, -1, 0]
    for e in episodes:
        f = e["features"]
        assert f["intervention"].tolist() == [False] * 3 + [True] * 3 + [False] * 2
        np.testing.assert_array_equal(f["action"][3:6], np.full((3, 4), 0.5, np.float32))
        assert f["observation.images.render"].shape == (8, 32, 32, 3)  # no reward wrapper: env.render()
    np.testing.assert_allclose(episodes[0]["features"]["action"][:3], np.array(sent[:3]), atol=1e-7)
    assert [t.quality for t in load_dataset(tmp_path / "ds")] == ["success", "success", "failure"]
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert info["robot_type"] == "fetch" and info["fps"] == 20 and info["total_frames"] == 24


def test_writer_rejects_bad_input_with_clear_errors(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a LeRobot dataset"):
        LeRobotDatasetWriter(tmp_path / "busy", fps=10)
    with pytest.raises(ValueError, match="fps must be a positive integer, got 0"):
        LeRobotDatasetWriter(tmp_path / "a", fps=0)
    writer = LeRobotDatasetWriter(tmp_path / "b", fps=10)
    frame = {"action": np.zeros(2, np.float32)}
    with pytest.raises(ValueError, match="task must be a non-empty sentence"):
        writer.add_episode([frame], "  ")
    writer.add_episode([frame, frame], "push")
    writer.add_episode([{"action": np.zeros(3, np.float32)}], "push")  # a different shape: fails in the thread
    with pytest.raises(RuntimeError, match=r"features differ.*'action'.*\[2\].*\[3\]"):
        writer.flush()
    with pytest.raises(ValueError, match="recorded at fps=10, this run records at fps=30"):
        LeRobotDatasetWriter(tmp_path / "b", fps=30)


def test_killed_run_leaves_a_dataset_of_its_finished_episodes(tmp_path):
    """SIGKILL mid-run: the finished episodes load (rlrm and LeRobot); a new run appends after them."""
    dataset = tmp_path / "ds"
    cmd = [sys.executable, str(ROOT / "run_rl.py"), *TINY, "total_steps=100000", "checkpoint_every=0",
           f"record.dataset={dataset}", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    info_path = dataset / "meta" / "info.json"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if info_path.exists() and json.loads(info_path.read_text())["total_episodes"] >= 3:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()[-4000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    episodes = read_lerobot_episodes(dataset)
    info = json.loads(info_path.read_text())
    assert len(episodes) == info["total_episodes"] >= 3
    assert all(e["length"] == 10 for e in episodes) and info["total_frames"] == 10 * len(episodes)
    # a data file written after the last metadata update (killed between the two) is dropped on reopen
    orphan = dataset / "data" / "chunk-000" / f"file-{len(episodes):03d}.parquet"
    orphan.write_bytes(b"half")
    writer = LeRobotDatasetWriter(dataset, fps=10)
    assert not orphan.exists() and writer.num_episodes == len(episodes)
    writer.close()
    out = run_in_lerobot_venv("dataset_check.py", dataset)
    assert out["num_episodes"] == len(episodes) and out["num_frames"] == 10 * len(episodes)


def test_lerobot_train_on_the_recording_then_act_through_lerobot_policy(recorded_run, tmp_path):
    """record -> `lerobot-train` (ACT, 2 steps) -> the checkpoint acts through LeRobotPolicy as through LeRobot."""
    _, _, dataset = recorded_run
    out = run_in_lerobot_venv("train_on_recording.py", dataset, tmp_path / "train")
    assert out["inputs"] == ["observation.achieved_goal", "observation.desired_goal", "observation.images.front",
                             "observation.images.side", "observation.state"]
    assert {"policy_preprocessor.json", "policy_postprocessor.json", "model.safetensors"} <= set(out["checkpoint_files"])
    assert out["n"] == 10 and out["max_abs_diff"] <= 1e-5, out
