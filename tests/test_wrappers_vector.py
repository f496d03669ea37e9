"""RobometerVecReward on gymnasium and SB3 vector envs: one batched request per step, auto-reset, == single env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import AddRenderObservation
from stable_baselines3.common.vec_env import DummyVecEnv
from wrappers_support import TASK, RecordingScorer, fetch_env

from rlrm.shaping import SuccessDetector
from rlrm.wrappers import FrameInInfo, RobometerReward, RobometerSB3VecReward, RobometerVecReward
from rlrm.wrappers.vector_gym import GymVecReward
from rlrm.wrappers.vector_sb3 import SB3VecReward

EPISODE_STEPS = (3, 4)  # the sub-envs end at different steps, so auto-resets interleave
SEEDS = (10, 11)
VECTOR_STEPS = 6
DETECTOR = SuccessDetector(threshold=0.5, window=2, min_votes=1)
KW = dict(max_frames=4, every=2, success=DETECTOR)


def _actions(n_envs=2):
    rng = np.random.default_rng(0)
    return [rng.uniform(-1, 1, (n_envs, 4)).astype(np.float32) for _ in range(VECTOR_STEPS)]


def _single_env_replay(model, i, actions, reset_steps):
    """Sub-env ``i`` alone under RobometerReward, reset where the vector env reset it; per-step results."""
    env = RobometerReward(fetch_env(max_episode_steps=EPISODE_STEPS[i]), TASK, model, terminate_on_success=False,
                          **KW)
    env.reset(seed=SEEDS[i])
    out = []
    for k, a in enumerate(actions):
        if k in reset_steps:
            env.reset()
            out.append(None)
            continue
        _, reward, terminated, truncated, info = env.step(a[i])
        out.append((reward, info["rlrm"]["progress"], info["rlrm"]["success_prob"], info["rlrm"]["success"],
                    terminated or truncated))
    env.close()
    return out


def test_gymnasium_vector_equals_single_envs_with_one_request_per_step(tiny_model):
    scorer = RecordingScorer(tiny_model)
    venv = gym.vector.SyncVectorEnv([lambda n=n: fetch_env(max_episode_steps=n) for n in EPISODE_STEPS])
    venv = RobometerVecReward(venv, TASK, scorer, **KW)
    assert isinstance(venv, GymVecReward) and isinstance(venv, RobometerVecReward)
    venv.reset(seed=list(SEEDS))
    actions = _actions()
    vec = {0: [], 1: []}
    for a in actions:
        _, rewards, terms, truncs, infos = venv.step(a)
        for i in range(2):
            stepped = infos["_rlrm"][i]
            vec[i].append((rewards[i], infos["rlrm"]["progress"][i], infos["rlrm"]["success_prob"][i],
                           infos["rlrm"]["success"][i], terms[i] or truncs[i]) if stepped else None)
            if not stepped:
                assert rewards[i] == 0.0  # the auto-reset step is not a transition
    # env0: steps 0,1,2(truncated) | reset at 3 | 4,5 ; env1: 0..3(truncated) | reset at 4 | 5
    assert [v is None for v in vec[0]] == [False, False, False, True, False, False]
    assert [v is None for v in vec[1]] == [False, False, False, False, True, False]
    assert vec[1][3][4] and vec[0][2][4]
    # one request per vector step, holding every sub-env due then: episode steps 0, 2, ... and final steps
    # env0 episode steps by vector step: 0 1 2f R 0 1 ; env1: 0 1 2 3f R 0
    due = [[0, 1], [], [0, 1], [1], [0], [1]]
    assert len(scorer.batches) == sum(bool(d) for d in due)
    sizes = [len(b) for b in scorer.batches]
    assert sizes == [len(d) for d in due if d]
    venv.close()  # before the replays: rlrm's fast Fetch renderer misrenders with > 2 live Fetch envs
    for i in range(2):
        single = _single_env_replay(tiny_model, i, actions, {k for k, v in enumerate(vec[i]) if v is None})
        for got, want in zip(vec[i], single, strict=True):
            assert (got is None) == (want is None)
            if got is not None:
                np.testing.assert_allclose(got[:3], want[:3], atol=1e-5)
                assert got[3:] == want[3:]


def test_gymnasium_partial_reset_restarts_only_masked_episodes(tiny_model):
    venv = RobometerVecReward(gym.make_vec("CartPole-v1", num_envs=2, render_mode="rgb_array"), "balance the pole",
                              tiny_model, success=None)
    venv.reset(seed=0)
    venv.step(np.zeros(2, int))
    venv.reset(options={"reset_mask": np.array([True, False])})
    _, _, _, _, infos = venv.step(np.zeros(2, int))
    assert infos["rlrm"]["frame_index"] == [[0, 1], [0, 1, 2]]
    venv.close()


def test_gymnasium_disabled_autoreset_with_reset_mask(tiny_model):
    base = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync", render_mode="rgb_array",
                        max_episode_steps=2,
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED})
    venv = RobometerVecReward(base, "balance the pole", tiny_model, success=None)
    venv.reset(seed=0)
    venv.step(np.zeros(2, int))
    _, _, _, truncated, infos = venv.step(np.zeros(2, int))
    assert truncated.all() and infos["rlrm"]["frame_index"] == [[0, 1, 2], [0, 1, 2]]
    venv.reset(options={"reset_mask": truncated.copy()})
    _, rewards, _, _, infos = venv.step(np.zeros(2, int))
    assert infos["_rlrm"].all() and infos["rlrm"]["frame_index"] == [[0, 1], [0, 1]]
    venv.close()


def _run_sb3(model, camera):
    """SB3 DummyVecEnv of the two Fetch envs; frames via FrameInInfo (camera=None) or obs["pixels"]."""
    if camera is None:
        fns = [lambda n=n: FrameInInfo(fetch_env(max_episode_steps=n)) for n in EPISODE_STEPS]
    else:
        fns = [lambda n=n: AddRenderObservation(fetch_env(max_episode_steps=n), render_only=False)
               for n in EPISODE_STEPS]
    base = DummyVecEnv(fns)
    base.seed(SEEDS[0])  # SB3 seeds sub-env i with seed + i
    scorer = RecordingScorer(model)
    venv = RobometerSB3VecReward(base, TASK, scorer, camera=camera, **KW)
    assert isinstance(venv, SB3VecReward)
    venv.reset()
    vec = {0: [], 1: []}
    resets = {0: set(), 1: set()}
    for k, a in enumerate(_actions()):
        _, rewards, dones, infos = venv.step(a)
        for i in range(2):
            rl = infos[i]["rlrm"]
            vec[i].append((rewards[i], rl["progress"], rl["success_prob"], rl["success"], bool(dones[i])))
            if dones[i]:
                resets[i].add(k)
    venv.close()  # before anything else renders: rlrm's fast Fetch renderer misrenders with > 2 live Fetch envs
    return vec, resets, scorer


def test_sb3_vecenv_equals_single_envs(tiny_model):
    vec, resets, scorer = _run_sb3(tiny_model, camera=None)
    assert resets == {0: {2, 5}, 1: {3}}
    # episode steps by vector step, env0: 0 1 2f 0 1 2f ; env1: 0 1 2 3f 0 1 (queried: even steps, finals)
    # -> due per vector step [0,1] [] [0,1] [0,1] [1] [0]
    assert [len(b) for b in scorer.batches] == [2, 2, 2, 1, 1]
    # the terminal frame from infos[i]["terminal_observation"]["pixels"] gives the same rewards
    by_camera, _, _ = _run_sb3(tiny_model, camera="pixels")
    for i in range(2):
        np.testing.assert_allclose([v[:3] for v in by_camera[i]], [v[:3] for v in vec[i]], atol=1e-6)
    actions = _actions()
    # SB3 resets inside the step: replay with a reset right after each done
    for i in range(2):
        env = RobometerReward(fetch_env(max_episode_steps=EPISODE_STEPS[i]), TASK, tiny_model,
                              terminate_on_success=False, **KW)
        env.reset(seed=SEEDS[i])
        for k, a in enumerate(actions):
            _, reward, terminated, truncated, info = env.step(a[i])
            want = (reward, info["rlrm"]["progress"], info["rlrm"]["success_prob"])
            np.testing.assert_allclose(vec[i][k][:3], want, atol=1e-5)
            assert vec[i][k][3:] == (info["rlrm"]["success"], terminated or truncated)
            if terminated or truncated:
                env.reset()
        env.close()


def test_vector_misuse_is_explained(tiny_model):
    sb3 = DummyVecEnv([fetch_env])
    with pytest.raises(ValueError, match="wrapper_class=rlrm.wrappers.FrameInInfo"):
        RobometerSB3VecReward(sb3, TASK, tiny_model)
    with pytest.raises(TypeError, match="use rlrm.wrappers.RobometerSB3VecReward for a Stable-Baselines3 VecEnv"):
        RobometerVecReward(sb3, TASK, tiny_model)
    sb3.close()
    same_step = gym.vector.SyncVectorEnv([fetch_env], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    with pytest.raises(ValueError, match="supports autoreset_mode NEXT_STEP .* or DISABLED, got .*SAME_STEP"):
        RobometerVecReward(same_step, TASK, tiny_model)
    same_step.close()
    single = fetch_env()
    with pytest.raises(TypeError, match="use RobometerReward for a single env"):
        RobometerVecReward(single, TASK, tiny_model)
    single.close()
    venv = gym.vector.SyncVectorEnv([fetch_env])
    with pytest.raises(ValueError, match="one instruction or 1 \\(one per sub-env\\), got 2"):
        RobometerVecReward(venv, ["a", "b"], tiny_model)
    venv.close()


def test_sb3_vecenv_success_ends_the_episode_like_a_single_env(tiny_model):
    kw = dict(max_frames=4, every=1, success=SuccessDetector(threshold=0.0, window=2, min_votes=2))
    base = DummyVecEnv([lambda n=n: FrameInInfo(fetch_env(max_episode_steps=n)) for n in EPISODE_STEPS])
    base.seed(SEEDS[0])
    venv = RobometerSB3VecReward(base, TASK, tiny_model, terminate_on_success=True, **kw)
    first_obs = venv.reset()
    actions = _actions()[:4]
    got = []
    for a in actions:
        obs, rewards, dones, infos = venv.step(a)
        got.append((rewards.copy(), dones.copy()))
        if dones.any():
            done_infos = [infos[i] for i in np.flatnonzero(dones)]
    venv.close()
    # every fresh probability votes, so success (and the reset) comes on each episode's second step
    assert [d.tolist() for _, d in got] == [[False, False], [True, True], [False, False], [True, True]]
    assert all("terminal_observation" in info and info["rlrm"]["success"] for info in done_infos)
    assert first_obs["observation"].shape == obs["observation"].shape
    for i in range(2):
        env = RobometerReward(fetch_env(max_episode_steps=EPISODE_STEPS[i]), TASK, tiny_model,
                              terminate_on_success=True, **kw)
        env.reset(seed=SEEDS[i])
        for k, a in enumerate(actions):
            _, reward, terminated, truncated, _ = env.step(a[i])
            assert got[k][0][i] == pytest.approx(reward, abs=1e-5)
            assert got[k][1][i] == (terminated or truncated)
            if terminated or truncated:
                env.reset()
        env.close()
    with pytest.raises(ValueError, match="not possible on a gymnasium VectorEnv.*RobometerReward"):
        RobometerVecReward(gym.make_vec("CartPole-v1", num_envs=1, render_mode="rgb_array"), TASK, tiny_model,
                           terminate_on_success=True)
