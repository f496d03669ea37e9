"""run_rl.py end to end through real reward workers: each algorithm, outputs, SIGKILL + resume."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlrm.rl.checkpoints import latest_checkpoint, read_heartbeat
from rlrm.rl.run_config import resumed_config
from rlrm.transport import spawn_worker

ROOT = Path(__file__).resolve().parents[1]

# tiny budgets: 10-step episodes, 64 px frames, small networks
TINY = [
    "env.max_episode_steps=10", "env.kwargs.image_size=64", "eval_episodes=2",
    "eval_video_episodes=1", "progress_bar=false", "algo.net_arch=[32,32]",
]
TINY_OFF_POLICY = ["algo.learning_starts=20", "algo.batch_size=16", "algo.buffer_size=1000"]


def _load_run_rl():
    spec = importlib.util.spec_from_file_location("run_rl", ROOT / "run_rl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose_run(*overrides: str) -> dict:
    """The resolved run_rl.py config for ``overrides``."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


@pytest.fixture(scope="module")
def worker():
    """One real `rlrm worker` subprocess with the tiny model, shared by the in-process runs."""
    with spawn_worker("tiny", seed=0, env={"OMP_NUM_THREADS": "1"}) as w:
        yield w


@pytest.fixture(scope="module")
def run_rl():
    return _load_run_rl()


def _cli(*overrides: str, **popen) -> list[str]:
    return [sys.executable, str(ROOT / "run_rl.py"), *overrides]


def test_cli_default_recipe_starts_and_stops_its_own_worker(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        _cli(*TINY, *TINY_OFF_POLICY, "reward.model=tiny", "total_steps=50", "checkpoint_every=25",
             f"hydra.run.dir={run_dir}"),
        capture_output=True, text=True, timeout=600, env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("eval_success_rate", "eval_return", "env_steps", "wall_s"):
        assert key in summary
    assert summary["env_steps"] == 50 and summary["algo"] == "sac"
    assert 0.0 <= summary["eval_success_rate"] <= 1.0 and len(summary["eval_episodes"]) == 2
    assert (run_dir / ".hydra" / "config.yaml").exists() and (run_dir / "config.yaml").exists()
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    header = (run_dir / "tb" / "progress.csv").read_text().splitlines()[0]
    for scalar in ("reward/progress", "reward/term_progress", "worker/latency_ms", "rollout/success_rate"):
        assert scalar in header
    ckpt = latest_checkpoint(run_dir)
    assert ckpt.name == "step_000000050"
    assert (ckpt / "model.zip").exists() and (ckpt / "replay_buffer" / "buffer.json").exists()
    assert len(list((run_dir / "checkpoints").glob("step_*"))) == 2
    assert [p.suffix for p in map(Path, summary["videos"])].count(".mp4") == 1
    # the worker it started is gone
    log_text = (run_dir / "run_rl.log").read_text()  # Hydra's job log
    line = next(ln for ln in log_text.splitlines() if "reward worker pid" in ln)
    pid = int(line.split("reward worker pid")[1].split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(["algo=ppo", "algo.n_steps=32", "algo.batch_size=16", "algo.n_epochs=2", "total_steps=64"],
                     id="ppo"),
        pytest.param(["algo=residual_sac", *TINY_OFF_POLICY, "total_steps=40"], id="residual_sac"),
        pytest.param(["algo=sac", "reward.mode=async", *TINY_OFF_POLICY, "total_steps=40"], id="sac_async"),
        pytest.param(["reward=env_dense", *TINY_OFF_POLICY, "total_steps=40"], id="sac_env_dense"),
    ],
)
def test_each_algorithm_trains_and_evaluates_through_a_worker(worker, run_rl, tmp_path, overrides):
    env_reward = "reward=env_dense" in overrides
    source = [] if env_reward else ["reward.model=tiny", f"reward.source={worker.url}"]
    cfg = compose_run(*TINY, *source, "checkpoint_every=0", *overrides)
    summary = run_rl.train(cfg, tmp_path)
    assert summary["env_steps"] == cfg["total_steps"]
    assert summary["eval_episodes"][0]["length"] >= 1
    if not env_reward:
        assert summary["eval_episodes"][0]["final_progress"] is not None  # eval rewards came from the worker
    state = json.loads((latest_checkpoint(tmp_path) / "state.json").read_text())
    if cfg["algo"]["name"] != "ppo":
        assert state["buffer_size"] == cfg["total_steps"]  # async: every transition got labelled and kept


@pytest.mark.slow
def test_sigkilled_run_resumes_with_buffer_and_step_counter(worker, run_rl, tmp_path, caplog):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        _cli(*TINY, *TINY_OFF_POLICY, "reward.model=tiny", f"reward.source={worker.url}", "total_steps=2000",
             "checkpoint_every=30", "heartbeat_every=2", f"hydra.run.dir={run_dir}"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            ckpt = latest_checkpoint(run_dir)
            beat = read_heartbeat(run_dir) if (run_dir / "heartbeat.json").exists() else None
            if ckpt is not None and beat is not None and beat >= int(ckpt.name.split("_")[1]) + 6:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    ckpt = latest_checkpoint(run_dir)
    ckpt_steps = int(ckpt.name.split("_")[1])
    reached = read_heartbeat(run_dir)
    assert reached > ckpt_steps

    cfg = resumed_config(str(run_dir), [f"resume={run_dir}", f"total_steps={ckpt_steps + 20}"])
    with caplog.at_level(logging.WARNING, logger="rlrm.run"):
        summary = run_rl.train(cfg, run_dir)
    assert f"{reached - ckpt_steps} steps since that checkpoint were lost" in caplog.text
    assert summary["resumed_from"] == str(ckpt) and summary["lost_steps"] == reached - ckpt_steps
    assert summary["trained_steps"] == 20 and summary["env_steps"] == ckpt_steps + 20  # step counter restored
    final = json.loads((latest_checkpoint(run_dir) / "state.json").read_text())
    assert final["buffer_size"] == ckpt_steps + 20  # the restored buffer plus the new steps
