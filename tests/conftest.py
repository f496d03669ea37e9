"""Test-wide settings: headless MuJoCo rendering, no hub downloads, fast torch on 2 cores."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests often run a worker subprocess beside the test process: one math thread each keeps them
# from fighting over the cores (measured: 2 threads under contention were ~40x slower per query).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model():
    """The tiny, randomly initialised Qwen3-VL Robometer (seed 0), shared by the session."""
    from rlrm.models import make_reward_model

    return make_reward_model("tiny", seed=0)
