"""Synthetic camera frames for simulated backends (no renderer needed, a few hundred microseconds).

* :func:`draw_tabletop` - a top view of the workspace: table, a red cube, a blue bowl, and the
  end effector as a disc whose size grows with height and whose ring shows the gripper opening.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["draw_tabletop"]


def draw_tabletop(position, gripper: float, low, high, size: int = 128) -> np.ndarray:
    """Top view (size, size, 3) uint8 RGB of the workspace box ``low..high`` (m) with the end effector.

    >>> draw_tabletop([0.45, 0.0, 0.2], 1.0, [0.3, -0.2, 0.0], [0.6, 0.2, 0.4]).shape
    (128, 128, 3)
    """
    low, high = np.asarray(low, float), np.asarray(high, float)
    img = np.full((size, size, 3), (150, 120, 90), np.uint8)  # table

    def to_px(x: float, y: float) -> tuple[int, int]:
        u = (y - low[1]) / (high[1] - low[1])
        v = (x - low[0]) / (high[0] - low[0])
        return int(np.clip(u, 0, 1) * (size - 1)), int(np.clip(1 - v, 0, 1) * (size - 1))

    mid = (low + high) / 2
    cx, cy = to_px(mid[0], mid[1] - 0.25 * (high[1] - low[1]))
    cv2.rectangle(img, (cx - 6, cy - 6), (cx + 6, cy + 6), (200, 30, 30), -1)  # cube
    bx, by = to_px(mid[0], mid[1] + 0.25 * (high[1] - low[1]))
    cv2.circle(img, (bx, by), 11, (40, 60, 200), 3)  # bowl
    px, py = to_px(position[0], position[1])
    h = float(np.clip((position[2] - low[2]) / (high[2] - low[2]), 0, 1))
    radius = int(4 + 8 * h)
    cv2.circle(img, (px, py), radius, (230, 230, 230), -1)
    cv2.circle(img, (px, py), radius + 2 + int(4 * np.clip(gripper, 0, 1)), (30, 30, 30), 1)
    return img
