"""``import envs`` in a fresh process: gymnasium-robotics' own envs still build, and a too-late MUJOCO_GL is explained."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY")}
    environ.update(env, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=600)


def test_gymnasium_robotics_own_envs_build_after_import_envs():
    """FetchSlide-v4 and HandReach-v3 failed with an AssertionError unless an rlrm Fetch env was built first."""
    done = _python(
        "import envs, gymnasium as gym, gymnasium_robotics\n"
        "gym.register_envs(gymnasium_robotics)\n"
        "for env_id in ('FetchSlide-v4', 'HandReach-v3'):\n"
        "    env = gym.make(env_id); env.reset(seed=0); env.step(env.action_space.sample()); env.close()\n"
        "    print(env_id, 'ok')\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "FetchSlide-v4 ok" in done.stdout and "HandReach-v3 ok" in done.stdout


def test_gymnasium_robotics_imported_first_is_patched_too():
    """The fix applies at `import envs` when gymnasium-robotics is already loaded."""
    done = _python(
        "import gymnasium_robotics, gymnasium as gym\nimport envs\n"
        "env = gym.make('FetchReach-v4'); env.reset(seed=0); print('ok')\n", MUJOCO_GL="egl")
    assert done.returncode == 0, done.stderr[-2000:]


def test_mujoco_imported_before_envs_names_the_fix():
    """MuJoCo loaded before envs, MUJOCO_GL unset, no display: one message that says to import envs first."""
    done = _python(
        "import mujoco\nimport envs, gymnasium as gym\n"
        "env = gym.make('rlrm/FetchReach-v0'); env.reset(seed=0); env.render()\n")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: MuJoCo could not create an OpenGL context"), last
    assert "Import envs first" in last and "MUJOCO_GL=egl" in last
    assert "mujoco was imported before `import envs`" in done.stderr.splitlines()[0]  # the import-time warning
