"""``run_rl.py reward.adapt=true labels=oracle``: a real FetchReach run whose reward model learns from oracle
labels in a trainer process and is hot-swapped into the reward source (in-process and a spawned worker);
``summary.json`` and TensorBoard show the versions over time and the labels used. Bad settings are refused
before anything starts."""

import json

import pytest
from test_run_rl import TINY, TINY_OFF_POLICY, _load_run_rl, compose_run

from rlrm.rl.run_config import RunConfigError, validate_run_config

ADAPT = ["reward.model=tiny", "reward.adapt=true", "labels=oracle", "labels.budget=4", "labels.every=1",
         "reward.trainer.min_labels=1", "reward.trainer.steps=2", "reward.trainer.batch_size=2",
         "reward.trainer.pair_batch_size=1", "reward.trainer.nice=0", "checkpoint_every=0", "eval_episodes=1",
         "eval_video_episodes=0"]


@pytest.fixture(scope="module")
def run_rl():
    return _load_run_rl()


@pytest.mark.parametrize("transport", ["local", "worker"])
def test_adaptive_run_swaps_versions_and_reports_them(run_rl, tmp_path, transport):
    # 10-step episodes: labels after episodes 1..4. A round needs one success label; a random policy rarely
    # succeeds in 10 steps, so half the labels are flipped (label noise, seeded: the first label flips)
    cfg = compose_run(*TINY, *TINY_OFF_POLICY, *ADAPT, f"transport={transport}", "total_steps=400",
                      "labels.noise=0.5", "labels.seed=2")
    summary = run_rl.train(cfg, tmp_path)
    adapt = summary["reward_adaptation"]
    assert adapt["labels"]["used"] == 4 and adapt["labels"]["success"] >= 1 and adapt["labels"]["flipped"] >= 1
    assert adapt["versions_published"], f"no version published: {adapt}"
    timeline = adapt["version_timeline"]
    assert timeline[0]["version"] == 0 and timeline[-1]["version"] >= 1, timeline
    assert [p["env_step"] for p in timeline] == sorted(p["env_step"] for p in timeline)
    assert adapt["trainer_crashed"] is None and adapt["trainer_log"][0]["labels"] >= 1
    assert (tmp_path / "reward_adapt" / "inbox").is_dir()
    header = (tmp_path / "tb" / "progress.csv").read_text().splitlines()[0]
    for scalar in ("reward_model/version", "reward_model/labels", "reward_model/trainer_alive"):
        assert scalar in header
    assert json.loads((tmp_path / "summary.json").read_text())["reward_adaptation"]["labels"]["used"] == 4


def test_bad_adaptation_settings_are_refused_before_anything_starts():
    cases = [
        (["reward.adapt=true"], "needs labels to learn from: labels=oracle"),
        (["reward.adapt=true", "labels=oracle", "transport=ray"], "transport=worker or transport=local"),
        (["reward.adapt=true", "labels=oracle", "reward.mode=async"], "needs rewards scored as the episode runs"),
        (["reward.adapt=true", "labels=oracle", "labels.select=random"], "unknown labels.select 'random'"),
        (["reward.adapt=true", "labels=oracle", "labels.budget=0"], "labels.budget must be an integer >= 1"),
        (["reward.adapt=true", "labels=oracle", "reward.trainer.mode=partial"], "unknown reward.trainer.mode"),
        (["reward.adapt=true", "labels=oracle", "reward.trainer.replay=/no/such/dir"], "does not exist"),
    ]
    for overrides, message in cases:
        cfg = compose_run(*overrides)
        with pytest.raises(RunConfigError, match=message):
            validate_run_config(cfg)
    validate_run_config(compose_run("reward.adapt=true", "labels=oracle", "labels.budget=30"))  # the documented one
