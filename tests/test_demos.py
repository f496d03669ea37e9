"""demos=DIR: scripted MetaWorld demonstrations recorded as a LeRobot dataset feed SAC / residual SAC as the
offline half of each batch (RLPD), with clear errors when the dataset does not fit the run, and `rlrm train`
reads the same dataset."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

pytest.importorskip("metaworld")
pytest.importorskip("pyarrow")

from rlrm.bridges.lerobot_dataset import read_lerobot_episodes  # noqa: E402
from rlrm.rl.algorithms import make_algorithm  # noqa: E402
from rlrm.rl.demos import DemoDatasetError, demo_transitions, load_demos, resolve_demos  # noqa: E402
from rlrm.rl.environment import make_env, vectorize, wrap_with_reward  # noqa: E402
from rlrm.rl.residual import ResidualAction, ScriptedPolicy  # noqa: E402
from rlrm.rl.run_config import RunConfigError, validate_run_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEPS = 12  # frames per recorded episode
EPISODES = 2
ENV_DENSE = {"kind": "env", "env_kwargs": {"reward_type": "dense"}}


def _experiment(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose_run(*overrides: str) -> dict:
    """The resolved run_rl.py config for ``overrides``."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    """Two short episodes of the drawer-open expert, recorded by experiments/record_metaworld_demos.py."""
    out = tmp_path_factory.mktemp("demos") / "drawer_open"
    result = _experiment("record_metaworld_demos").record_demos(out, episodes=EPISODES, max_episode_steps=STEPS)
    assert result["episodes"] == EPISODES and result["frames"] == EPISODES * STEPS and result["reward"] == "env:dense"
    return out


def test_record_script_writes_a_dataset_from_the_command_line(tmp_path):
    """python experiments/record_metaworld_demos.py --out DIR --episodes N (the README's command, shortened)."""
    out = subprocess.run([sys.executable, "experiments/record_metaworld_demos.py", "--out", str(tmp_path / "d"),
                          "--episodes", "1", "--max-episode-steps", "5"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout[out.stdout.index("{"):])
    assert result == {"dataset": str(tmp_path / "d"), "episodes": 1, "frames": 5, "success_rate": 0.0,
                      "reward": "env:dense"}
    (episode,) = read_lerobot_episodes(tmp_path / "d")
    assert episode["task"] == "open the drawer" and episode["features"]["observation.images.front"].shape == (5, 128, 128, 3)


def _sac(cfg: dict, env) -> object:
    return make_algorithm({**cfg["algo"], "net_arch": [16, 16], "learning_starts": 0}, vectorize(env, True), seed=0,
                          total_steps=1000)


def test_recorded_demos_enter_the_takeover_buffer_unchanged(demos):
    """Observations, next observations, actions and rewards in the buffer are the dataset's, frame by frame."""
    cfg = compose_run("env=metaworld_drawer_open", "reward=env_dense", f"demos={demos}")
    env = wrap_with_reward(make_env(cfg), cfg, None)
    model = _sac(cfg, env)
    info = load_demos(model, env, cfg)
    n = EPISODES * (STEPS - 1)  # no transition from an episode's last frame (no observation after it)
    assert info == {"dataset": str(demos), "episodes": EPISODES, "transitions": n, "imitated": 0}  # plain SAC
    offline = model.replay_buffer.interventions
    assert offline.size() == n and model.replay_buffer.size() == 0
    episodes = read_lerobot_episodes(demos)
    state = np.concatenate([e["features"]["observation.state"][:-1] for e in episodes])
    next_state = np.concatenate([e["features"]["observation.state"][1:] for e in episodes])
    np.testing.assert_allclose(offline.observations[:n, 0], state, atol=1e-6)
    np.testing.assert_allclose(offline.next_observations[:n, 0], next_state, atol=1e-6)
    actions = np.concatenate([e["features"]["action"][:-1] for e in episodes])
    np.testing.assert_allclose(offline.actions[:n, 0], actions, atol=1e-6)  # MetaWorld's action space is [-1, 1]
    rewards = np.concatenate([e["features"]["next.reward"][:-1] for e in episodes])
    np.testing.assert_allclose(offline.rewards[:n, 0], rewards, atol=1e-6)
    assert rewards.max() > 0 and not offline.dones[:n].any()
    meta = episodes[0]["meta"]
    assert meta["rlrm/reward"] == "env:dense" and meta["rlrm/source"] == "scripted expert"


def test_half_of_each_batch_is_demonstrations(demos):
    cfg = compose_run("env=metaworld_drawer_open", "reward=env_dense", f"demos={demos}")
    env = wrap_with_reward(make_env(cfg), cfg, None)
    model = _sac(cfg, env)
    load_demos(model, env, cfg)
    buf = model.replay_buffer
    online = np.full((1, 39), 7.0)  # far outside what the expert sees: marks online rows
    for _ in range(50):
        buf.add(online, online, np.zeros((1, 4)), np.array([-100.0]), np.zeros(1), [{}])
    for batch_size in (256, 33):
        batch = buf.sample(batch_size)  # raw observations (no normaliser passed)
        from_online = (batch.rewards[:, 0] == -100.0).numpy()
        assert from_online.sum() == batch_size - round(batch_size * 0.5)
        assert np.all(batch.observations[~from_online].numpy() != 7.0)


def test_residual_sac_stores_the_residual_that_reproduces_the_demo_action(demos):
    """base = clip(base_policy(obs)), residual = clip((executed - base) / residual_scale, -1, 1)."""
    cfg = compose_run("env=metaworld_drawer_open", "reward=env_dense")
    scale = 0.2
    base_policy = ScriptedPolicy(lambda obs: np.asarray(obs[:4], np.float32) * 3.0)  # leaves [-1, 1] sometimes
    residual_env = ResidualAction(make_env(cfg), base_policy, scale=scale)
    got = demo_transitions(demos, residual_env.env.observation_space, residual_env.env.action_space,
                           reward=ENV_DENSE, residual=residual_env)
    episodes = read_lerobot_episodes(demos)
    state = np.concatenate([e["features"]["observation.state"][:-1] for e in episodes])
    executed = np.concatenate([e["features"]["action"][:-1] for e in episodes])
    base = np.clip(state[:, :4] * 3.0, -1.0, 1.0)
    assert np.abs(state[:, :4] * 3.0).max() > 1.0  # the base's clipping is exercised
    np.testing.assert_allclose(got.observations["base_action"], base, atol=1e-6)
    np.testing.assert_allclose(got.observations["observation"], state, atol=1e-6)
    np.testing.assert_allclose(got.actions, np.clip((executed - base) / scale, -1.0, 1.0), atol=1e-5)
    assert np.abs((executed - base) / scale).max() > 1.0  # the residual's clipping too
    np.testing.assert_allclose(got.next_observations["observation"][0], state[1], atol=1e-6)
    # the residual run puts them in its buffer: an observation space with base_action
    cfg = compose_run("env=metaworld_drawer_open", "reward=env_dense", "algo=residual_sac", f"demos={demos}")
    from rlrm.rl.environment import resolve_env_defaults

    resolve_env_defaults(cfg)
    env = wrap_with_reward(make_env(cfg), cfg, None)
    model = make_algorithm({**cfg["algo"], "net_arch": [16, 16]}, vectorize(env, True), seed=0, total_steps=1000)
    loaded = load_demos(model, env, cfg)
    assert loaded["transitions"] == EPISODES * (STEPS - 1)
    offline = model.replay_buffer.interventions
    assert set(offline.observations) == {"observation", "base_action"}
    assert np.abs(offline.actions[: EPISODES * (STEPS - 1)]).max() <= 1.0
    # residual SAC's self-imitation (on by default) regresses onto the same residual actions
    assert loaded["imitated"] == EPISODES * (STEPS - 1) == len(model.successes)
    obs, actions = model.successes.sample(4)
    assert set(obs) == {"observation", "base_action"} and np.abs(actions).max() <= 1.0


def test_mismatched_datasets_fail_naming_what_was_expected(demos):
    action_space = spaces.Box(-1, 1, (4,), np.float32)
    with pytest.raises(DemoDatasetError, match=r"'observation.state' has shape \(39,\) per frame, expected \(38,\)"):
        demo_transitions(demos, spaces.Box(-1, 1, (38,)), action_space, reward=ENV_DENSE)
    wrist = spaces.Dict({"state": spaces.Box(-1, 1, (39,)), "wrist": spaces.Box(0, 255, (32, 32, 3), np.uint8)})
    with pytest.raises(DemoDatasetError, match=r"observation 'wrist'.*needs dataset feature 'observation.images.wrist'"):
        demo_transitions(demos, wrist, action_space, reward=ENV_DENSE)
    with pytest.raises(DemoDatasetError, match=r"'action' has shape \(4,\) per frame, expected \(7,\)"):
        demo_transitions(demos, spaces.Box(-1, 1, (39,)), spaces.Box(-1, 1, (7,)), reward=ENV_DENSE)
    sparse = {"kind": "env", "env_kwargs": {"reward_type": "sparse"}}
    with pytest.raises(DemoDatasetError, match=r"recorded next.reward as 'env:dense'.*reward is 'env:sparse'"):
        demo_transitions(demos, spaces.Box(-1, 1, (39,)), action_space, reward=sparse)
    # a Dict observation maps key by key: 'observation'/'state' keys read observation.state
    got = demo_transitions(demos, spaces.Dict({"state": spaces.Box(-10, 10, (39,))}), action_space, reward=ENV_DENSE)
    assert got.observations["state"].shape == (EPISODES * (STEPS - 1), 39)


def test_demos_config_errors_before_anything_starts(demos, tmp_path, monkeypatch):
    with pytest.raises(RunConfigError, match=r"demos= feeds the replay buffer of \['sac', 'residual_sac'\]; "
                                              r"algo='ppo' has none"):
        validate_run_config(compose_run("algo=ppo", "reward=env_dense", f"demos={demos}"))
    with pytest.raises(RunConfigError, match=r"single-process runs only \(distributed.runners=0\), got "
                                              r"distributed.runners=2"):
        validate_run_config(compose_run("reward=env_dense", f"demos={demos}", "distributed.runners=2"))
    with pytest.raises(RunConfigError, match="folder without meta/info.json"):
        validate_run_config(compose_run("reward=env_dense", f"demos={tmp_path}"))
    # a hub repo id: only from the local cache, never downloaded; the message says how to fetch it
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_LEROBOT_HOME", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    with pytest.raises(DemoDatasetError, match=r"not in the local cache.*hf download --repo-type "
                                               r"dataset lerobot/svla_so101_pickplace"):
        resolve_demos("lerobot/svla_so101_pickplace")
    cached = tmp_path / "hf" / "lerobot" / "someone" / "drawer_demos"  # LeRobot's own cache layout
    (cached / "meta").mkdir(parents=True)
    (cached / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v3.0"}))
    assert resolve_demos("someone/drawer_demos") == cached


def test_robometer_runs_score_demos_with_their_reward_model_as_online(demos):
    """reward.kind=robometer: each demo step is paid what the run's reward wrapper pays for the same frames."""
    from rlrm.models import make_reward_model
    from rlrm.transport import LocalScorer

    cfg = compose_run("env=metaworld_drawer_open", "reward.model=tiny", "transport=local")
    scorer = LocalScorer(make_reward_model("tiny", seed=0))
    got = demo_transitions(demos, spaces.Box(-np.inf, np.inf, (39,)), spaces.Box(-1, 1, (4,), np.float32),
                           reward=cfg["reward"], cfg=cfg, scorer=scorer, max_episodes=1)
    # the same episode replayed in the env with the run's reward wrapper: same frames -> same rewards
    episode = read_lerobot_episodes(demos, episodes=[0])[0]
    env = wrap_with_reward(make_env(compose_run("env=metaworld_drawer_open", "reward.model=tiny", "transport=local",
                                                f"env.max_episode_steps={STEPS}")), cfg, scorer)
    env.reset(seed=1000)  # the recorder's first episode
    online = [env.step(a)[1] for a in episode["features"]["action"][:-1]]
    np.testing.assert_allclose(got.rewards, online, atol=1e-5)
    assert np.ptp(got.rewards) > 0  # a real model's varying progress, not a constant
    env.close()


def test_rlrm_train_reads_the_demo_dataset(demos, tmp_path):
    """`rlrm train` trains the reward model on the same LeRobot dataset (2 steps of the tiny model)."""
    out = subprocess.run([sys.executable, "-m", "rlrm", "train", "--config", "demo", f"data={demos}", "steps=2",
                          "batch_size=2", "checkpoint_every=10", "log_every=1", f"output_dir={tmp_path / 'train'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "train" / "model" / "config.json").exists()


def test_run_rl_with_demos_on_metaworld_completes(demos, tmp_path):
    """python run_rl.py env=metaworld_drawer_open reward=env_dense demos=DIR: a short SAC run from state."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "run_rl.py"), "env=metaworld_drawer_open", "reward=env_dense", f"demos={demos}",
           "total_steps=120", "algo.learning_starts=40", "algo.batch_size=32", "algo.net_arch=[32,32]",
           "env.max_episode_steps=40", "eval_episodes=1", "eval_every=0", "checkpoint_every=0", "progress_bar=false",
           f"hydra.run.dir={run_dir}"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["demos"] == {"dataset": str(demos), "episodes": EPISODES, "transitions": EPISODES * (STEPS - 1),
                                "imitated": 0}
    assert summary["env_steps"] == 120 and summary["eval_success_rate"] is not None
    # the checkpoint keeps them (a resumed run does not load them again)
    (checkpoint,) = sorted((run_dir / "checkpoints").glob("step_*"))[-1:]
    buffers = json.loads((checkpoint / "replay_buffer" / "buffer.json").read_text())["buffers"]
    assert buffers["buffer.interventions"]["rows"] == EPISODES * (STEPS - 1)


def _fake_run(run_dir: Path, curve: list[float], summary: dict | None, checkpoint: bool = True) -> None:
    run_dir.mkdir(parents=True)
    points = [{"env_steps": 2500 * (i + 1), "success_rate": s, "mean_length": 150.0} for i, s in enumerate(curve)]
    (run_dir / "learning_curve.json").write_text(json.dumps({"points": points, "episodes_per_point": 10}))
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary))
    if checkpoint:
        (run_dir / "checkpoints" / "step_000002500").mkdir(parents=True)


def test_demo_study_resumes_interrupted_runs_and_reports_steps_to_target(demos, tmp_path):
    """experiments/metaworld_demos.py: which runs continue, and the JSON + plot it writes from run folders."""
    study = _experiment("metaworld_demos")
    runs = tmp_path / "runs"
    _fake_run(runs / "no_demos_seed0", [0.0, 0.3, 0.6, 0.8, 1.0], {"interrupted": False, "eval_success_rate": 0.95,
                                                                  "env_steps": 12500})
    _fake_run(runs / "demos10_seed0", [0.2, 0.9], {"interrupted": True, "stopped_at_step": 5010})  # stopped at 0.8
    _fake_run(runs / "no_demos_seed1", [0.0], {"interrupted": True, "stopped_at_step": 3852})  # Ctrl-C: continue
    _fake_run(runs / "demos10_seed1", [], None, checkpoint=False)  # died before its first checkpoint: start over
    assert study.state(runs / "no_demos_seed0", 0.8) == "done"
    assert study.state(runs / "demos10_seed0", 0.8) == "done"
    assert study.state(runs / "demos10_seed0", None) == "resume"  # without --stop-at-target it runs on
    assert study.state(runs / "no_demos_seed1", 0.8) == "resume"
    assert study.state(runs / "demos10_seed1", 0.8) == "fresh"
    (runs / "no_demos_seed1_r1").mkdir()
    assert study.chain(runs, "no_demos_seed1") == [runs / "no_demos_seed1", runs / "no_demos_seed1_r1"]
    (runs / "dataset_drawer_open_2").symlink_to(demos)
    out = tmp_path / "study"
    done = subprocess.run([sys.executable, "experiments/metaworld_demos.py", "--report-only", "--runs-dir", str(runs),
                           "--seeds", "0", "--demo-episodes", "2", "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["conditions"]["no_demos"]["steps_to_target"] == [10000]
    assert result["conditions"]["demos10"]["steps_to_target"] == [5000]
    assert result["ratio_demos_over_no_demos"] == 0.5 and result["halved"] is True
    assert result["dataset"]["episodes"] == 2 and result["dataset"]["frames"] == 2 * STEPS
    assert out.with_suffix(".png").stat().st_size > 10_000
