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
