"""The shipped multi-task `demo_mw` reward model: it reads the task sentence, not only the scene.

Fresh scripted episodes (seeds the collector never used), rendered exactly as the MetaWorld env configs
render them for RL, are scored under their own task's sentence and under the other tasks' sentences.
"""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

pytest.importorskip("metaworld")

import envs  # noqa: E402,F401
from envs.metaworld import METAWORLD_TASKS  # noqa: E402
from envs.metaworld_experts import expert_policy  # noqa: E402
from rlrm.models import make_reward_model, registered_models  # noqa: E402
from rlrm.models.demo import DEMO_MW_DIR  # noqa: E402
from rlrm.sampling import sample_indices  # noqa: E402
from rlrm.types import RewardQuery  # noqa: E402
from rlrm.wrappers.frames import FrameSource  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"push-v3": "metaworld_push", "pick-place-v3": "metaworld_pick_place",
           "drawer-open-v3": "metaworld_drawer_open"}

pytestmark = pytest.mark.skipif(not (DEMO_MW_DIR / "config.json").exists(),
                                reason="demo_mw weights not shipped in this build")


@pytest.fixture(scope="module")
def model():
    return make_reward_model("demo_mw")


def expert_episode(task: str, seed: int, steps: int = 120) -> np.ndarray:
    """Frames of a scripted expert episode as RL renders them (the env config's views, tiled)."""
    cfg = yaml.safe_load((ROOT / "configs" / "env" / f"{CONFIGS[task]}.yaml").read_text())
    env = gym.make(cfg["id"], max_episode_steps=cfg["max_episode_steps"], **cfg["kwargs"])
    source = FrameSource(env, cfg["reward_camera"])
    expert = expert_policy(task)
    obs, _ = env.reset(seed=seed)
    frames = [source.read(obs)]
    for _ in range(steps):
        obs, _, _, _, info = env.step(expert(obs))
        frames.append(source.read(obs))
    env.close()
    assert info["is_success"], f"the {task} expert failed on seed {seed}; pick another seed"
    return np.stack(frames)


def test_demo_mw_is_registered_small_and_documented(model):
    assert "demo_mw" in registered_models()
    assert model.info().name == "demo_mw"
    weights = sum(p.stat().st_size for p in DEMO_MW_DIR.iterdir() if p.is_file())
    assert weights < 30 * 1024 * 1024
    card = (DEMO_MW_DIR / "MODEL_CARD.md").read_text()
    assert "Held-out" in card and "counterfactual" in card


@pytest.mark.parametrize("task", sorted(CONFIGS))
def test_right_sentence_scores_a_fresh_success_above_the_other_tasks_sentences(model, task):
    frames = expert_episode(task, seed=9001)
    idx = sample_indices(len(frames), 8, "prefix")
    sentences = {t: METAWORLD_TASKS[t] for t in CONFIGS}
    results = dict(zip(sentences, model.score([RewardQuery(frames[idx], s) for s in sentences.values()]),
                       strict=True))
    own = results[task]
    for other, res in results.items():
        if other == task:
            continue
        assert own.progress[-1] > res.progress[-1] + 0.3, (
            f"{task} success scored {own.progress[-1]:.2f} under its own sentence but {res.progress[-1]:.2f} "
            f"under {other!r}'s")
    assert own.success[-1] > 0.5
