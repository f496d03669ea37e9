"""MetaWorld contact tasks for residual RL: scripted experts, BC bases, task configs, the residual eval path."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

pytest.importorskip("metaworld")

import envs  # noqa: E402,F401
from envs.metaworld_experts import TASK_SPECS, expert_policy, task_state  # noqa: E402
from rlrm.rl.bc import BCPolicy, rollout, train_bc  # noqa: E402
from rlrm.rl.environment import make_env, resolve_env_defaults, with_policy_action  # noqa: E402
from rlrm.rl.residual import ResidualAction, make_base_policy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASK_CONFIGS = {"push-v3": "metaworld_push", "pick-place-v3": "metaworld_pick_place",
                "drawer-open-v3": "metaworld_drawer_open"}


def compose_run(*overrides: str) -> dict:
    """The resolved run_rl.py config for ``overrides``."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


@pytest.mark.parametrize("task", sorted(TASK_SPECS))
def test_scripted_expert_succeeds_on_fixed_seeds(task):
    env = gym.make("rlrm/MetaWorld-v0", task_name=task, image_size=64, max_episode_steps=150)
    results = rollout(env, expert_policy(task), episodes=10, seed=123)
    env.close()
    rate = np.mean([r["success"] for r in results])
    assert rate >= 0.9, f"{task}: scripted expert succeeded in {rate:.2f} of 10 episodes, expected >= 0.9"


def test_task_state_agrees_with_metaworld_success():
    env = gym.make("rlrm/MetaWorld-v0", task_name="push-v3", image_size=64, max_episode_steps=150)
    obs, _ = env.reset(seed=3)
    expert = expert_policy("push-v3")
    seen = set()
    for _ in range(150):
        obs, _, _, _, info = env.step(expert(obs))
        state = task_state(env, "push-v3")
        assert state["success"] == info["is_success"]
        seen.add(state["success"])
    env.close()
    assert seen == {False, True}  # the episode went from not done to done


def test_bc_policy_saves_loads_and_refuses_bad_observations(tmp_path):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(300, 5)).astype(np.float32)
    act = np.tanh(obs[:, :2] * 2)
    policy = train_bc(obs, act, hidden=(32, 32), epochs=300, batch_size=64, seed=0, meta={"task": "toy"})
    mse = float(np.mean([(policy.act(o) - a) ** 2 for o, a in zip(obs[:50], act[:50], strict=True)]))
    assert mse < 0.05  # it learned the map, not a constant
    path = policy.save(tmp_path / "bc.pt")
    loaded = BCPolicy.load(path)
    np.testing.assert_allclose(loaded.act(obs[0]), policy.act(obs[0]), atol=1e-6)
    assert loaded.meta == {"task": "toy"}
    with pytest.raises(ValueError, match="flat observation of 5 values"):
        loaded.act(np.zeros(4))
    with pytest.raises(ValueError, match="non-finite"):
        loaded.act(np.full(5, np.nan))
    with pytest.raises(FileNotFoundError, match="no BC policy file"):
        BCPolicy.load(tmp_path / "missing.pt")
    base = make_base_policy({"kind": "bc", "path": str(path)}, gym.spaces.Box(-1, 1, (2,)))
    np.testing.assert_allclose(base.act(obs[1]), policy.act(obs[1]), atol=1e-6)


@pytest.mark.parametrize("task", sorted(TASK_CONFIGS))
def test_task_config_names_its_reward_model_and_a_mediocre_base(task):
    cfg = resolve_env_defaults(compose_run(f"env={TASK_CONFIGS[task]}", "algo=residual_sac"))
    assert cfg["reward"]["model"] == "demo_mw"
    assert cfg["algo"]["base_policy"]["kind"] == "bc"
    base = make_base_policy(cfg["algo"]["base_policy"], gym.spaces.Box(-1, 1, (4,)))
    assert base.meta["task"] == task
    assert base.meta["demos"] <= 20 and base.meta["eval_success"] <= 0.5  # the "mediocre" base
    # and it really is what it says: fixed seeds, its own success rate within noise of the recorded one
    env = make_env(cfg)
    rate = np.mean([r["success"] for r in rollout(env, base.act, episodes=5, seed=50_000)])
    env.close()
    assert rate <= 0.8


def test_base_policy_kind_env_without_one_names_the_fix():
    cfg = compose_run("env=fetch_push", "algo=residual_sac")
    with pytest.raises(ValueError, match="names no base_policy"):
        resolve_env_defaults(cfg)


def test_explicit_reward_model_and_base_are_kept():
    cfg = resolve_env_defaults(compose_run("env=metaworld_push", "algo=residual_sac", "reward.model=tiny",
                                           "algo.base_policy.kind=scripted",
                                           "+algo.base_policy.target=envs.metaworld_experts:expert_policy"))
    assert cfg["reward"]["model"] == "tiny"
    assert cfg["algo"]["base_policy"]["kind"] == "scripted"
    assert resolve_env_defaults(compose_run())["reward"]["model"] == "demo"  # FetchReach keeps its model


def test_policy_action_wrapper_is_the_same_for_training_and_evaluation_envs():
    cfg = resolve_env_defaults(compose_run("env=metaworld_push", "algo=residual_sac", "env.kwargs.image_size=64"))
    env = with_policy_action(gym.make(cfg["env"]["id"], max_episode_steps=20, **cfg["env"]["kwargs"]), cfg)
    assert isinstance(env, ResidualAction)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"observation", "base_action"}
    env.close()


def _load_run_rl():
    spec = importlib.util.spec_from_file_location("run_rl", ROOT / "run_rl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_residual_run_with_learning_curve_points(tmp_path):
    """The learning-curve env carries the residual action too (it crashed with KeyError 'base_action')."""
    cfg = compose_run(
        "env=metaworld_push", "algo=residual_sac", "transport=local", "reward.model=tiny",
        "env.kwargs.image_size=64", "env.max_episode_steps=10", "total_steps=40", "eval_every=20",
        "curve_episodes=1", "eval_episodes=1", "eval_video_episodes=0", "progress_bar=false",
        "algo.net_arch=[32,32]", "algo.learning_starts=10", "algo.batch_size=8", "algo.buffer_size=200",
        "checkpoint_every=0",
    )
    summary = _load_run_rl().train(cfg, tmp_path)
    curve = json.loads((tmp_path / "learning_curve.json").read_text())
    points = curve["points"] if isinstance(curve, dict) else curve
    assert len(points) == 2
    assert summary["env_steps"] == 40


def test_residual_sac_actor_waits_for_the_critic():
    """During actor_warmup_steps only the critic learns: the residual stays exactly at its zero start."""
    import torch

    from rlrm.rl.algorithms import ResidualSAC, make_algorithm
    from rlrm.rl.residual import ScriptedPolicy

    env = ResidualAction(gym.make("Pendulum-v1"), ScriptedPolicy(lambda obs: np.zeros(1)), scale=0.5)
    algo = {"name": "residual_sac", "net_arch": [16, 16], "residual_scale": 0.5, "learning_starts": 10,
            "batch_size": 8, "buffer_size": 500, "actor_warmup_steps": 60, "initial_residual_std": 0.3}
    model = make_algorithm(algo, env, seed=0)
    assert isinstance(model, ResidualSAC)
    actor_before = [p.detach().clone() for p in model.actor.parameters()]
    critic_before = [p.detach().clone() for p in model.critic.parameters()]
    model.learn(50)
    assert all(torch.equal(a, b) for a, b in zip(actor_before, model.actor.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(critic_before, model.critic.parameters(), strict=True))
    std = model.actor.log_std(torch.zeros(1, model.actor.log_std.in_features)).exp()
    assert torch.allclose(std, torch.full_like(std, 0.3))
    model.learn(40, reset_num_timesteps=False)
    assert not all(torch.equal(a, b) for a, b in zip(actor_before, model.actor.parameters(), strict=True))


def test_success_ball_marks_the_goal_with_the_success_radius():
    import mujoco

    from envs.metaworld import SUCCESS_RADIUS

    env = gym.make("rlrm/MetaWorld-v0", task_name="pick-place-v3", image_size=64, goal_marker="success_ball")
    env.reset(seed=0)
    model = env.unwrapped.model
    site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "goal")
    assert model.site_size[site, 0] == pytest.approx(SUCCESS_RADIUS["pick-place-v3"])
    assert np.allclose(model.site_pos[site], env.unwrapped._mw._target_pos)  # it sits on this layout's goal
    front = env.unwrapped.render_camera("front")
    env.close()
    plain = gym.make("rlrm/MetaWorld-v0", task_name="pick-place-v3", image_size=64)
    plain.reset(seed=0)
    assert np.abs(front.astype(int) - plain.unwrapped.render_camera("front")).sum() > 0  # the ball is drawn
    plain.close()
    with pytest.raises(ValueError, match="goal_marker must be"):
        gym.make("rlrm/MetaWorld-v0", task_name="push-v3", goal_marker="flag")
    with pytest.raises(ValueError, match="unknown camera"):
        gym.make("rlrm/MetaWorld-v0", task_name="push-v3").unwrapped.render_camera("ceiling")
