"""The client's side of streaming (protocol v2): which frames of which episode the worker already holds.

* :class:`EpisodeUploads` - per episode key, the digest of each frame index uploaded; decides which
  frames of a query must go along, in the order requests are sent.

The record is a belief, not a guarantee: a worker may have evicted frames or restarted. It then
answers ``unknown_episode`` and the client forgets the episode and resends every frame of the
query. Digests make the belief safe: two callers that happen to share an episode id (or one
that re-sends an index with other pixels) never get each other's frames scored; the frame is
simply uploaded again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

__all__ = ["EpisodeUploads"]


class EpisodeUploads:
    """Digests of the frames uploaded per episode, for the episodes used most recently.

    Args:
        max_episodes: episodes remembered; older ones are forgotten (their frames are uploaded
            again if they are ever named).

    Not thread-safe: the client's I/O thread owns it, so its view follows the send order.

    >>> up = EpisodeUploads()
    >>> up.plan("ep", [0, 1], [(11, 4, 4), (12, 4, 4)])
    [0, 1]
    >>> up.plan("ep", [0, 1, 2], [(11, 4, 4), (12, 4, 4), (13, 4, 4)])
    [2]
    """

    def __init__(self, max_episodes: int = 4096) -> None:
        if max_episodes < 1:
            raise ValueError(f"max_episodes must be >= 1, got {max_episodes}")
        self.max_episodes = int(max_episodes)
        self._episodes: OrderedDict[str, dict[int, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._episodes)

    def plan(self, episode: str, frame_index: Sequence[int], digests: Sequence[Any]) -> list[int]:
        """Positions of the frames that must be uploaded with this query; records them as uploaded."""
        held = self._episodes.get(episode)
        if held is None:
            held = self._episodes[episode] = {}
            while len(self._episodes) > self.max_episodes:
                self._episodes.popitem(last=False)
        else:
            self._episodes.move_to_end(episode)
        positions = []
        for t, (index, digest) in enumerate(zip(frame_index, digests, strict=True)):
            index = int(index)
            if held.get(index) != digest:
                held[index] = digest
                positions.append(t)
        return positions

    def predict(self, episode: str, frame_index: Sequence[int], digests: Sequence[Any]) -> list[int]:
        """The positions :meth:`plan` would return now, without recording anything (a hint for other threads)."""
        held = self._episodes.get(episode) or {}
        return [t for t, (i, d) in enumerate(zip(frame_index, digests, strict=True)) if held.get(int(i)) != d]

    def forget(self, episode: str) -> None:
        """Forget everything about ``episode`` (the worker said it does not hold it)."""
        self._episodes.pop(episode, None)
