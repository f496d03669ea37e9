"""Which frames of an episode a reward query sends.

* :func:`sample_indices` - indices into an episode of ``num_frames`` frames, at most ``max_frames``:
  ``"prefix"`` (first, current and a linspace between; the published dense-reward recipe) or
  ``"window"`` (the last ``max_frames``).
* :data:`SAMPLING_MODES` - the accepted mode names.

The wrappers (``rlrm.wrappers``) and ``rlrm score`` both pick frames here, so a reward
computed online and one computed offline from a recorded video see the same frames.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample_indices", "SAMPLING_MODES"]

SAMPLING_MODES = ("prefix", "window")


def sample_indices(num_frames: int, max_frames: int, mode: str = "prefix") -> np.ndarray:
    """Indices (sorted, unique, int64) of the frames to send for an episode of ``num_frames`` frames.

    Args:
        num_frames: frames in the episode so far (the reset frame counts), >= 1.
        max_frames: most frames one query may hold, >= 1 (>= 2 for ``"prefix"``).
        mode: ``"prefix"``: frame 0, the current frame ``num_frames - 1`` and a rounded
            ``np.linspace`` between them, deduplicated; every frame while ``num_frames <=
            max_frames``. ``"window"``: the last ``max_frames`` frames.

    >>> sample_indices(20, 8).tolist()
    [0, 3, 5, 8, 11, 14, 16, 19]
    >>> sample_indices(20, 8, mode="window").tolist()
    [12, 13, 14, 15, 16, 17, 18, 19]
    >>> sample_indices(3, 8).tolist()
    [0, 1, 2]
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be an int >= 1 (the reset frame counts), got {num_frames!r}")
    if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) or max_frames < 1:
        raise ValueError(f"max_frames must be an int >= 1, got {max_frames!r}")
    num_frames, max_frames = int(num_frames), int(max_frames)
    if mode == "prefix":
        if max_frames < 2:
            raise ValueError(
                f"sampling='prefix' keeps the first and the current frame, so max_frames must be >= 2, "
                f"got {max_frames}; use sampling='window' to send only the current frame"
            )
        if num_frames <= max_frames:
            return np.arange(num_frames, dtype=np.int64)
        picked = np.rint(np.linspace(0, num_frames - 1, max_frames)).astype(np.int64)
        return np.unique(picked)
    if mode == "window":
        return np.arange(max(0, num_frames - max_frames), num_frames, dtype=np.int64)
    raise ValueError(f"sampling mode must be one of {SAMPLING_MODES}, got {mode!r}")
