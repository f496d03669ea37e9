"""Distributed runs end to end on a local 2-CPU Ray cluster: FetchReach runners, the learner, real reward
models (a spawned `rlrm worker`; the shared reward actor), a runner SIGKILLed mid-run, an env exception
inside a runner, and resuming from the learner's checkpoint."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ray = pytest.importorskip("ray", reason="distributed runs need the 'ray' extra")

from rlrm.distributed.run import run_distributed  # noqa: E402
from rlrm.run import train  # noqa: E402

pytestmark = pytest.mark.slow  # starts a Ray runtime, runner and learner actors

ROOT = Path(__file__).resolve().parents[1]
TINY = ["env.max_episode_steps=10", "env.kwargs.image_size=64", "algo.net_arch=[32,32]", "algo.batch_size=16",
        "algo.buffer_size=2000", "algo.learning_starts=40", "progress_bar=false", "eval_video_episodes=0",
        "distributed.sync_every=5", "distributed.rollout_steps=10"]
FAULT_SPEC = Path(f"/tmp/rlrm-test-env-fault-{os.getuid()}.json")  # read inside Ray workers


def compose_run(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=[*TINY, *overrides]), resolve=True)


def _install_env_fault() -> None:
    """Ray worker setup hook: envs built while FAULT_SPEC exists raise once, at its step, in one runner."""
    import gymnasium as gym

    import rlrm.rl.environment as environment

    spec_path = FAULT_SPEC
    original = environment.make_env

    class InjectedFault(gym.Wrapper):
        def __init__(self, env, at, marker):
            super().__init__(env)
            self.at, self.marker, self.steps = at, marker, 0

        def step(self, action):
            self.steps += 1
            if self.steps == self.at:
                try:
                    os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))  # only the first runner there, once
                except FileExistsError:
                    return self.env.step(action)
                raise RuntimeError("injected env fault")
            return self.env.step(action)

    def make_env(cfg):
        env = original(cfg)
        if spec_path.exists():
            spec = json.loads(spec_path.read_text())
            env = InjectedFault(env, spec["at"], spec["marker"])
        return env

    environment.make_env = make_env


@pytest.fixture(scope="module")
def cluster():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": _install_env_fault})
    yield
    ray.shutdown()
    FAULT_SPEC.unlink(missing_ok=True)


def _buffer(run_dir: Path):
    """The final checkpoint's main replay buffer, read from its compact folder (filled rows only)."""
    folder = sorted((run_dir / "checkpoints").glob("step_*"))[-1] / "replay_buffer"
    rewards = np.load(next(folder.glob("0_*_rewards.npy")))
    labelled = np.load(next(folder.glob("0_*_labelled.npy"))).astype(bool)
    return SimpleNamespace(size=lambda: len(rewards), rewards=rewards, labelled=labelled,
                           num_pending=int((~labelled).sum()))


def test_two_fetchreach_runners_share_a_real_worker_and_the_learner_gets_only_labelled_transitions(cluster, tmp_path):
    cfg = compose_run("reward.model=tiny", "transport=worker", "reward.mode=async", "reward.max_frames=4",
                      "distributed.runners=2", "total_steps=120", "eval_episodes=2", "checkpoint_every=0",
                      "eval_every=50", "curve_episodes=1", f"record.dataset={tmp_path / 'dataset'}")
    summary = train(cfg, tmp_path)  # the one run driver, as for single-process runs

    # record.dataset: each runner wrote its own LeRobot dataset; runner 0 also the evaluation episode
    from rlrm.bridges.lerobot_dataset import read_lerobot_episodes

    assert summary["recorded"] == {"dataset": str(tmp_path / "dataset"), "parts": ["runner-0", "runner-1"]}
    recorded = {i: read_lerobot_episodes(tmp_path / "dataset" / f"runner-{i}") for i in (0, 1)}
    for i, episodes in recorded.items():
        training = [e for e in episodes if not e["meta"]["rlrm/evaluation"]]
        assert sum(e["length"] for e in training) >= summary["runner_env_steps"][str(i)] > 0
        assert all(e["features"]["observation.images.front"].shape[1:] == (64, 64, 3) for e in training)
    assert [e["length"] for e in recorded[0] if e["meta"]["rlrm/evaluation"]] == [
        e["length"] for e in summary["eval_episodes"]]

    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["runners"] == 2 and summary["env_steps"] == 120 and summary["reward"] == "robometer"
    assert summary["env_steps_per_s"] > 0 and summary["policy_lag_p50"] is not None
    assert summary["learner_updates"] == 120 - 40 and summary["runner_failures"] == 0
    assert sorted(summary["runner_env_steps"]) == ["0", "1"] and sum(summary["runner_env_steps"].values()) == 120
    for versions in summary["runner_weight_versions"].values():  # every runner moved on to newer weights
        assert versions == sorted(set(versions)) and versions[-1] > 0
    assert summary["weights_version"] == 80 // 5 and len(summary["eval_episodes"]) == 2
    assert summary["reward_model"]["name"] == "tiny" and summary["reward_model"]["source"].startswith("tcp://")
    assert json.loads((tmp_path / "reward_model.json").read_text())["name"] == "tiny"
    # the outputs a single-process run writes: the learning curve every eval_every steps, the final frames
    curve = json.loads((tmp_path / "learning_curve.json").read_text())
    steps = [p["env_steps"] for p in curve["points"]]  # the first batch the learner receives past each multiple
    assert len(steps) == 2 and 50 <= steps[0] < 100 <= steps[1] < 120 and curve["episodes_per_point"] == 1
    final = np.load(tmp_path / "eval_final_frames.npz")
    assert final["frames"].shape[:2] == (2, 64) and final["frames"].shape[-1] == 3 and final["frames"].dtype == np.uint8
    assert final["success_prob"].shape == (2,) and final["model_success_detected"].shape == (2,)
    assert (tmp_path / "config.yaml").exists() and "final_frames" not in summary

    buf = _buffer(tmp_path)  # the final checkpoint's replay buffer
    assert buf.size() == 120 and buf.num_pending == 0 and buf.labelled[:120].all()
    assert np.count_nonzero(buf.rewards[:120]) > 100  # model rewards, not the asynchronous placeholder 0.0
    header = (tmp_path / "tb" / "progress.csv").read_text().splitlines()[0].split(",")
    for scalar in ("distributed/policy_lag", "distributed/env_steps_runner_0", "distributed/env_steps_runner_1",
                   "learner/updates_per_s", "reward/latency_ms", "reward/progress", "rollout/ep_rew_mean"):
        assert scalar in header


def _kill_runner_when_learning(run_dir: Path, index: int, killed: dict) -> None:
    """Find runner ``index`` by its Ray name once the learner has data, and SIGKILL its process."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
        mine = [n for n in names if n.startswith("rlrm-runner-") and n.endswith(f"-{index}")]
        hb = run_dir / "heartbeat.json"
        if mine and hb.exists() and json.loads(hb.read_text())["env_steps"] >= 60:
            actor = ray.get_actor(mine[0], namespace=ray.get_runtime_context().namespace)
            killed["pid"] = ray.get(actor.ready.remote())["pid"]  # answers mid-collect (2 concurrent calls)
            os.kill(killed["pid"], signal.SIGKILL)
            return
        time.sleep(0.1)


def test_a_sigkilled_runner_is_restarted_the_run_completes_and_resume_continues(cluster, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="rlrm.distributed")
    cfg = compose_run("reward.model=tiny", "transport=local", "reward.max_frames=2", "distributed.runners=2",
                      "total_steps=200", "eval_episodes=0", "checkpoint_every=100")
    killed: dict = {}
    killer = threading.Thread(target=_kill_runner_when_learning, args=(tmp_path, 1, killed), daemon=True)
    killer.start()
    summary = run_distributed(cfg, tmp_path)
    killer.join()

    assert killed.get("pid")
    assert summary["runner_failures"] == 1 and summary["runner_lost_steps"] > 0
    assert summary["env_steps"] == 200  # the steps it owed were handed out again
    assert "runner 1 failed (ActorUnavailableError" in caplog.text or "runner 1 failed (ActorDiedError" in caplog.text
    assert "its in-flight episode is lost, at most" in caplog.text and "runner 1 is back" in caplog.text
    assert _buffer(tmp_path).size() == 200
    assert summary["reward_model"]["name"] == "tiny"  # served by the shared reward actor
    header = (tmp_path / "tb" / "progress.csv").read_text().splitlines()[0].split(",")
    assert "reward/latency_ms" in header and "reward/progress" in header  # synchronous rewards of the shared actor

    resumed = run_distributed({**cfg, "resume": str(tmp_path), "total_steps": 240}, tmp_path)
    assert resumed["resumed_from"].endswith("step_000000200") and resumed["env_steps"] == 240
    assert resumed["trained_steps"] == 40 and _buffer(tmp_path).size() == 240


def test_an_env_exception_in_a_runner_restarts_it_and_the_run_completes(cluster, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="rlrm.distributed")
    FAULT_SPEC.write_text(json.dumps({"at": 25, "marker": str(tmp_path / "fault-fired")}))
    try:
        summary = run_distributed(compose_run("reward=env_dense", "distributed.runners=2", "total_steps=150",
                                              "eval_episodes=0", "checkpoint_every=0"), tmp_path)
    finally:
        FAULT_SPEC.unlink(missing_ok=True)
    assert (tmp_path / "fault-fired").exists()
    assert summary["runner_failures"] == 1 and summary["runner_lost_steps"] == 1  # the failing step
    assert summary["env_steps"] == 150
    assert "failed (RuntimeError: injected env fault)" in caplog.text and "is back" in caplog.text
