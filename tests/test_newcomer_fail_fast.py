"""A dead worker and a bad config stop run_rl.py in seconds with one clear message, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rlrm.rl.reward_source import RewardSourceError, open_reward_source

ROOT = Path(__file__).resolve().parents[1]


def dead_url() -> str:
    """A loopback TCP endpoint nothing listens on (a port the OS just handed out and took back)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


def run_rl(*overrides: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "RLRM_DEBUG")}
    return subprocess.run([sys.executable, str(ROOT / "run_rl.py"), *overrides], capture_output=True, text=True,
                          timeout=180, env={**environ, **env})


def test_a_dead_worker_url_is_refused_when_the_source_opens():
    url = dead_url()
    reward = {"kind": "robometer", "model": "tiny", "source": url}
    with pytest.raises(RewardSourceError) as err:
        with open_reward_source(reward, {"name": "worker", "timeout_ms": 30000}):
            pytest.fail("a scorer was handed out for a worker that does not answer")
    message = str(err.value)
    assert "\n" not in message
    assert f"no reward worker answered at {url} within 5 s" in message
    assert f"rlrm worker --model MODEL --bind {url}" in message


def test_run_rl_against_a_dead_worker_prints_one_line_and_builds_nothing(tmp_path):
    proc = run_rl("reward.source=tcp://127.0.0.1:1", "progress_bar=false", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("no reward worker answered at tcp://127.0.0.1:1 within")
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "tb").exists()


def test_config_errors_print_the_message_alone_and_the_traceback_on_request(tmp_path):
    proc = run_rl("total_steps=-5", "task=' '", f"hydra.run.dir={tmp_path / 'plain'}")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "invalid run_rl config:",
        "  - task must be a non-empty instruction, got ' '; pass task=\"put the cube in the bowl\" or leave it out "
        "(task=null) to use the env's own task",
        "  - total_steps must be an integer >= 1, got -5",
    ], proc.stderr[-3000:]
    debug = run_rl("total_steps=-5", f"hydra.run.dir={tmp_path / 'debug'}", RLRM_DEBUG="1")
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr or "Error executing job" in debug.stderr, debug.stderr[-3000:]
    assert "total_steps must be an integer >= 1, got -5" in debug.stderr
