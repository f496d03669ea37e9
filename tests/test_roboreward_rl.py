"""RoboReward in RL: scored at episode end through the async wrapper and the relabelling buffer, or every k
steps (prefix); run_rl.py with reward.model=roboreward:DIR; two workers serving both families at once."""

from __future__ import annotations

import threading

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_run_rl import TINY, TINY_OFF_POLICY, compose_run
from wrappers_support import TASK, RecordingScorer, fetch_env

from rlrm.models.roboreward import tiny_roboreward
from rlrm.sampling import sample_indices
from rlrm.types import RewardQuery
from rlrm.wrappers import AsyncRobometerReward, RobometerReward


@pytest.fixture(scope="module")
def roboreward():
    torch.manual_seed(0)
    return tiny_roboreward(seed=0)


@pytest.fixture(scope="module")
def roboreward_dir(roboreward, tmp_path_factory):
    return roboreward.save_pretrained(tmp_path_factory.mktemp("roboreward_tiny"))


def _episode(env, steps):
    env.reset(seed=0)
    out = []
    for _ in range(steps):
        out.append(env.step(env.action_space.sample()))
        if out[-1][2] or out[-1][3]:
            break
    return out


def test_episode_end_is_the_default_for_roboreward_and_pays_one_final_reward(roboreward):
    scorer = RecordingScorer(roboreward)
    env = AsyncRobometerReward(fetch_env(max_episode_steps=10), TASK, source=scorer)
    env.action_space.seed(0)
    assert env.pipeline.when == "episode_end"
    steps = _episode(env, 10)
    assert all(reward == 0.0 for _, reward, *_ in steps)  # placeholders: the env never waits
    labels = []
    while len(labels) < len(steps):
        labels += env.labeler.wait(timeout_s=120)
    assert [lab.info["queried"] for lab in labels] == [False] * 9 + [True]
    assert [lab.reward for lab in labels[:-1]] == [0.0] * 9  # no progress term before the one score
    frames = env.frame_buffer.gather(sample_indices(11, 8))
    assert len(scorer.batches) == 1 and np.array_equal(scorer.batches[0][0].frames, frames)
    direct = roboreward.score([RewardQuery(frames, TASK)])[0]
    assert labels[-1].reward == pytest.approx(float(direct.progress[-1]), abs=1e-6)  # absolute progress
    detector = labels[-1].info["detector"]  # one probability per episode: detection votes on it alone
    assert (detector["window"], detector["min_votes"], detector["recent"]) == (1, 1, [pytest.approx(
        float(direct.success[-1]), abs=1e-6)])
    assert labels[-1].info["success"] == (float(direct.success[-1]) > detector["threshold"])
    env.close()


def test_prefix_scores_every_k_steps_with_the_same_pipeline(roboreward):
    scorer = RecordingScorer(roboreward)
    env = RobometerReward(fetch_env(max_episode_steps=9), TASK, source=scorer, when="prefix", every=3)
    env.action_space.seed(0)
    steps = _episode(env, 9)
    queried = [info["rlrm"]["queried"] for *_, info in steps]
    assert queried == [True, False, False, True, False, False, True, False, True]
    assert len(scorer.batches) == 4
    with pytest.raises(ValueError, match="when must be one of"):
        RobometerReward(fetch_env(), TASK, source=roboreward, when="sometimes")
    env.close()


def test_robometer_keeps_scoring_every_step_by_default(tiny_model):
    env = RobometerReward(fetch_env(max_episode_steps=3), TASK, source=tiny_model)
    assert env.pipeline.when == "prefix"
    env.close()


def test_when_auto_asks_the_model_and_defaults_to_prefix(roboreward, tiny_model):
    from rlrm.transport import LocalScorer
    from rlrm.types import BaseScorer
    from rlrm.wrappers.episode import resolve_when

    assert resolve_when("auto", LocalScorer(roboreward)) == "episode_end"
    assert resolve_when("auto", tiny_model) == "prefix"
    assert resolve_when("auto", BaseScorer()) == "prefix"  # info() not implemented: silent
    assert resolve_when("episode_end", tiny_model) == "episode_end"
    with pytest.raises(ValueError, match="when must be one of"):
        resolve_when("end", tiny_model)


def test_run_rl_trains_with_roboreward_from_a_directory(roboreward_dir, tmp_path):
    """run_rl.py reward.model=roboreward:DIR: the default transport spawns `rlrm worker --model roboreward:DIR`;
    reward.mode=auto turns episode-end scoring into relabelled (async) rewards for SAC."""
    from test_run_rl import _load_run_rl

    cfg = compose_run(*TINY, *TINY_OFF_POLICY, f"reward.model=roboreward:{roboreward_dir}", "checkpoint_every=0",
                      "total_steps=40")
    summary = _load_run_rl().train(cfg, tmp_path)
    assert summary["env_steps"] == 40
    assert summary["eval_episodes"][0]["final_progress"] is not None
    import json

    from rlrm.rl.checkpoints import latest_checkpoint

    state = json.loads((latest_checkpoint(tmp_path) / "state.json").read_text())
    assert state["buffer_size"] == 40  # every transition got its (episode-end) label
    record = json.loads((tmp_path / "reward_model.json").read_text())
    assert record["info"]["extra"]["family"] == "roboreward" and record["checkpoint"] == str(roboreward_dir)


def test_reward_group_roboreward_composes():
    cfg = compose_run("reward=roboreward")
    assert cfg["reward"]["model"] == "roboreward:teetone/RoboReward-4B"
    assert cfg["reward"]["when"] == "auto" and cfg["reward"]["mode"] == "auto"
    assert cfg["reward"]["shaping"]["gamma"] == cfg["algo"]["gamma"]


def test_two_workers_serve_robometer_and_roboreward_clients_at_once(tiny_model, roboreward):
    """One worker per family (each model keeps its own batcher and cache); clients of both stream at once."""
    from rlrm.transport import RewardClient, RewardWorker

    rng = np.random.default_rng(0)
    episodes = [rng.integers(0, 255, (6, 64, 64, 3), dtype=np.uint8) for _ in range(4)]
    expected = {
        "robometer": [tiny_model.score([RewardQuery(e, TASK)])[0] for e in episodes],
        "roboreward": [roboreward.score([RewardQuery(e, TASK)])[0] for e in episodes],
    }
    got: dict[str, list] = {"robometer": [None] * 4, "roboreward": [None] * 4}
    errors = []
    with RewardWorker(tiny_model, bind="tcp://127.0.0.1:0") as w1, \
            RewardWorker(roboreward, bind="tcp://127.0.0.1:0") as w2:
        def client(family, url, i):
            try:
                with RewardClient(url, timeout_ms=120_000) as c:
                    assert c.info().extra["family"] == family
                    got[family][i] = c.score([RewardQuery(episodes[i], TASK, episode_id=f"{family}{i}",
                                                          frame_index=np.arange(6))])[0]
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=client, args=(fam, w.url, i))
                   for fam, w in (("robometer", w1), ("roboreward", w2)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    assert not errors, errors
    assert roboreward.feature_cache_stats()["misses"] > 0  # streamed frames reached the model with their keys
    for family in expected:
        for a, b in zip(got[family], expected[family], strict=True):
            np.testing.assert_allclose(a.progress, b.progress, atol=1e-5)
            np.testing.assert_allclose(a.success, b.success, atol=1e-5)


def test_gym_check_env_passes_with_roboreward_scoring_prefixes(roboreward):
    """(With ``when="episode_end"`` the steps before the score report progress NaN, which check_env's float
    equality cannot match; the values themselves are deterministic, see the episode-end test.)"""
    from gymnasium.utils.env_checker import check_env

    env = RobometerReward(fetch_env(max_episode_steps=5), TASK, source=roboreward, when="prefix")
    check_env(env, skip_render_check=True)
    env.close()
    assert isinstance(env, gym.Wrapper)
