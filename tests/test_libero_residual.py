"""LIBERO-Spatial task 0 for residual RL: the scripted expert, the task state, the BC base and its config.

One LIBERO scene takes 10-25 s to build and an expert episode ~100 steps at 40-90 ms each, so the tests
that run episodes share one env and are marked slow (about 2 minutes together on an idle 2-core box).
"""

from __future__ import annotations

import types

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("libero", reason="LIBERO tests need pip install 'rlrm[libero]'")

import envs  # noqa: E402,F401
from envs.libero_experts import TASK_SPECS, expert_policy, task_state  # noqa: E402
from rlrm.rl.bc import rollout  # noqa: E402

INIT_STATES = (0, 5, 10, 15, 20, 25, 30, 35, 40, 45)  # spread over the suite's 50 fixed initial states


@pytest.fixture(scope="module")
def task0_env():
    env = gym.make("rlrm/LIBERO-v0", suite="libero_spatial", task_id=0, image_size=64, max_episode_steps=160)
    yield env
    env.close()


@pytest.mark.slow
def test_scripted_expert_succeeds_on_fixed_init_states(task0_env):
    expert = expert_policy(task0_env)
    successes = []
    for init_id in INIT_STATES:
        obs, _ = task0_env.reset(options={"init_state_id": init_id})
        for _ in range(160):
            obs, _, terminated, truncated, info = task0_env.step(expert(obs))
            if terminated or truncated:
                break
        successes.append(info["is_success"])
    rate = float(np.mean(successes))
    assert rate >= 0.9, f"scripted expert succeeded on {successes} (rate {rate:.2f}), expected >= 0.9"


@pytest.mark.slow
def test_task_state_follows_the_episode_and_agrees_with_libero(task0_env):
    obs, _ = task0_env.reset(options={"init_state_id": 7})
    start = task_state(task0_env)
    assert not start["success"] and start["bowl_to_plate"] > 0.08  # the bowl starts beside the plate
    expert = expert_policy(task0_env)
    seen, lifts = set(), []
    for _ in range(160):
        obs, _, terminated, truncated, info = task0_env.step(expert(obs))
        state = task_state(task0_env)
        assert state["success"] == info["is_success"]
        seen.add(state["success"])
        lifts.append(state["bowl_lift"])
        if terminated or truncated:
            break
    assert seen == {False, True}  # the episode went from not done to done
    assert max(lifts) > 0.05  # the bowl was carried, not pushed
    assert state["bowl_to_plate"] < TASK_SPECS[("libero_spatial", 0)].radius
    # the reward cameras of configs/env/libero_spatial_0.yaml: scene cameras by name, unknown ones refused
    wrist = task0_env.unwrapped.render_camera("robot0_eye_in_hand")
    assert wrist.shape == (64, 64, 3) and wrist.dtype == np.uint8
    assert np.abs(wrist.astype(int) - task0_env.unwrapped.render_camera("agentview")).sum() > 0
    with pytest.raises(ValueError, match="unknown camera 'ceiling'.*agentview"):
        task0_env.unwrapped.render_camera("ceiling")
    # a second episode restarts the waypoints (the expert notices the reset itself)
    task0_env.reset(options={"init_state_id": 7})
    expert(obs)
    assert expert.phase == "above"


def test_expert_refuses_a_task_it_has_no_spec_for():
    other = types.SimpleNamespace(unwrapped=types.SimpleNamespace(suite="libero_goal", task_id=3))
    with pytest.raises(ValueError, match=r"no scripted expert for LIBERO task \('libero_goal', 3\)"):
        expert_policy(other)
    with pytest.raises(ValueError, match="no scripted expert"):
        task_state(other)


def test_libero_has_only_its_sparse_reward():
    with pytest.raises(ValueError, match="reward_type must be 'sparse', got 'dense'"):
        gym.make("rlrm/LIBERO-v0", suite="libero_spatial", task_id=0, reward_type="dense")


@pytest.mark.slow
def test_bc_rollout_reports_libero_success(task0_env):
    """rlrm.rl.bc.rollout runs the expert on LIBERO and reads its success (what base_policies.py trains from)."""
    expert = expert_policy(task0_env)
    result = rollout(task0_env, expert, episodes=1, seed=3)[0]
    assert result["success"] is True
    assert result["observations"].shape[1] == task0_env.observation_space.shape[0]
    assert np.all(np.abs(result["actions"]) <= 1.0)


@pytest.mark.slow
def test_task_config_names_a_mediocre_base_and_the_reward_cameras():
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from rlrm.rl.environment import make_env, resolve_env_defaults, reward_camera, with_policy_action
    from rlrm.rl.residual import ResidualAction
    from rlrm.wrappers.frames import FrameSource

    root = Path(__file__).resolve().parents[1]
    with initialize_config_dir(config_dir=str(root / "configs"), version_base=None):
        cfg = OmegaConf.to_container(compose("config", overrides=[
            "env=libero_spatial_0", "algo=residual_sac", "reward=env_sparse", "env.kwargs.image_size=64"]), resolve=True)
    cfg = resolve_env_defaults(cfg)
    base_spec = cfg["algo"]["base_policy"]
    assert base_spec == {"kind": "bc", "path": "envs/assets/bases/libero_spatial_0_bc.pt"}
    assert reward_camera(cfg) == ["agentview", "robot0_eye_in_hand"]
    env = with_policy_action(make_env(cfg), cfg)
    try:
        assert isinstance(env, ResidualAction)
        meta = env.base_policy.meta
        assert meta["task"] == env.unwrapped.task and meta["task_id"] == 0
        assert meta["demos"] <= 20 and meta["eval_success"] <= 0.5  # the "mediocre" base
        obs, info = env.reset(seed=0)
        assert set(obs) == {"observation", "base_action"} and obs["base_action"].shape == (7,)
        assert np.all(np.abs(obs["base_action"]) <= 1.0)
        obs, reward, terminated, truncated, info = env.step(np.zeros(7, np.float32))  # zero residual = the base
        assert reward == 0.0 and info["is_success"] is False
        frame = FrameSource(env, reward_camera(cfg)).read(obs)
        assert frame.shape == (64, 128, 3)  # agentview | wrist, tiled
    finally:
        env.close()
