"""The LeRobot venv the LeRobot bridge tests drive in subprocesses (LeRobot never enters the main venv).

``.ci/lerobot-venv`` makes it at ``<repo>/.venv-lerobot`` (``RLRM_LEROBOT_PYTHON`` may name another
interpreter). Locally a missing venv skips these tests with the command that makes it; in CI (``CI`` set)
it is always made, so a missing one fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "lerobot_venv"


def lerobot_python() -> Path:
    """The LeRobot venv's python; skips (locally) or fails (CI) when it is not there."""
    path = Path(os.environ.get("RLRM_LEROBOT_PYTHON", REPO / ".venv-lerobot" / "bin" / "python"))
    if not path.exists():
        message = f"no LeRobot venv at {path}: make it with `bash .ci/lerobot-venv`"
        if os.environ.get("CI"):
            pytest.fail(message + " (.ci/run always makes it)")
        pytest.skip(message)
    return path


def run_in_lerobot_venv(script: str, *args: str, timeout: float = 600) -> dict:
    """Run ``tests/lerobot_venv/<script>`` in the LeRobot venv with this checkout's rlrm; its last stdout line as JSON."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([str(lerobot_python()), str(SCRIPTS / script), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-6000:])
        raise AssertionError(f"{script} failed in the LeRobot venv (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
