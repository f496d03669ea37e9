"""Learning-curve plots shared by the experiment scripts.

* :func:`draw_runs` - one condition's runs on an axis: the mean curve over seeds, a min-max band, and the
  final evaluations as dots just right of the last step.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def draw_runs(ax: Any, runs: list[dict], color: str, label: str, start: list[dict] | None = None) -> None:
    """Plot ``runs`` (each with ``curve`` points, ``eval_success_rate`` and ``env_steps``) of one condition.

    ``start``: one extra first point per run (e.g. the base policy at step 0), in the order of ``runs``.
    """
    pairs = zip(runs, start or [None] * len(runs), strict=False)
    curves = [([first] if first else []) + r["curve"] for r, first in pairs if r.get("curve")]
    if curves:
        n = min(len(c) for c in curves)
        steps = np.array([p["env_steps"] for p in curves[0][:n]])
        values = np.array([[p["success_rate"] for p in c[:n]] for c in curves])
        ax.plot(steps, values.mean(axis=0), color=color, label=label, lw=2)
        ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=color, alpha=0.18)
    finals = [r["eval_success_rate"] for r in runs]
    if finals:
        ax.scatter([runs[0]["env_steps"] * 1.01] * len(finals), finals, color=color, edgecolor="black", zorder=3, s=22)
