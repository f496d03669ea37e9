"""Shared pieces of the wrapper tests: a scorer that records what it was sent, small real envs."""

from __future__ import annotations

import gymnasium as gym

from rlrm.transport import LocalScorer

TASK = "move the gripper to the red target"


class RecordingScorer:
    """A real LocalScorer around the tiny model that also keeps every batch it was asked to score."""

    def __init__(self, model):
        self.inner = LocalScorer(model)
        self.batches = []

    def score(self, queries):
        self.batches.append(list(queries))
        return self.inner.score(queries)

    def score_async(self, queries):
        self.batches.append(list(queries))
        return self.inner.score_async(queries)

    def info(self):
        return self.inner.info()

    def close(self):
        self.inner.close()


def fetch_env(**kwargs):
    """gymnasium-robotics FetchReach (v4 dynamics) via rlrm's adapter, 48 px frames."""
    import envs  # noqa: F401 - registers rlrm/FetchReach-v0

    return gym.make("rlrm/FetchReach-v0", image_size=48, **kwargs)


def cartpole_env(max_episode_steps=None):
    """Classic-control CartPole rendering 400x600 rgb_array frames."""
    return gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=max_episode_steps)
