"""Re-scoring stored transitions with a newer reward-model version (real FetchReach, the tiny Qwen3-VL).

Transitions stored in the relabelling replay buffer while version 0 served get, after version 1 is
swapped in and the re-scorer runs, exactly the rewards a run with version 1 would have got for the same
episodes, and the buffer records version 1 behind them.
"""

import numpy as np
import pytest
from wrappers_support import fetch_env

from rlrm.rl.episodes import EPISODE_KEY, EpisodeCollector
from rlrm.rl.relabel_buffer import relabeling_buffer_class
from rlrm.rl.rescoring import Rescorer, rescore_episode
from rlrm.transport import LocalScorer
from rlrm.wrappers import RobometerReward

STEPS = 5


@pytest.fixture(scope="module")
def tiny_v1():
    from rlrm.models import make_reward_model

    return make_reward_model("tiny", seed=1)


def rollout(scorer, episodes, sinks=(), buffer=None, seed=0):
    """Run ``episodes`` FetchReach episodes with fixed actions; return every step's reward."""
    env = EpisodeCollector(RobometerReward(fetch_env(max_episode_steps=STEPS), None, scorer), sinks=sinks)
    rng = np.random.default_rng(seed)
    rewards = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done = False
        while not done:
            action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            next_obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            rewards.append(reward)
            if buffer is not None:
                buffer.add({k: v[None] for k, v in obs.items()}, {k: v[None] for k, v in next_obs.items()},
                           action[None], np.array([reward]), np.array([done]), [info])
            obs = next_obs
    return env, np.array(rewards, np.float32)


def test_relabelled_transitions_get_the_new_versions_rewards(tiny_model, tiny_v1):
    scorer = LocalScorer(tiny_model)
    env, _ = rollout(scorer, 1)
    buffer_cls = relabeling_buffer_class(env.observation_space)
    buffer = buffer_cls(64, env.observation_space, env.action_space, device="cpu")
    env.close()
    rescorer = Rescorer(scorer, None)
    env, old = rollout(scorer, 2, sinks=[rescorer.add_episode], buffer=buffer)
    rescorer.template = env.get_wrapper_attr("episode_reward")
    n = 2 * STEPS
    assert buffer.version_counts() == {0: n}
    assert buffer.episode_steps[:n].reshape(n, 2).tolist() == [[e, s] for e in range(2) for s in range(STEPS)]
    assert rescorer.step() == 0  # nothing newer is served yet
    scorer.swap(tiny_v1, 1)
    buffer.attach_rescorer(rescorer)
    assert rescorer.step() == 2
    assert buffer.apply_rescored() == n
    # what a run scored by version 1 from the start gets for the same episodes
    _, expected = rollout(LocalScorer(tiny_v1), 2)
    assert not np.allclose(old, expected)  # the versions disagree, so the test can tell them apart
    np.testing.assert_allclose(buffer.rewards[:n, 0], expected, atol=1e-5)
    assert buffer.version_counts() == {1: n}
    assert buffer.apply_rescored() == 0  # nothing new
    env.close()


def test_rescore_gives_up_on_mixed_versions(tiny_model, tiny_v1):
    """A swap between two calls of one episode's re-scoring: the episode is retried, never half-new."""

    class SwapMidway(LocalScorer):
        calls = 0

        def _score(self, queries, timeout_ms):
            self.calls += 1
            if self.calls == 2:
                self.swap(tiny_v1, 1)
            return super()._score(queries, timeout_ms)

    records = []
    env, _ = rollout(LocalScorer(tiny_model), 1, sinks=[records.append])
    scorer = SwapMidway(tiny_model)
    assert rescore_episode(env.get_wrapper_attr("episode_reward"), records[0], scorer, max_batch=2) is None
    again = rescore_episode(env.get_wrapper_attr("episode_reward"), records[0], scorer, max_batch=2)
    assert again is not None and again.version == 1
    env.close()


def test_collector_marks_steps_and_needs_a_reward_wrapper(tiny_model):
    records = []
    env, _ = rollout(LocalScorer(tiny_model), 2, sinks=[records.append])
    assert [r.key for r in records] == [0, 1]
    assert records[0].frames.shape[0] == STEPS + 1 and records[0].env_success is not None
    assert records[0].versions.tolist() == [0] * STEPS
    env.close()
    with pytest.raises(ValueError, match="must sit on top of a reward wrapper"):
        EpisodeCollector(fetch_env(max_episode_steps=STEPS))
    assert EPISODE_KEY == "rlrm_episode"
