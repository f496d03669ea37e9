"""docs/distributed.md's multi-machine commands, run as written on two Ray nodes of this machine.

A head (`ray start --head --port P`) and a second node advertising the arm as a custom resource
(`ray start --address HEAD:P --resources='{"robot_franka": 1}'`), both with `RAY_AUTH_MODE=token` and
the same token, then `python run_rl.py ... distributed.address=auto distributed.runner_resources='{robot_franka: 1}'`:
the runner can only be placed on the second node, and the run writes the usual outputs. The nodes live
in a private Ray temp dir (RAY_TMPDIR), so `auto` finds this cluster and no other; the test stops the
processes it started, by pid, and nothing else on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="multi-node runs need the 'ray' extra")

# two Ray nodes and two runs: 45 s on a quiet box, minutes on a loaded one (Ray runs its workers niced, and a
# runner imports torch and SB3 before it answers), so it is a slow test with its own time limit
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
SMALL = ["reward=env_dense", "env.max_episode_steps=10", "algo.net_arch=[16,16]", "algo.batch_size=8",
         "algo.learning_starts=20", "total_steps=60", "eval_episodes=1", "eval_every=0", "checkpoint_every=0",
         "progress_bar=false", "distributed.rollout_steps=10", "distributed.sync_every=5"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_under(marker: str) -> list[int]:
    """Pids of processes whose command line names ``marker`` (our temp dir), and all their descendants."""
    parents: dict[int, int] = {}
    mine: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if marker in cmdline:
            mine.add(int(entry.name))
    grew = True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in mine} - mine
        grew = bool(children)
        mine |= children
    return sorted(mine)


def _stop(marker: str) -> None:
    """SIGTERM the nodes' processes, SIGKILL what is left after 10 s (Ray's own `ray stop` would stop every
    Ray process on the machine, other people's clusters included)."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        pids = _processes_under(marker)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _processes_under(marker):
            time.sleep(0.2)


@pytest.fixture
def two_nodes():
    """A head and a node with ``robot_franka: 1``, token auth on both; yields the environment to run in."""
    temp = tempfile.mkdtemp(prefix="rlrm-ray-", dir="/tmp")  # short: Ray's socket paths live under it
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_TMPDIR=temp, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               OMP_NUM_THREADS="1", MUJOCO_GL=env.get("MUJOCO_GL", "egl"))
    port = _free_port()
    try:
        for cmd in ([RAY, "start", "--head", "--port", str(port), "--num-cpus", "2", "--include-dashboard=false",
                     "--disable-usage-stats"],
                    [RAY, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1",
                     "--resources", json.dumps({"robot_franka": 1}), "--disable-usage-stats"]):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
            assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        yield env
    finally:
        _stop(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _run_rl(env: dict, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_rl.py"), *SMALL, "distributed.runners=1",
                           "distributed.address=auto", *overrides, f"hydra.run.dir={run_dir}"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_the_documented_two_node_commands_place_the_runner_on_the_node_with_the_robot(two_nodes, tmp_path):
    done = _run_rl(two_nodes, tmp_path / "run", "distributed.runner_resources={robot_franka: 1}")
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["runners"] == 1 and summary["env_steps"] == 60 and summary["runner_failures"] == 0
    assert len(summary["eval_episodes"]) == 1 and (tmp_path / "run" / "config.yaml").exists()

    # a resource no node advertises: refused at once, naming every node's resources (two nodes)
    refused = _run_rl(two_nodes, tmp_path / "refused", "distributed.runner_resources={robot_xarm: 1}")
    assert refused.returncode == 1
    assert "distributed.runner_resources={'robot_xarm': 1.0} do not fit" in refused.stderr
    assert refused.stderr.count("'CPU'") >= 2 and "robot_franka" in refused.stderr
