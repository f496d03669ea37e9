"""PNG plots of a reward-model evaluation.

* :func:`plot_progress_curves` - predicted vs true progress (and success probability) per trajectory,
  one panel each, grouped by quality label.
* :func:`plot_confusion_matrix` - mean final progress per (task, instruction) as a heat map.
* :func:`plot_reliability` - reliability diagram of success probabilities (confidence vs frequency per bin).

Matplotlib runs on the non-interactive Agg backend; each function writes one PNG and returns its path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rlrm.evaluate.runner import TrajectoryScores

__all__ = ["plot_progress_curves", "plot_confusion_matrix", "plot_reliability"]

_COLOURS = {"success": "tab:green", "suboptimal": "tab:orange", "failure": "tab:red"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_progress_curves(
    scores: Sequence[TrajectoryScores], path: str | Path, max_panels: int = 24, title: str = ""
) -> Path:
    """Grid of panels (at most ``max_panels``, spread over quality labels): true progress (dashed),
    predicted progress (solid) and predicted success probability (dotted) against frame index."""
    if not scores:
        raise ValueError("no trajectory scores to plot")
    plt = _pyplot()
    by_quality: dict[str, list[TrajectoryScores]] = {}
    for s in scores:
        by_quality.setdefault(s.quality, []).append(s)
    per = max(1, max_panels // len(by_quality))
    chosen = [  # evenly spread over each group, so one kind of episode does not fill the grid
        group[int(i)]
        for group in by_quality.values()
        for i in np.unique(np.linspace(0, len(group) - 1, min(per, len(group))).round())
    ]
    cols = min(6, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.1 * rows), squeeze=False, sharey=True,
                             layout="constrained")
    for ax in axes.flat[len(chosen):]:
        ax.axis("off")
    for ax, s in zip(axes.flat, chosen, strict=False):
        colour = _COLOURS.get(s.quality, "tab:blue")
        ax.plot(s.frame_index, s.true_progress, "--", color="grey", lw=1, label="true progress")
        ax.plot(s.frame_index, s.progress, "-", color=colour, lw=1.6, label="predicted progress")
        ax.plot(s.frame_index, s.success, ":", color="black", lw=1.2, label="success prob")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"{s.quality}: {s.episode_id}"[:34], fontsize=7)
        ax.tick_params(labelsize=6)
    axes.flat[0].legend(fontsize=5, loc="upper left")
    fig.supxlabel("frame", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion_matrix(
    matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Heat map of ``matrix`` (rows = task ids, columns = instructions), values printed in cells."""
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (len(rows), len(cols)):
        raise ValueError(f"matrix shape {matrix.shape} does not match {len(rows)} rows x {len(cols)} columns")
    fig, ax = plt.subplots(figsize=(2.0 + 0.9 * len(cols), 2.2 + 0.6 * len(rows)), layout="constrained")
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), [c if len(c) < 40 else c[:37] + "..." for c in cols], rotation=35,
                  ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(len(rows)):
        for j in range(len(cols)):
            if np.isfinite(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] < 0.5 else "black")
    ax.set_xlabel("instruction", fontsize=8)
    ax.set_ylabel("episodes of task", fontsize=8)
    ax.set_title(title or "mean final progress", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reliability(curves: dict[str, dict], path: str | Path, title: str = "success reliability") -> Path:
    """Reliability diagram: per model (``curves``: name -> :func:`rlrm.evaluate.metrics.reliability` output)
    the mean success probability against the observed success frequency of each non-empty bin, with the
    diagonal of perfect calibration and each model's ECE in the legend."""
    if not curves:
        raise ValueError("no reliability data to plot")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="calibrated")
    for name, data in curves.items():
        pts = [(c, f, n) for c, f, n in zip(data["confidence"], data["frequency"], data["count"], strict=True)
               if n > 0]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{name} (ECE {data['ece']:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted success probability")
    ax.set_ylabel("fraction of true successes")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
