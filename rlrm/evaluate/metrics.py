"""Reward-model quality metrics on plain numpy arrays.

* :func:`pearson` - Pearson correlation of two curves (0 when one is constant).
* :func:`value_order_correlation` - VOC: mean Pearson of predicted vs true progress over trajectories.
* :func:`kendall_tau_a` - Kendall's tau-a (ties count as neither concordant nor discordant).
* :func:`kendall_tau_a_per_group` - tau-a of final progress vs quality rank within each task.
* :func:`average_precision` - area under the precision-recall curve (step-wise, as scikit-learn's AP).
* :func:`binary_f1` - F1 of ``scores >= threshold`` against 0/1 labels.
* :func:`confusion_matrix` - mean of a value per (row label, column label) cell.
* :func:`mae_by_group` - mean absolute error per group and the mean over groups (RoboRewardBench's MAE).
* :func:`reliability` - calibration of success probabilities: per-bin confidence vs frequency, and the ECE.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

__all__ = [
    "pearson",
    "value_order_correlation",
    "kendall_tau_a",
    "kendall_tau_a_per_group",
    "average_precision",
    "binary_f1",
    "confusion_matrix",
    "mae_by_group",
    "reliability",
]


def _as_1d(name: str, x: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr}")
    return arr


def pearson(pred: Sequence[float], true: Sequence[float]) -> float:
    """Pearson correlation of ``pred`` and ``true`` (same length >= 2); 0.0 if either is constant."""
    x, y = _as_1d("pred", pred), _as_1d("true", true)
    if x.shape != y.shape or len(x) < 2:
        raise ValueError(f"pearson needs two curves of equal length >= 2, got {x.shape} and {y.shape}")
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def value_order_correlation(
    preds: Sequence[Sequence[float]], trues: Sequence[Sequence[float]]
) -> tuple[float, list[float]]:
    """Mean Pearson(pred, true) over trajectories and the per-trajectory values.

    Trajectories with fewer than 2 frames or a constant true curve are skipped (NaN in the
    list): the correlation is undefined there. Returns (nan, ...) when nothing is left.
    """
    if len(preds) != len(trues):
        raise ValueError(f"got {len(preds)} predicted and {len(trues)} true curves; expected equal counts")
    per = []
    for p, t in zip(preds, trues, strict=True):
        t = _as_1d("true", t)
        per.append(float("nan") if len(t) < 2 or np.ptp(t) == 0 else pearson(p, t))
    valid = [v for v in per if not np.isnan(v)]
    return (float(np.mean(valid)) if valid else float("nan")), per


def kendall_tau_a(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-a: (concordant - discordant pairs) / (n (n - 1) / 2); a tie in x or y adds 0.

    >>> kendall_tau_a([1, 2, 3], [1, 3, 2])
    0.3333333333333333
    """
    a, b = _as_1d("x", x), _as_1d("y", y)
    if a.shape != b.shape or len(a) < 2:
        raise ValueError(f"kendall_tau_a needs two sequences of equal length >= 2, got {a.shape} and {b.shape}")
    i, j = np.triu_indices(len(a), k=1)
    s = np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
    return float(s.sum() / len(i))


def kendall_tau_a_per_group(
    values: Sequence[float], ranks: Sequence[float], groups: Sequence[str]
) -> dict[str, float]:
    """tau-a of ``values`` vs ``ranks`` within each group with >= 2 members and >= 2 distinct ranks."""
    if not len(values) == len(ranks) == len(groups):
        raise ValueError(f"values, ranks and groups must have equal lengths, got {len(values)}, {len(ranks)}, {len(groups)}")
    members: dict[str, list[int]] = defaultdict(list)
    for k, g in enumerate(groups):
        members[g].append(k)
    v, r = np.asarray(values, float), np.asarray(ranks, float)
    return {
        g: kendall_tau_a(v[idx], r[idx])
        for g, idx in sorted(members.items())
        if len(idx) >= 2 and len(set(r[idx].tolist())) >= 2
    }


def _check_binary(scores: Sequence[float], labels: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    s, y = _as_1d("scores", scores), _as_1d("labels", labels)
    if s.shape != y.shape or len(s) == 0:
        raise ValueError(f"scores and labels must be non-empty and of equal length, got {s.shape} and {y.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"labels must be 0/1, got values {sorted(set(y.tolist()))[:5]}")
    return s, y


def average_precision(scores: Sequence[float], labels: Sequence[float]) -> float:
    """AP = sum_n (R_n - R_{n-1}) P_n over distinct score thresholds, high scores first (sklearn's rule).

    Returns nan when there is no positive label.
    """
    s, y = _check_binary(scores, labels)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    predicted = last_of_tie + 1
    precision, recall = tp / predicted, tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def binary_f1(scores: Sequence[float], labels: Sequence[float], threshold: float = 0.5) -> float:
    """F1 of the prediction ``scores >= threshold``; 0.0 when there are no true or predicted positives."""
    s, y = _check_binary(scores, labels)
    pred = s >= threshold
    tp = float(np.sum(pred & (y == 1)))
    denom = float(pred.sum() + y.sum())
    return 2 * tp / denom if denom > 0 else 0.0


def confusion_matrix(
    values: Sequence[float],
    rows: Sequence[str],
    cols: Sequence[str],
    row_order: Sequence[str] | None = None,
    col_order: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[str], list[str]]:
    """(matrix, row labels, column labels): the mean of ``values`` per (row, col) cell, nan where empty."""
    if not len(values) == len(rows) == len(cols):
        raise ValueError(f"values, rows and cols must have equal lengths, got {len(values)}, {len(rows)}, {len(cols)}")
    row_labels = list(row_order) if row_order is not None else sorted(set(rows))
    col_labels = list(col_order) if col_order is not None else sorted(set(cols))
    total = np.zeros((len(row_labels), len(col_labels)))
    count = np.zeros_like(total)
    ri = {r: i for i, r in enumerate(row_labels)}
    ci = {c: i for i, c in enumerate(col_labels)}
    for v, r, c in zip(values, rows, cols, strict=True):
        if r in ri and c in ci:
            total[ri[r], ci[c]] += v
            count[ri[r], ci[c]] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan), row_labels, col_labels


def mae_by_group(pred: Sequence[float], true: Sequence[float], groups: Sequence[str]) -> tuple[dict[str, float], float]:
    """Mean |pred - true| per group, and the mean over groups (each group counts once, however large).

    RoboRewardBench reports this on the 1-5 scale with its subsets as groups.

    >>> mae_by_group([1, 2, 5], [1, 4, 4], ["a", "a", "b"])
    ({'a': 1.0, 'b': 1.0}, 1.0)
    """
    x, y = _as_1d("pred", pred), _as_1d("true", true)
    if x.shape != y.shape or len(x) != len(groups) or len(x) == 0:
        raise ValueError(f"pred, true and groups need one equal, non-zero length, got {len(x)}, {len(y)}, {len(groups)}")
    errors: dict[str, list[float]] = defaultdict(list)
    for e, g in zip(np.abs(x - y), groups, strict=True):
        errors[str(g)].append(float(e))
    per = {g: float(np.mean(v)) for g, v in sorted(errors.items())}
    return per, float(np.mean(list(per.values())))


def reliability(probs: Sequence[float], labels: Sequence[float], bins: int = 10) -> dict[str, list | float]:
    """Reliability-diagram data of success probabilities against 0/1 outcomes.

    Returns ``edges`` (bins + 1), per bin ``count``, ``confidence`` (mean probability) and ``frequency``
    (fraction of successes; None for an empty bin), and ``ece``: sum over bins of count/N x |confidence -
    frequency|.

    >>> reliability([0.1, 0.9], [0, 1], bins=2)["ece"]
    0.1
    """
    p, y = _check_binary(probs, labels)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"probabilities must be in [0, 1], got min {p.min()} max {p.max()}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    count, confidence, frequency, ece = [], [], [], 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        count.append(n)
        if n == 0:
            confidence.append(None)
            frequency.append(None)
            continue
        conf, freq = float(p[mask].mean()), float(y[mask].mean())
        confidence.append(conf)
        frequency.append(freq)
        ece += n / len(p) * abs(conf - freq)
    return {"edges": edges.tolist(), "count": count, "confidence": confidence, "frequency": frequency,
            "ece": round(ece, 12)}
