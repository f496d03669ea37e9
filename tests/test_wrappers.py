"""RobometerReward and SuccessTermination on real envs (gymnasium-robotics Fetch, CartPole) with the tiny model."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import AddRenderObservation, TransformObservation
from wrappers_support import TASK, RecordingScorer, cartpole_env, fetch_env

from rlrm.sampling import sample_indices
from rlrm.shaping import Shaping, SuccessDetector
from rlrm.types import RewardQuery
from rlrm.wrappers import RobometerReward, SuccessTermination
from rlrm.wrappers.frames import check_frame


def _run(env, actions, seed=0):
    """Reset with ``seed``, take ``actions`` until the episode ends, close; returns per-step tuples.

    Envs are closed as soon as they are done with: rlrm's fast Fetch renderer returns wrong frames
    once more than two Fetch envs are alive in one process (reported to the envs owner).
    """
    env.reset(seed=seed)
    steps = []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        steps.append((reward, terminated, truncated, info))
        if terminated or truncated:
            break
    env.close()
    return steps


def test_check_env_passes_on_wrapped_envs(tiny_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # with default arguments: timings live in env.reward_stats, so two identical runs give equal infos
        env = RobometerReward(fetch_env(), TASK, tiny_model)
        check_env(env, skip_render_check=True)
        assert env.reward_stats.queries > 0 and env.reward_stats.last_latency_ms > 0
        env.close()
        env = RobometerReward(cartpole_env(), "balance the pole", tiny_model)
        check_env(env, skip_render_check=True)
        env.close()
        env = SuccessTermination(RobometerReward(cartpole_env(), "balance the pole", tiny_model, success=None))
        check_env(env, skip_render_check=True)
        env.close()


@pytest.mark.parametrize("sampling, max_frames, every", [("prefix", 4, 1), ("prefix", 4, 3), ("window", 3, 2),
                                                         ("window", 1, 1)])
def test_frames_sent_follow_the_sampling_rule(tiny_model, sampling, max_frames, every):
    scorer = RecordingScorer(tiny_model)
    env = RobometerReward(fetch_env(max_episode_steps=6), None, scorer, max_frames=max_frames,
                          sampling=sampling, every=every, success=None)
    assert env.task == TASK  # read from env.unwrapped.task
    env.reset(seed=1)
    rendered = [env.render()]
    rng = np.random.default_rng(0)
    batches_seen = 0
    for t in range(6):
        _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        rendered.append(env.render())
        final = terminated or truncated
        assert info["rlrm"]["queried"] == (t % every == 0 or final)
        if not info["rlrm"]["queried"]:
            assert info["rlrm"]["frames_sent"] == 0 and len(scorer.batches) == batches_seen
            continue
        batches_seen += 1
        batch = scorer.batches[-1]
        expected = sample_indices(t + 2, max_frames, sampling)
        assert info["rlrm"]["frame_index"] == expected.tolist()
        assert batch[0].frame_index.tolist() == expected.tolist()
        np.testing.assert_array_equal(batch[0].frames, np.stack(rendered)[expected])
        # the reset frame goes alone only while p_{-1} is unknown and the sampled frames miss it
        needs_reset_frame = batches_seen == 1 and expected[0] != 0
        assert len(batch) == (2 if needs_reset_frame else 1)
        if needs_reset_frame:
            np.testing.assert_array_equal(batch[1].frames, rendered[0][None])
    assert final and t == 5
    env.close()


def test_delta_rewards_sum_to_last_minus_reset_progress(tiny_model):
    shaping = Shaping(progress="delta", w_progress=1.0, success_bonus=0.0)
    env = RobometerReward(cartpole_env(max_episode_steps=7), "balance the pole", tiny_model, every=3,
                          shaping=shaping, success=None)
    env.reset(seed=3)
    frames = [env.render()]
    rewards, infos = [], []
    done = False
    while not done:
        _, r, terminated, truncated, info = env.step(env.action_space.sample())
        frames.append(env.render())
        rewards.append(r)
        infos.append(info["rlrm"])
        done = terminated or truncated
    last = infos[-1]
    assert last["queried"]  # the final step is always scored
    assert sum(rewards) == pytest.approx(last["progress"] - last["reset_progress"], abs=1e-6)
    # held steps pay no progress, and p_{-1} is the model's value for the reset frame alone
    assert all(r == 0.0 for r, i in zip(rewards, infos, strict=True) if not i["queried"])
    alone = tiny_model.score([RewardQuery(frames[0][None], "balance the pole")])[0]
    assert last["reset_progress"] == pytest.approx(float(alone.progress[0]), abs=1e-5)
    idx = sample_indices(len(frames), 8)
    full = tiny_model.score([RewardQuery(np.stack(frames)[idx], "balance the pole")])[0]
    assert last["progress"] == pytest.approx(float(full.progress[-1]), abs=1e-5)
    assert last["success_prob"] == pytest.approx(float(full.success[-1]), abs=1e-5)
    env.close()


def _success_run(env, n=3):
    return _run(env, [np.zeros(4, np.float32)] * n, seed=2)


def test_success_detection_terminates_once_with_bonus(tiny_model):
    detector = SuccessDetector(threshold=0.0, window=2, min_votes=2)  # every fresh probability votes
    shaping = Shaping(success_bonus=3.0)
    env = RobometerReward(fetch_env(), TASK, tiny_model, shaping=shaping, success=detector, terminate_on_success=True)
    steps = _success_run(env)
    assert [s[1] for s in steps] == [False, True]  # second fresh vote -> terminated
    assert [s[3]["rlrm"]["success"] for s in steps] == [False, True]
    assert [s[3]["rlrm"]["detector"]["votes"] for s in steps] == [1, 2]
    assert steps[1][3]["rlrm"]["reward_terms"]["success"] == 3.0
    assert not detector.detected  # the wrapper used its own copy

    # without termination the episode runs on, success stays set and the bonus is paid once
    env = RobometerReward(fetch_env(), TASK, tiny_model, shaping=shaping, success=detector,
                          terminate_on_success=False)
    steps = _success_run(env)
    assert len(steps) == 3 and not any(s[1] for s in steps)
    assert [s[3]["rlrm"]["success"] for s in steps] == [False, True, True]
    assert [s[3]["rlrm"]["reward_terms"]["success"] for s in steps] == [0.0, 3.0, 0.0]


def test_success_termination_on_top_equals_built_in_detection(tiny_model):
    detector = SuccessDetector(threshold=0.0, window=2, min_votes=2)
    built_in = _success_run(RobometerReward(fetch_env(), TASK, tiny_model, shaping=Shaping(success_bonus=3.0),
                                            success=detector, terminate_on_success=True))
    stacked_env = SuccessTermination(RobometerReward(fetch_env(), TASK, tiny_model, success=None),
                                     detector=detector, bonus=3.0)
    stacked = _success_run(stacked_env)
    assert [s[1] for s in stacked] == [s[1] for s in built_in]
    np.testing.assert_allclose([s[0] for s in stacked], [s[0] for s in built_in], atol=1e-6)
    assert stacked[-1][3]["rlrm"]["success"] and stacked[-1][3]["rlrm"]["detector"]["votes"] == 2


def test_success_termination_misuse_is_explained(tiny_model):
    env = SuccessTermination(cartpole_env())
    env.reset(seed=0)
    with pytest.raises(KeyError, match="needs info\\['rlrm'\\]\\['success_prob'\\].*RobometerReward"):
        env.step(0)
    inner = RobometerReward(cartpole_env(), "balance the pole", tiny_model)
    with pytest.raises(ValueError, match="RobometerReward below already detects success.*success=None"):
        SuccessTermination(inner)  # refused when built, not on the first step
    inner.close()


def test_camera_key_of_dict_observation_gives_the_same_rewards(tiny_model):
    actions = [np.full(4, 0.5, np.float32)] * 2
    by_render = _run(RobometerReward(fetch_env(), TASK, tiny_model), actions)
    pixels_env = AddRenderObservation(fetch_env(), render_only=False, render_key="pixels")
    by_camera = _run(RobometerReward(pixels_env, TASK, tiny_model, camera="pixels"), actions)
    np.testing.assert_allclose([s[0] for s in by_camera], [s[0] for s in by_render], atol=1e-6)

    env = RobometerReward(AddRenderObservation(fetch_env(), render_only=False), TASK, tiny_model, camera="wrist")
    with pytest.raises(KeyError, match="camera 'wrist' is neither an image key of the observation \\(keys: \\['pixels', 'observation', 'achieved_goal'.*render camera of FetchEnv \\(cameras: \\['default', 'front'"):
        env.reset(seed=0)
    env.close()


def test_render_none_says_to_pass_rgb_array(tiny_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = RobometerReward(gym.make("CartPole-v1"), "balance the pole", tiny_model)
        with pytest.raises(ValueError, match="render_mode='rgb_array'"):
            env.reset(seed=0)


def test_float_camera_image_is_refused_with_a_fix(tiny_model):
    base = AddRenderObservation(fetch_env(), render_only=False)
    as_float = TransformObservation(base, lambda o: {**o, "pixels": o["pixels"] / 255.0}, base.observation_space)
    env = RobometerReward(as_float, TASK, tiny_model, camera="pixels")
    with pytest.raises(ValueError, match=r"uint8 \(H,W,3\) image, got float64 \(48, 48, 3\).*np.clip"):
        env.reset(seed=0)
    env.close()


@pytest.mark.parametrize(
    "frame, message",
    [
        (np.full((32, 40, 3), 0.5), r"values in \[0, 1\]: use \(np.clip\(frame, 0, 1\) \* 255\)"),
        (np.full((32, 40, 3), 200.0, np.float32), r"values in 0..255: use np.clip\(frame, 0, 255\).astype"),
        (np.full((32, 40, 3), -2.0), r"values in \[-2, -2\], neither \[0, 1\] nor 0..255"),
        (np.zeros((3, 32, 40), np.uint8), r"channel-first.*transpose\(1, 2, 0\)"),
        (np.zeros((32, 40, 4), np.uint8), r"RGBA: use frame\[\.\.\., :3\]"),
        (np.zeros((32, 40), np.uint8), "grayscale"),
        (np.zeros((32, 40, 3), np.int64), r"astype\(np.uint8\)"),
        ([[0]], "numpy"),
    ],
)
def test_check_frame_hints(frame, message):
    with pytest.raises(ValueError, match=message):
        check_frame(frame, "env.render()")


def test_bad_wrapper_arguments_are_named(tiny_model):
    with pytest.raises(ValueError, match="on_timeout must be one of \\('raise', 'hold'\\), got 'skip'"):
        RobometerReward(cartpole_env(), "x", tiny_model, on_timeout="skip")
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        RobometerReward(cartpole_env(), "x", tiny_model, every=0)
    with pytest.raises(ValueError, match="task=None needs .*env.unwrapped.task"):
        RobometerReward(cartpole_env(), None, tiny_model)
    env = RobometerReward(cartpole_env(), "x", tiny_model)
    with pytest.raises(RuntimeError, match="before calling env.reset"):
        env.step(0)


# ----------------------------------------------------------------------------- through a real worker


@pytest.fixture(scope="module")
def slow_worker():
    """The tiny model (seed 0) served by `rlrm worker` on loopback, 300 ms per batch on purpose."""
    from rlrm.transport import spawn_worker

    with spawn_worker("tiny", seed=0, slow_ms=300) as worker:
        yield worker


def test_worker_url_gives_in_process_rewards(tiny_model, slow_worker):
    actions = [np.full(4, -0.3, np.float32)] * 3
    local = _run(RobometerReward(fetch_env(), TASK, tiny_model, success=None), actions)
    env = RobometerReward(fetch_env(), TASK, slow_worker.url, success=None, timing_in_info=True)
    remote = _run(env, actions)  # closes env
    np.testing.assert_allclose([s[0] for s in remote], [s[0] for s in local], atol=1e-5)
    np.testing.assert_allclose([s[3]["rlrm"]["progress"] for s in remote],
                               [s[3]["rlrm"]["progress"] for s in local], atol=1e-5)
    assert all(s[3]["rlrm"]["latency_ms"] > 0 and not s[3]["rlrm"]["stale"] for s in remote)
    assert env.scorer._closed  # the wrapper made the client from the URL, so it closes it


def test_worker_timeout_raises_or_holds(slow_worker):
    from rlrm.transport import RewardClient

    client = RewardClient(slow_worker.url, timeout_ms=50, retries=0)
    env = RobometerReward(fetch_env(), TASK, client, success=None)
    env.reset(seed=0)
    with pytest.raises(TimeoutError, match="on_timeout='hold'"):
        env.step(np.zeros(4, np.float32))
    env.close()

    env = RobometerReward(fetch_env(), TASK, client, shaping=Shaping(progress="delta"), success=None,
                          on_timeout="hold")
    env.reset(seed=0)
    client.timeout_ms = 20000
    _, r0, _, _, info0 = env.step(np.zeros(4, np.float32))
    assert not info0["rlrm"]["stale"] and math.isfinite(info0["rlrm"]["progress"])
    client.timeout_ms = 50
    _, r1, _, _, info1 = env.step(np.zeros(4, np.float32))
    assert info1["rlrm"]["stale"] and info1["rlrm"]["frame_index"] == [0, 1, 2]  # sent, but no answer in time
    assert info1["rlrm"]["progress"] == info0["rlrm"]["progress"]  # held
    assert r1 == 0.0  # delta of a held progress
    env.close()
    client.close()


@pytest.mark.parametrize("wrapper", ["sync", "async"])
def test_a_dead_worker_url_fails_at_construction_naming_the_url(wrapper):
    """Nothing listens at the URL: the wrapper says so when built, not 4 x 30 s into the first step()."""
    import socket

    from rlrm.wrappers import AsyncRobometerReward

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    cls = RobometerReward if wrapper == "sync" else AsyncRobometerReward
    with pytest.raises(TimeoutError, match=rf"no reward worker answered at {url} within 5 s: start one there "
                                           rf"\(rlrm worker --model MODEL --bind {url}\)"):
        cls(cartpole_env(), TASK, url)


class _WindowStandIn:
    """Stands in for MuJoCo's window on this display-less machine: counts the frames a person would see."""

    def __init__(self):
        self.shown = 0

    def render(self):
        self.shown += 1

    def make_context_current(self):
        pass

    def close(self):
        pass


def test_a_mujoco_env_watched_in_a_window_is_scored_from_an_offscreen_render_of_its_camera(tiny_model):
    """render_mode='human' (a person watches the viewer): the reward frames are the same camera rendered offscreen."""
    watched = gym.make("Pusher-v5", render_mode="human", width=96, height=96)
    window = _WindowStandIn()
    watched.unwrapped.mujoco_renderer._viewers["human"] = window
    scorer = RecordingScorer(tiny_model)
    env = RobometerReward(watched, "push the puck to the goal", scorer)
    plain = gym.make("Pusher-v5", render_mode="rgb_array", width=96, height=96)
    env.reset(seed=0)
    plain.reset(seed=0)
    action = np.full(watched.action_space.shape, 0.3, np.float32)
    env.step(action)
    plain.step(action)
    assert window.shown >= 2  # the window kept being drawn (reset and step)
    np.testing.assert_array_equal(watched.unwrapped.data.qpos, plain.unwrapped.data.qpos)  # the same state
    sent, expected = scorer.batches[-1][0].frames[-1].astype(int), plain.render().astype(int)
    assert sent.shape == expected.shape == (96, 96, 3)
    # the reward model saw what rgb_array mode renders (two GL contexts rasterise a few edge pixels differently)
    assert np.mean(sent != expected) < 0.01 and np.abs(sent - expected).mean() < 0.5
    env.close()
    plain.close()


def test_human_mode_without_an_offscreen_camera_names_camera(tiny_model):
    with pytest.raises(ValueError, match=r"render_mode='human'.*Pass camera=<an image key of the observation"):
        RobometerReward(gym.make("CartPole-v1", render_mode="human"), "balance the pole", tiny_model)
