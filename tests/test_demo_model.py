"""The shipped `demo` reward model: it loads, sees the frames `python run_rl.py` renders, and scores them."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import envs  # noqa: F401  (registers rlrm/FetchReach-v0)
from rlrm.models import make_reward_model, registered_models
from rlrm.models.demo import DEMO_DIR
from rlrm.sampling import sample_indices
from rlrm.types import RewardQuery
from rlrm.wrappers.frames import FrameSource

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo():
    return make_reward_model("demo")


def run_env():
    """rlrm/FetchReach-v0 and its frame source exactly as the default run_rl config builds them."""
    cfg = yaml.safe_load((ROOT / "configs" / "env" / "fetch_reach.yaml").read_text())
    env = gym.make(cfg["id"], **cfg["kwargs"])
    return env, FrameSource(env, cfg["reward_camera"])


def rollout(env, source, seed: int, towards_goal: bool, steps: int = 50) -> np.ndarray:
    """Frames (steps + 1, 128, 256, 3) of a speed-limited P-controller moving to (or away from) the target."""
    obs, _ = env.reset(seed=seed)
    frames = [source.read(obs)]
    for _ in range(steps):
        push = 10.0 * (obs["desired_goal"] - obs["achieved_goal"]) * (1 if towards_goal else -1)
        a = np.zeros(4)
        a[:3] = push * min(1.0, 0.3 / max(np.linalg.norm(push), 1e-9))
        obs, *_ = env.step(a)
        frames.append(source.read(obs))
    return np.stack(frames)


def test_demo_is_registered_small_and_documented(demo):
    assert "demo" in registered_models()
    info = demo.info()
    assert info.name == "demo" and info.max_frames == 8 and info.progress_bins == 10
    weights = sum(p.stat().st_size for p in DEMO_DIR.iterdir() if p.is_file())
    assert weights < 30 * 1024 * 1024
    card = (DEMO_DIR / "MODEL_CARD.md").read_text()
    assert "Held-out evaluation" in card and "VOC" in card and "rlrm train" in card


def test_env_still_renders_the_frames_the_model_was_trained_on():
    ref = np.load(DEMO_DIR / "reference_frames.npz")
    env, source = run_env()  # the default run's env config, as RL uses it
    try:
        for frame, seed in zip(ref["frames"], ref["seeds"], strict=True):
            obs, _ = env.reset(seed=int(seed))
            now = source.read(obs)
            assert now.shape == frame.shape == (128, 256, 3)
            # identical scene and cameras; allow tiny rasteriser differences between GL drivers
            assert np.abs(now.astype(int) - frame.astype(int)).mean() < 2.0
    finally:
        env.close()


def test_demo_scores_rendered_fetch_reach_episodes(demo):
    """On fresh renders (not the training data): reaching the target scores above moving away from it."""
    env, source = run_env()
    task = "move the gripper to the red target"
    idx = sample_indices(51, 8, "prefix")
    try:
        queries = [RewardQuery(rollout(env, source, seed, toward)[idx], task)
                   for seed in (1, 2, 3) for toward in (True, False)]
    finally:
        env.close()
    results = demo.score(queries)
    for r in results:
        assert r.progress.shape == (8,) and r.success.shape == (8,)
        assert np.all((r.progress >= 0) & (r.progress <= 1)) and np.all((r.success >= 0) & (r.success <= 1))
    reach, away = results[0::2], results[1::2]
    # a trained model, on average over three episodes: reaching the target ends with high progress and a
    # higher success probability than moving away from it (single episodes can still be wrong, see the card)
    assert np.mean([r.progress[-1] for r in reach]) > 0.5
    assert np.mean([r.progress[-1] for r in reach]) > np.mean([r.progress[-1] for r in away]) + 0.2
    assert np.mean([r.success[-1] for r in reach]) > np.mean([r.success[-1] for r in away]) + 0.3


def _collect_module():
    """experiments/demo_model/collect.py loaded as a module (experiments/ is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "demo_model" / "collect.py"
    spec = importlib.util.spec_from_file_location("demo_collect", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hard_negative_episodes_end_on_the_table_away_from_the_target(tmp_path):
    from tqdm import tqdm

    from rlrm.train.data import read_trajectory

    collect = _collect_module()
    env = collect.make_env("FetchReach")
    try:
        with tqdm(disable=True) as bar:
            for kind in ("table", "decoy", "hover"):
                collect.collect_hard_negatives(env, tmp_path, kind, 1, 123, 30, bar)
        with pytest.raises(ValueError, match="hard-negative kind"):
            collect.collect_hard_negatives(env, tmp_path, "jump", 1, 0, 5, bar)
    finally:
        env[0].close()
    table = read_trajectory(next(tmp_path.glob("reach_table_*")))
    decoy = read_trajectory(next(tmp_path.glob("reach_decoy_*")))
    hover = read_trajectory(next(tmp_path.glob("reach_hover_*")))
    for traj in (table, decoy, hover):
        assert traj.quality == "failure" and traj.frames.shape == (31, 128, 256, 3)
        assert not traj.success.any() and traj.extra["final_distance"] > collect.SUCCESS_DISTANCE
        assert traj.progress.shape == (31,) and traj.progress.max() < 1.0
    # the table episode's seed reproduces a gripper that ends low (on the table), not at the start height
    env = gym.make("rlrm/FetchReach-v0")
    try:
        seed = table.extra["seed"]
        obs, _ = env.reset(seed=seed)
        z0 = obs["achieved_goal"][2]
        policy = collect.hard_negative_policy("table", np.random.default_rng(seed), obs["desired_goal"], obs["achieved_goal"])
        for _ in range(30):
            obs, *_ = env.step(policy(obs))
    finally:
        env.close()
    assert obs["achieved_goal"][2] < min(z0 - 0.03, 0.45)


def test_hover_hard_negative_stops_above_or_below_the_target():
    """``hover``: right place in the image (within ~3 cm in xy), wrong height (7+ cm off vertically)."""
    collect = _collect_module()
    env = gym.make("rlrm/FetchReach-v0")
    try:
        for seed in (5, 6, 7):
            obs, _ = env.reset(seed=seed)
            goal = obs["desired_goal"].copy()
            policy = collect.hard_negative_policy("hover", np.random.default_rng(seed), goal, obs["achieved_goal"])
            for _ in range(40):
                obs, *_ = env.step(policy(obs))
            off = obs["achieved_goal"] - goal
            assert np.linalg.norm(off[:2]) < 0.045, (seed, off)
            assert abs(off[2]) > 0.05 and np.linalg.norm(off) > collect.SUCCESS_DISTANCE, (seed, off)
    finally:
        env.close()


def test_hard_negative_finetune_config_starts_from_the_demo_checkpoint():
    from rlrm.train.cli import load_train_config
    from rlrm.train.trainer import TrainConfig

    cfg = TrainConfig.from_dict(load_train_config("demo_hardneg", ["data=somewhere"]))
    base = TrainConfig.from_dict(load_train_config("demo", ["data=somewhere"]))
    assert cfg.model != "tiny" and not cfg.tiny and cfg.threads == 1
    assert cfg.lr < base.lr and cfg.steps < base.steps and cfg.max_minutes is not None
