"""Third-party notices that say nothing about a run stay out of its log, in Ray workers too (issue 23)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rlrm.known_notices import QUIET_RAY_WORKERS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import_robotics_stderr() -> str:
    """What importing gymnasium-robotics prints to stderr in this process."""
    import contextlib
    import io

    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        import gymnasium_robotics  # noqa: F401
    return captured.getvalue()


def test_the_adroit_notice_is_printed_without_the_filter():
    """The notice exists (else the Ray test below could not fail)."""
    done = subprocess.run([sys.executable, "-c", "import gymnasium_robotics"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert "Adroit" in done.stderr


@pytest.mark.slow
def test_ray_workers_of_a_run_print_no_adroit_notice():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray runtime already runs in this process")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={**QUIET_RAY_WORKERS, "env_vars": {"PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}})
    try:
        printed = ray.get(ray.remote(_import_robotics_stderr).remote())
    finally:
        ray.shutdown()
    assert "Adroit" not in printed


SDL_AND_EGL = """
import sys
if sys.argv[1] == "silenced":
    from rlrm.known_notices import silence_known_notices
    silence_known_notices()
import gymnasium as gym
cartpole = gym.make("CartPole-v1", render_mode="rgb_array"); cartpole.reset(seed=0); cartpole.render()
pusher = gym.make("Pusher-v5", render_mode="rgb_array", width=64, height=64); pusher.reset(seed=0); pusher.render()
print("rendered")
"""


@pytest.mark.parametrize("mode", ["plain", "silenced"])
def test_no_xdg_runtime_dir_error_or_egl_tracebacks_at_exit(mode):
    """Headless, no XDG_RUNTIME_DIR: SDL's probe error and EGLError tracebacks at exit, gone after the entry point's call."""
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "DISPLAY", "WAYLAND_DISPLAY",
                                                            "SDL_VIDEODRIVER")}
    done = subprocess.run([sys.executable, "-c", SDL_AND_EGL, mode], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl"})
    assert done.returncode == 0 and "rendered" in done.stdout, done.stderr[-2000:]
    noisy = "XDG_RUNTIME_DIR" in done.stderr, "Exception ignored" in done.stderr
    assert noisy == ((True, True) if mode == "plain" else (False, False)), done.stderr[-2000:]
