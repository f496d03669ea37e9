"""Test-wide settings: headless MuJoCo rendering, no hub downloads, fast torch on 2 cores, hypothesis profiles.

Hypothesis profiles: ``ci`` (the default, and always when ``CI`` is set) derandomizes property
tests, so a run tests the same examples every time and a red CI run is reproducible;
``HYPOTHESIS_PROFILE=dev pytest ...`` explores with fresh random examples on each run.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# pygame (CartPole frames, the gamepad) initialises SDL, which otherwise takes over SIGINT for the rest of
# the process: a later test's Ctrl-C would never become a KeyboardInterrupt
os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
# Tests often run a worker subprocess beside the test process: one math thread each keeps them
# from fighting over the cores (measured: 2 threads under contention were ~40x slower per query).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from rlrm.config import register_configs  # noqa: E402

register_configs()  # the typed schemas the YAML in configs/ builds on (tests compose configs with Hydra's API)



def hypothesis_profile(environ) -> str:
    """The hypothesis profile for ``environ``: ``ci`` when ``CI`` is set, else ``HYPOTHESIS_PROFILE`` (default ``ci``)."""
    return "ci" if environ.get("CI") else environ.get("HYPOTHESIS_PROFILE", "ci")


settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", derandomize=False)
settings.load_profile(hypothesis_profile(os.environ))


@pytest.fixture(scope="session")
def tiny_model():
    """The tiny, randomly initialised Qwen3-VL Robometer (seed 0), shared by the session."""
    from rlrm.models import make_reward_model

    return make_reward_model("tiny", seed=0)


@pytest.fixture(autouse=True)
def _sigint_handler_is_restored():
    """A test that leaves a robot's Ctrl-C handler installed would swallow a later test's Ctrl-C: restore it."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGINT)
    yield
    if signal.getsignal(signal.SIGINT) is not before:
        signal.signal(signal.SIGINT, before)
