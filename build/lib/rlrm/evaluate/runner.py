"""Score a trajectory dataset with a reward model and compute its quality metrics.

* :class:`TrajectoryScores` - one trajectory's sent frame indices, true and predicted curves.
* :func:`score_dataset` - run a model (or any scorer) over every trajectory: ``"full"`` mode
  scores each episode once, subsampled to ``max_frames`` with the prefix rule; ``"dense"``
  mode scores every prefix o_0..o_t as the RL wrapper does and keeps frame t's outputs.
* :func:`instruction_confusion` - mean final progress of successful episodes of each task
  when given each instruction.
* :class:`EvalReport` / :func:`evaluate` - everything together: VOC, Kendall tau-a per task,
  success AUPRC / F1, the confusion matrix, and the per-trajectory records (JSON-ready).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rlrm.evaluate.metrics import (
    average_precision,
    binary_f1,
    confusion_matrix,
    kendall_tau_a_per_group,
    value_order_correlation,
)
from rlrm.sampling import sample_indices
from rlrm.train.data import QUALITY_LABELS, Trajectory
from rlrm.types import DescribedScorer, RewardQuery, Scorer

__all__ = ["TrajectoryScores", "score_dataset", "instruction_confusion", "EvalReport", "evaluate", "SCORE_MODES"]

log = logging.getLogger(__name__)

SCORE_MODES = ("full", "dense")


@dataclass
class TrajectoryScores:
    """Predictions for one trajectory at its sent frames.

    Args:
        episode_id / task / task_id / quality: from the trajectory.
        frame_index: (N,) indices of the scored frames in the episode.
        true_progress / true_success: (N,) labels at those frames.
        progress / success: (N,) model outputs at those frames.
    """

    episode_id: str
    task: str
    task_id: str
    quality: str
    frame_index: np.ndarray
    true_progress: np.ndarray
    true_success: np.ndarray
    progress: np.ndarray
    success: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists of rounded floats)."""
        d = asdict(self)
        for k in ("frame_index", "true_progress", "true_success", "progress", "success"):
            d[k] = [round(float(x), 4) for x in np.asarray(d[k]).tolist()]
        return d


def _batched(scorer: Scorer, queries: list[RewardQuery], batch_size: int, bar: Any = None) -> list[Any]:
    results = []
    for start in range(0, len(queries), batch_size):
        results += scorer.score(queries[start : start + batch_size])
        if bar is not None:
            bar.update(min(batch_size, len(queries) - start))
    return results


def score_dataset(
    scorer: DescribedScorer,
    trajectories: Sequence[Trajectory],
    mode: str = "full",
    max_frames: int | None = None,
    batch_size: int = 16,
    progress_bar: bool = True,
) -> list[TrajectoryScores]:
    """Score every trajectory with ``scorer.score`` (a RewardModel or any scorer).

    Args:
        mode: ``"full"`` (one query per episode, ``max_frames`` frames, prefix rule) or
            ``"dense"`` (one query per step, last frame kept: exactly what the RL wrapper sees).
        max_frames: frames per query; default ``scorer.info().max_frames``.
        batch_size: queries per ``score`` call.
    """
    if mode not in SCORE_MODES:
        raise ValueError(f"mode must be one of {SCORE_MODES}, got {mode!r}")
    max_frames = int(max_frames or scorer.info().max_frames)
    plans: list[tuple[Trajectory, np.ndarray, list[RewardQuery]]] = []
    for traj in trajectories:
        if mode == "full":
            idx = sample_indices(traj.num_frames, max_frames, "prefix")
            queries = [RewardQuery(traj.frames[idx], traj.task, traj.episode_id, idx)]
        else:
            idx = np.arange(traj.num_frames)
            queries = []
            for t in idx:
                sub = sample_indices(int(t) + 1, max_frames, "prefix")
                queries.append(RewardQuery(traj.frames[sub], traj.task, traj.episode_id, sub))
        plans.append((traj, idx, queries))
    flat = [q for _, _, qs in plans for q in qs]
    bar = None
    if progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(flat), desc=f"score ({mode})", unit="query", dynamic_ncols=True)
    try:
        results = _batched(scorer, flat, batch_size, bar)
    finally:
        if bar is not None:
            bar.close()
    out, k = [], 0
    for traj, idx, queries in plans:
        res = results[k : k + len(queries)]
        k += len(queries)
        if mode == "full":
            progress, success = res[0].progress, res[0].success
        else:
            progress = np.asarray([r.progress[-1] for r in res], np.float32)
            success = np.asarray([r.success[-1] for r in res], np.float32)
        out.append(
            TrajectoryScores(
                traj.episode_id, traj.task, traj.task_id, traj.quality, idx,
                traj.progress_targets()[idx], traj.success_labels()[idx], progress, success,
            )
        )
    return out


def instruction_confusion(
    scorer: DescribedScorer,
    trajectories: Sequence[Trajectory],
    instructions: dict[str, str] | None = None,
    extra_instructions: Sequence[str] = (),
    max_frames: int | None = None,
    batch_size: int = 16,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Mean final progress of the successful episodes of each task id (rows) under each instruction (columns).

    Args:
        instructions: task id -> the instruction that names it (default: each task id's first
            phrasing in the data); these are the first columns, in row order.
        extra_instructions: more columns (instructions of tasks with no episodes here).
    Returns:
        (matrix (rows, cols), row task ids, column instructions). A good model has a bright
        diagonal and a dark rest.
    """
    successes = [t for t in trajectories if t.quality == "success"]
    if not successes:
        raise ValueError("the confusion matrix needs successful episodes; the data has none")
    rows = sorted({t.task_id for t in successes})
    if instructions is None:
        instructions = {}
        for t in trajectories:
            instructions.setdefault(t.task_id, t.task)
    cols = [instructions[r] for r in rows if r in instructions] + [c for c in extra_instructions if c]
    cols = list(dict.fromkeys(cols))
    max_frames = int(max_frames or scorer.info().max_frames)
    queries, row_of, col_of = [], [], []
    for t in successes:
        idx = sample_indices(t.num_frames, max_frames, "prefix")
        for c in cols:
            queries.append(RewardQuery(t.frames[idx], c, t.episode_id))
            row_of.append(t.task_id)
            col_of.append(c)
    finals = [float(r.progress[-1]) for r in _batched(scorer, queries, batch_size)]
    return confusion_matrix(finals, row_of, col_of, rows, cols)


@dataclass
class EvalReport:
    """Metrics of a reward model on a dataset (see :func:`evaluate`)."""

    model: str
    mode: str
    num_trajectories: int
    voc: float
    voc_per_trajectory: dict[str, float]
    kendall_tau_a: dict[str, float]
    kendall_tau_a_mean: float
    success_auprc: float
    success_f1: float
    success_threshold: float
    final_success_f1: float
    final_progress_by_quality: dict[str, float]
    confusion: dict[str, Any] | None = None
    trajectories: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The headline numbers only (no per-trajectory records)."""
        d = asdict(self)
        d.pop("trajectories")
        d.pop("voc_per_trajectory")
        return d


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else x


def evaluate(
    scorer: DescribedScorer,
    trajectories: Sequence[Trajectory],
    mode: str = "full",
    max_frames: int | None = None,
    success_threshold: float = 0.5,
    confusion: bool = True,
    extra_instructions: Sequence[str] = (),
    batch_size: int = 16,
    progress_bar: bool = True,
) -> tuple[EvalReport, list[TrajectoryScores]]:
    """Score ``trajectories`` and compute every metric.

    * VOC: Pearson(predicted, true progress) per successful episode, averaged.
    * Kendall tau-a per task id: final predicted progress vs quality rank
      (failure < suboptimal < success), over that task's episodes.
    * Success AUPRC and F1 at ``success_threshold``: per scored frame vs the true per-frame
      success; ``final_success_f1`` uses only each episode's last frame.
    * Confusion matrix (``confusion=True``): :func:`instruction_confusion`.
    """
    scores = score_dataset(scorer, trajectories, mode, max_frames, batch_size, progress_bar)
    succ = [s for s in scores if s.quality == "success"]
    voc, per = value_order_correlation([s.progress for s in succ], [s.true_progress for s in succ])
    rank = {q: i for i, q in enumerate(QUALITY_LABELS)}
    taus = kendall_tau_a_per_group(
        [float(s.progress[-1]) for s in scores], [rank[s.quality] for s in scores], [s.task_id for s in scores]
    )
    frame_scores = np.concatenate([s.success for s in scores])
    frame_labels = np.concatenate([s.true_success for s in scores])
    finals = np.asarray([s.success[-1] for s in scores])
    final_labels = np.asarray([s.true_success[-1] for s in scores])
    by_quality = {
        q: float(np.mean([s.progress[-1] for s in scores if s.quality == q]))
        for q in QUALITY_LABELS
        if any(s.quality == q for s in scores)
    }
    conf = None
    if confusion:
        matrix, rows, cols = instruction_confusion(scorer, trajectories, None, extra_instructions, max_frames, batch_size)
        conf = {"rows": rows, "cols": cols, "matrix": [[_nan_to_none(float(v)) for v in r] for r in matrix]}
    name = scorer.info().name
    report = EvalReport(
        model=name,
        mode=mode,
        num_trajectories=len(scores),
        voc=_nan_to_none(voc),
        voc_per_trajectory={s.episode_id: _nan_to_none(v) for s, v in zip(succ, per, strict=True)},
        kendall_tau_a=taus,
        kendall_tau_a_mean=_nan_to_none(float(np.mean(list(taus.values()))) if taus else float("nan")),
        success_auprc=_nan_to_none(average_precision(frame_scores, frame_labels)),
        success_f1=binary_f1(frame_scores, frame_labels, success_threshold),
        success_threshold=success_threshold,
        final_success_f1=binary_f1(finals, final_labels, success_threshold),
        final_progress_by_quality=by_quality,
        confusion=conf,
        trajectories=[s.to_dict() for s in scores],
    )
    return report, scores
