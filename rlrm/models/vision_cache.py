"""Vision-tower outputs of stored frames, kept so later queries of an episode skip the vision tower.

* :class:`VisionFeatures` - one frame's vision outputs: the merged image embeddings (tokens, H) and
  Qwen3-VL's deepstack features (one (tokens, H) tensor per deepstack layer).
* :class:`VisionFeatureCache` - a byte-bounded LRU of :class:`VisionFeatures` keyed by a frame key
  (the reward worker uses the frame store's id of each stored frame), thread-safe.

The Qwen3-VL vision tower sees each image on its own (attention within an image, per-image
position embeddings), so an image's outputs do not depend on the other images of its batch:
reusing them is exact. :meth:`rlrm.models.robometer.RobometerModel.score` reads and fills the
cache when called with ``feature_keys``.

>>> cache = VisionFeatureCache(max_bytes=1 << 20)
>>> cache.get(7) is None
True
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["VisionFeatures", "VisionFeatureCache"]


@dataclass(frozen=True)
class VisionFeatures:
    """One frame's vision-tower outputs.

    Args:
        embeds: (tokens, hidden) merged image embeddings that replace the frame's ``<|image_pad|>`` tokens.
        deepstack: per deepstack layer, (tokens, hidden) features added to the text model's early layers.
        grid: (t, h, w) patch grid of the frame (a frame stored under a key always has one size).
    """

    embeds: Any
    deepstack: tuple[Any, ...]
    grid: tuple[int, int, int]

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors."""
        return sum(t.numel() * t.element_size() for t in (self.embeds, *self.deepstack))


class VisionFeatureCache:
    """Byte-bounded LRU of per-frame :class:`VisionFeatures`; counts hits, misses and evictions.

    Args:
        max_bytes: the most the cached tensors may hold together; the least recently used go first.
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[Hashable, VisionFeatures] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> VisionFeatures | None:
        """The features stored under ``key`` (counted as a hit), or None (a miss)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: Hashable, features: VisionFeatures) -> None:
        """Store ``features`` under ``key``, evicting the least recently used entries past ``max_bytes``."""
        size = features.nbytes
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            if size > self.max_bytes:
                return
            self._entries[key] = features
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self.nbytes -= dropped.nbytes
                self.evicted += 1

    def forget_where(self, holds: Callable[[Hashable], bool]) -> None:
        """Drop the entries whose key satisfies ``holds`` (e.g. frame pairs that contain a forgotten frame)."""
        with self._lock:
            for key in [k for k in self._entries if holds(k)]:
                self.nbytes -= self._entries.pop(key).nbytes

    def forget(self, keys: Iterable[Hashable]) -> None:
        """Drop the entries of ``keys`` (frames the worker no longer stores); unknown keys are ignored."""
        with self._lock:
            for key in keys:
                old = self._entries.pop(key, None)
                if old is not None:
                    self.nbytes -= old.nbytes

    def clear(self) -> None:
        """Drop every entry (counters are kept)."""
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def stats(self) -> dict[str, int]:
        """Entries, bytes, the byte cap, hits, misses and evictions."""
        with self._lock:
            return {
                "frames": len(self._entries),
                "bytes": self.nbytes,
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
                "evicted": self.evicted,
            }
