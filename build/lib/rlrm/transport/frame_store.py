"""The worker's store of streamed frames: each frame of an episode is uploaded once and named afterwards.

* :class:`StoredFrame` - one stored frame: a worker-unique id (the key of its cached vision
  features), the frame (or the Future decoding it) and its size.
* :class:`FrameStore` - frames by (episode, frame index), bounded by bytes (least recently used
  frames go first) and by idle time per episode; counts uploads, evictions and misses.

Single-threaded by design: the worker's socket thread is its only user, so a request's uploads
and lookups happen in the order the client sent them. A query holds its :class:`StoredFrame`
objects, so eviction never pulls a frame from under a queued query; only new queries miss it.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["StoredFrame", "FrameStore"]

log = logging.getLogger(__name__)

# one sequence for the whole process: uids key vision features in the model's cache, and two
# workers (or a restarted one) serving the same model object must never hand out the same uid
_UIDS = itertools.count(1)


@dataclass(frozen=True)
class StoredFrame:
    """One frame held for an episode.

    Args:
        uid: unique within the process; a re-upload with other pixels gets a new one.
        frame: (H, W, 3) uint8, or a Future of it while its JPEG decodes.
        hw: (H, W).
    """

    uid: int
    frame: np.ndarray | Future
    hw: tuple[int, int]

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded frame."""
        return self.hw[0] * self.hw[1] * 3

    @property
    def failed(self) -> bool:
        """True if its JPEG did not decode."""
        return isinstance(self.frame, Future) and self.frame.done() and self.frame.exception() is not None

    @property
    def ready(self) -> bool:
        """True once the frame is available without waiting."""
        return not isinstance(self.frame, Future) or self.frame.done()

    def array(self) -> np.ndarray:
        """The (H, W, 3) frame, waiting for its decode if needed (re-raises a decode error)."""
        return self.frame.result() if isinstance(self.frame, Future) else self.frame


@dataclass
class _Episode:
    indices: set[int] = field(default_factory=set)
    last_used: float = 0.0


class FrameStore:
    """Frames of streamed episodes, keyed by (episode, frame index).

    Args:
        max_bytes: the most the stored frames may hold together; storing past it evicts the
            least recently used frames first (frames of finished episodes drift there).
        idle_s: an episode untouched this long is dropped whole.
        on_evict: called with the uids of frames that left the store (to drop their vision features).

    >>> store = FrameStore(max_bytes=2 * 4 * 4 * 3)
    >>> a = store.put("ep", 0, np.zeros((4, 4, 3), np.uint8), now=0.0)
    >>> found, missing = store.lookup("ep", [0, 1], now=1.0)
    >>> missing
    [1]
    """

    def __init__(
        self, max_bytes: int = 512 * 2**20, idle_s: float = 600.0, on_evict: Callable[[list[int]], Any] | None = None
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        if idle_s <= 0:
            raise ValueError(f"idle_s must be > 0, got {idle_s}")
        self.max_bytes = int(max_bytes)
        self.idle_s = float(idle_s)
        self.on_evict = on_evict
        self._frames: OrderedDict[tuple[str, int], StoredFrame] = OrderedDict()  # least recently used first
        self._episodes: OrderedDict[str, _Episode] = OrderedDict()  # least recently used first
        self.nbytes = 0
        self.counts = {
            "uploads": 0,  # frames stored
            "reuploads": 0,  # an identical frame sent again (kept, with its vision features)
            "not_stored": 0,  # a single frame larger than max_bytes: used by its query, not kept
            "evicted_frames": 0,  # pushed out by the byte cap (least recently used)
            "expired_episodes": 0,  # dropped whole after idle_s
            "expired_frames": 0,
            "missing_lookups": 0,  # lookups that named frames not held (answered unknown_episode)
        }
        self.peak_bytes = 0

    # ---------------------------------------------------------------- queries

    def lookup(self, episode: str, indices: Sequence[int], now: float) -> tuple[list[StoredFrame | None], list[int]]:
        """The stored frames at ``indices`` of ``episode`` (None where missing) and the missing indices.

        Found frames count as used (they move to the back of the eviction order).
        """
        found: list[StoredFrame | None] = []
        missing: list[int] = []
        for index in indices:
            key = (episode, int(index))
            stored = self._frames.get(key)
            if stored is not None and stored.failed:  # its JPEG was bad: as good as never uploaded
                self._drop(key, "evicted_frames")
                stored = None
            if stored is None:
                missing.append(int(index))
            else:
                self._frames.move_to_end(key)
            found.append(stored)
        if missing:
            self.counts["missing_lookups"] += 1
        ep = self._episodes.get(episode)
        if ep is not None:
            ep.last_used = now
            self._episodes.move_to_end(episode)
        return found, missing

    def put(self, episode: str, index: int, frame: np.ndarray | Future, hw: tuple[int, int], now: float) -> StoredFrame:
        """Store ``frame`` (or the Future decoding it) as frame ``index`` of ``episode``; returns its :class:`StoredFrame`.

        An identical raw frame already stored there is kept (with its uid, so its vision features
        stay valid). Room is made first by evicting the least recently used frames; a frame larger
        than ``max_bytes`` is returned without being stored.
        """
        key = (episode, int(index))
        old = self._frames.get(key)
        if (
            old is not None
            and isinstance(old.frame, np.ndarray)
            and isinstance(frame, np.ndarray)
            and np.array_equal(old.frame, frame)
        ):
            self._frames.move_to_end(key)
            self._touch(episode, now)
            self.counts["reuploads"] += 1
            return old
        stored = StoredFrame(next(_UIDS), frame, (int(hw[0]), int(hw[1])))
        evicted: list[int] = []
        if old is not None:
            evicted.append(self._remove(key))
        if stored.nbytes > self.max_bytes:
            self.counts["not_stored"] += 1
            self._notify(evicted)
            return stored
        while self.nbytes + stored.nbytes > self.max_bytes and self._frames:
            lru_key = next(iter(self._frames))
            evicted.append(self._remove(lru_key))
            self.counts["evicted_frames"] += 1
        self._frames[key] = stored
        self.nbytes += stored.nbytes
        self.peak_bytes = max(self.peak_bytes, self.nbytes)
        self._touch(episode, now).indices.add(key[1])
        self.counts["uploads"] += 1
        self._notify(evicted)
        return stored

    def expire(self, now: float) -> None:
        """Drop every episode untouched for ``idle_s``."""
        evicted: list[int] = []
        while self._episodes:
            episode, ep = next(iter(self._episodes.items()))
            if now - ep.last_used < self.idle_s:
                break
            for index in list(ep.indices):
                evicted.append(self._remove((episode, index)))
                self.counts["expired_frames"] += 1
            self._episodes.pop(episode, None)
            self.counts["expired_episodes"] += 1
        self._notify(evicted)

    def clear(self) -> None:
        """Drop every frame (e.g. when the worker stops), telling ``on_evict``."""
        uids = [stored.uid for stored in self._frames.values()]
        self._frames.clear()
        self._episodes.clear()
        self.nbytes = 0
        self._notify(uids)

    def stats(self) -> dict[str, Any]:
        """Episodes, frames, bytes (now, peak, cap), idle timeout and the counters."""
        return {
            "episodes": len(self._episodes),
            "frames": len(self._frames),
            "bytes": self.nbytes,
            "peak_bytes": self.peak_bytes,
            "max_bytes": self.max_bytes,
            "idle_s": self.idle_s,
            **self.counts,
        }

    # ---------------------------------------------------------------- internals

    def _touch(self, episode: str, now: float) -> _Episode:
        ep = self._episodes.get(episode)
        if ep is None:
            ep = self._episodes[episode] = _Episode()
        else:
            self._episodes.move_to_end(episode)
        ep.last_used = now
        return ep

    def _remove(self, key: tuple[str, int]) -> int:
        stored = self._frames.pop(key)
        self.nbytes -= stored.nbytes
        ep = self._episodes.get(key[0])
        if ep is not None:
            ep.indices.discard(key[1])
            if not ep.indices:
                del self._episodes[key[0]]
        return stored.uid

    def _drop(self, key: tuple[str, int], counter: str) -> None:
        self._notify([self._remove(key)])
        self.counts[counter] += 1

    def _notify(self, uids: list[int]) -> None:
        if uids and self.on_evict is not None:
            try:
                self.on_evict(uids)
            except Exception:  # the store must stay consistent whatever the callback does
                log.exception("frame store on_evict callback failed for %d frames", len(uids))
