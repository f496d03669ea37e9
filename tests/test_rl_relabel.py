"""Asynchronous rewards: the labeler, the relabelling replay buffers, and equality with synchronous rewards."""

from __future__ import annotations

import concurrent.futures as cf
import pickle
import time

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import envs  # noqa: F401
from rlrm.rl.async_reward import AsyncRewardLabeler, AsyncRobometerReward
from rlrm.rl.relabel_buffer import RelabelingDictReplayBuffer, RelabelingReplayBuffer
from rlrm.shaping import Shaping, SuccessDetector
from rlrm.transport import LocalScorer
from rlrm.transport.worker_cli import SlowModel
from rlrm.types import RewardResult
from rlrm.wrappers import EpisodeReward, RobometerReward


def _done(progress, success):
    f = cf.Future()
    f.set_result([RewardResult(progress, success)])
    return f


class _Feed:
    """An :class:`AsyncRewardLabeler` fed by hand: one episode of blank frames, one planned query per step
    (step t sends frames 0..t+1, so its answer holds t + 2 values)."""

    def __init__(self, shaping=None, success=None, terminate_on_success=False):
        self.lab = AsyncRewardLabeler()
        self.ep = EpisodeReward("reach the target", max_frames=8, sampling="prefix", every=1,
                                shaping=shaping or Shaping(), success=success,
                                terminate_on_success=terminate_on_success)
        self.ep.start(np.zeros((4, 4, 3), np.uint8))

    def submit(self, future, env_reward=0.0):
        self.ep.add_frame(np.zeros((4, 4, 3), np.uint8))
        return self.lab.submit(self.ep, self.ep.plan(), future, env_reward)


def test_labeler_labels_in_step_order_with_delta_shaping_and_success_termination():
    feed = _Feed(Shaping(progress="delta", success_bonus=1.0), SuccessDetector(threshold=0.5, window=2, min_votes=2),
                 terminate_on_success=True)
    lab = feed.lab
    f1, f2, f3 = cf.Future(), cf.Future(), cf.Future()
    t1, t2, t3 = feed.submit(f1), feed.submit(f2), feed.submit(f3)
    f2.set_result([RewardResult([0.1, 0.2, 0.4], [0.0, 0.9, 0.9])])
    assert lab.poll() == []  # step 2 cannot be labelled before step 1 (it needs p_1)
    f1.set_result([RewardResult([0.1, 0.2], [0.0, 0.9])])
    labels = lab.poll()
    assert [x.ticket for x in labels] == [t1, t2]
    assert labels[0].reward == pytest.approx(0.1)  # p_0 - p_{-1}
    assert not labels[0].terminated
    assert labels[1].reward == pytest.approx(0.2 + 1.0)  # delta + bonus paid once on detection
    assert labels[1].terminated
    f3.set_result([RewardResult([0.1, 0.2, 0.4, 0.5], [0.0, 0.9, 0.9, 0.9])])
    (last,) = lab.poll()
    # the detection step ended the episode (as in RobometerReward); a later step is not another terminal
    assert last.ticket == t3 and last.reward == pytest.approx(0.1) and not last.terminated


def test_labeler_reraises_a_failed_request():
    feed = _Feed()
    f = cf.Future()
    f.set_exception(TimeoutError("worker gone"))
    feed.submit(f)
    with pytest.raises(TimeoutError, match="worker gone.*on_timeout='hold'"):
        feed.lab.poll()


def test_buffer_relabels_terminal_and_samples_only_labelled():
    feed = _Feed(Shaping(progress="delta", success_bonus=1.0), SuccessDetector(threshold=0.5, window=1, min_votes=1),
                 terminate_on_success=True)
    buf = RelabelingReplayBuffer(16, spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (1,)), device="cpu",
                                 labeler=feed.lab, wait_timeout_s=5)
    futures = []
    for i in range(6):
        f = cf.Future()
        futures.append(f)
        ticket = feed.submit(f)
        o = np.full((1, 2), i, np.float32)
        buf.add(o, o, np.zeros((1, 1)), np.array([np.nan]), np.zeros(1), [{"rlrm_ticket": ticket,
                                                                            "TimeLimit.truncated": True}])
    assert buf.num_pending == 6 and buf.num_labelled == 0
    futures[0].set_result([RewardResult([0.0, 0.3], [0.0, 0.1])])
    futures[1].set_result([RewardResult([0.0, 0.3, 0.5], [0.0, 0.1, 0.9])])
    for _ in range(20):
        batch = buf.sample(32)
        assert np.isfinite(batch.rewards.numpy()).all()
        assert set(np.unique(batch.observations.numpy()[:, 0])) <= {0.0, 1.0}
    assert buf.num_labelled == 2 and buf.num_pending == 4
    assert buf.rewards[0, 0] == pytest.approx(0.3) and buf.rewards[1, 0] == pytest.approx(0.2 + 1.0)
    assert buf.dones[1, 0] == 1.0 and buf.timeouts[1, 0] == 0.0  # success is a true terminal
    with pytest.raises(TimeoutError, match="still unlabelled"):
        buf.flush(timeout_s=0.2)
    for t, f in enumerate(futures[2:], start=2):
        f.set_result([RewardResult([0.0] * (t + 1) + [0.5], [0.0] * (t + 1) + [0.9])])
    buf.flush()
    assert buf.num_pending == 0 and buf.num_labelled == 6


def test_buffer_pickles_without_its_labeler():
    space = spaces.Dict({"state": spaces.Box(-1, 1, (2,))})
    lab = AsyncRewardLabeler()
    buf = RelabelingDictReplayBuffer(8, space, spaces.Box(-1, 1, (1,)), device="cpu", labeler=lab)
    o = {"state": np.zeros((1, 2), np.float32)}
    buf.add(o, o, np.zeros((1, 1)), np.ones(1), np.zeros(1), [{}])
    clone = pickle.loads(pickle.dumps(buf))
    assert clone.labeler is None and clone.size() == 1 and clone.num_labelled == 1


@pytest.fixture
def one_torch_thread():
    """Two-core CI boxes: one intra-op thread is several times faster than oversubscribing."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fetch(max_steps: int = 8):
    return gym.make("rlrm/FetchReach-v0", image_size=64, max_episode_steps=max_steps)


def test_async_relabelled_rewards_equal_synchronous_rewards_and_sampling_never_sees_placeholders(
    tiny_model, one_torch_thread
):
    shaping = Shaping(progress="delta", success_bonus=1.0, step_cost=0.01)
    detector = SuccessDetector(threshold=0.65, window=2, min_votes=2)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(16, 4)).astype(np.float32)

    sync_env = RobometerReward(_fetch(), None, LocalScorer(tiny_model), shaping=shaping, success=detector,
                               terminate_on_success=False)
    sync_rewards = []
    for ep in range(2):
        sync_env.reset(seed=ep)
        for a in actions[ep * 8:(ep + 1) * 8]:
            _, r, _, _, _ = sync_env.step(a)
            sync_rewards.append(r)

    # the same real model, made slow so that labels are really outstanding while we sample
    slow = LocalScorer(SlowModel(tiny_model, delay_ms=30))
    env = AsyncRobometerReward(_fetch(), None, slow, shaping=shaping, success=detector,
                               terminate_on_success=False, placeholder=float("nan"))
    buf = RelabelingDictReplayBuffer(64, env.observation_space, env.action_space, device="cpu",
                                     labeler=env.labeler, wait_timeout_s=60)
    saw_pending = False
    for ep in range(2):
        obs, _ = env.reset(seed=ep)
        for a in actions[ep * 8:(ep + 1) * 8]:
            nxt, r, term, trunc, info = env.step(a)
            assert np.isnan(r)  # the env loop only ever sees the placeholder
            as_batch = {k: v[None] for k, v in obs.items()}
            buf.add(as_batch, {k: v[None] for k, v in nxt.items()}, a[None], np.array([r]),
                    np.array([term or trunc]), [info])
            saw_pending |= buf.num_pending > 0
            batch = buf.sample(16)
            assert np.isfinite(batch.rewards.numpy()).all(), "sampled a transition whose reward is unknown"
            obs = nxt
    assert saw_pending, "the slow model never left a transition unlabelled; the test proves nothing"
    buf.flush()
    np.testing.assert_allclose(buf.rewards[:16, 0], np.array(sync_rewards, np.float32), atol=1e-5)
    sync_env.close()
    env.close()
    slow.close()


def test_wait_blocks_until_a_label_arrives():
    feed = _Feed()
    lab = feed.lab
    pool = cf.ThreadPoolExecutor(1)

    def later():
        time.sleep(0.05)
        return [RewardResult([0.0, 0.5], [0.0, 0.0])]

    feed.submit(pool.submit(later))
    labels = lab.wait(timeout_s=5)
    assert len(labels) == 1 and labels[0].reward == pytest.approx(0.5)
    pool.shutdown()
