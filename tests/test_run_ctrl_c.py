"""Ctrl-C in a single-process ``run_rl.py``: one message, a checkpoint, summary.json, and resume= continues."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# FetchReach at 64 px, 10-step episodes, the tiny reward model in-process
TINY = ["env.max_episode_steps=10", "env.kwargs.image_size=64", "eval_episodes=1", "eval_video_episodes=0",
        "progress_bar=true", "algo.net_arch=[16]", "algo.learning_starts=10", "algo.batch_size=8",
        "transport=local", "reward.model=tiny", "reward.max_frames=2", "eval_every=0", "heartbeat_every=1",
        "checkpoint_every=0"]


def _start(run_dir: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "run_rl.py"), *TINY, *overrides, f"hydra.run.dir={run_dir}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,  # log lines go to stdout
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for_steps(proc: subprocess.Popen, run_dir: Path, steps: int) -> None:
    """Until the run's heartbeat says it took ``steps`` env steps."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        beat = run_dir / "heartbeat.json"
        try:
            if beat.exists() and json.loads(beat.read_text())["env_steps"] >= steps:
                return
        except json.JSONDecodeError:
            pass
        time.sleep(0.2)
    raise AssertionError("the run did not reach %d steps" % steps)


def test_ctrl_c_saves_a_checkpoint_and_summary_and_resume_continues(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    proc = _start(first, "total_steps=100000")
    _wait_for_steps(proc, first, 15)
    proc.send_signal(signal.SIGINT)
    err, _ = proc.communicate(timeout=600)
    assert proc.returncode == 130, err[-4000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-4000:]
    assert err.count("Ctrl-C at env step") == 1

    summary = json.loads((first / "summary.json").read_text())
    steps = summary["stopped_at_step"]
    assert summary["interrupted"] is True and steps >= 15 and summary["env_steps"] == steps
    assert summary["eval_success_rate"] is None  # no evaluation ran
    checkpoint = first / "checkpoints" / f"step_{steps:09d}"
    assert summary["checkpoint"] == str(checkpoint)
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["env_steps"] == steps
    assert f"interrupted at env step {steps}" in err and f"resume={first}" in err

    done = subprocess.run([sys.executable, str(ROOT / "run_rl.py"), f"resume={first}", f"total_steps={steps + 10}",
                           "progress_bar=false", f"hydra.run.dir={second}"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    resumed = json.loads((second / "summary.json").read_text())
    assert resumed["resumed_from"] == str(checkpoint) and resumed["lost_steps"] == 0
    assert resumed["env_steps"] == steps + 10 and resumed["trained_steps"] == 10
    assert resumed["interrupted"] is False


def test_second_ctrl_c_exits_at_once(tmp_path):
    run_dir = tmp_path / "run"
    # 20000 gradient steps every 10 env steps: the first Ctrl-C waits for them, the second does not
    proc = _start(run_dir, "total_steps=100000", "progress_bar=false", "algo.train_freq=10",
                  "algo.gradient_steps=20000")
    _wait_for_steps(proc, run_dir, 10)
    time.sleep(1.0)  # inside the gradient steps
    proc.send_signal(signal.SIGINT)
    seen = []
    for line in proc.stdout:  # the first Ctrl-C's message, then press again
        seen.append(line)
        if "Ctrl-C at env step" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    err = "".join(seen) + rest
    assert proc.returncode == 130, err[-4000:]
    assert "Traceback" not in err and "Ctrl-C: exited at once" in err, err[-4000:]
    # it left inside the gradient steps: no checkpoint of the stop and no summary were written
    assert not (run_dir / "summary.json").exists() and not list(run_dir.glob("checkpoints/step_*"))
