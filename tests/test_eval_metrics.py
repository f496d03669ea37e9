"""Evaluation metrics against hand computations, scipy and scikit-learn."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, f1_score

from rlrm.evaluate.metrics import (
    average_precision,
    binary_f1,
    confusion_matrix,
    kendall_tau_a,
    kendall_tau_a_per_group,
    pearson,
    value_order_correlation,
)


def test_pearson_matches_scipy_and_handles_constant_curves():
    rng = np.random.default_rng(0)
    x, y = rng.random(12), rng.random(12)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert pearson([0.2, 0.2, 0.2], [0, 0.5, 1]) == 0.0
    with pytest.raises(ValueError, match="equal length >= 2"):
        pearson([1.0], [1.0])


def test_voc_averages_per_trajectory_pearson_and_skips_flat_truths():
    preds = [[0.0, 0.4, 0.9], [0.1, 0.2, 0.1], [0.3, 0.3, 0.3]]
    trues = [[0.0, 0.5, 1.0], [0.0, 0.5, 1.0], [1.0, 1.0, 1.0]]
    mean, per = value_order_correlation(preds, trues)
    expected = [stats.pearsonr(preds[0], trues[0])[0], stats.pearsonr(preds[1], trues[1])[0]]
    assert per[:2] == pytest.approx(expected) and np.isnan(per[2])
    assert mean == pytest.approx(np.mean(expected))


def test_kendall_tau_a_by_hand_and_vs_scipy_without_ties():
    # pairs: (1,2) concordant, (1,3) concordant, (2,3) discordant -> (2 - 1) / 3
    assert kendall_tau_a([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    rng = np.random.default_rng(1)
    x, y = rng.random(15), rng.random(15)
    assert kendall_tau_a(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)


def test_kendall_tau_a_counts_ties_as_zero():
    # values 0.9, 0.5, 0.1 vs quality ranks 2, 2, 0: pair (0,1) tied in rank -> 0
    # (0,2) concordant, (1,2) concordant -> 2 / 3 (tau-b would give a larger value)
    assert kendall_tau_a([0.9, 0.5, 0.1], [2, 2, 0]) == pytest.approx(2 / 3)
    assert stats.kendalltau([0.9, 0.5, 0.1], [2, 2, 0]).statistic > 2 / 3


def test_kendall_per_group_skips_groups_without_rank_spread():
    taus = kendall_tau_a_per_group([0.9, 0.1, 0.5, 0.6, 0.7], [2, 0, 1, 2, 2], ["a", "a", "a", "b", "b"])
    assert taus == {"a": pytest.approx(1.0)}


def test_average_precision_matches_sklearn_including_ties():
    rng = np.random.default_rng(2)
    for _ in range(5):
        labels = rng.integers(0, 2, 40)
        scores = np.round(rng.random(40), 1)  # many ties
        assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores))
    # by hand: ranking [1, 0, 1] -> precision at the two hits 1 and 2/3, recall steps 1/2 each
    assert average_precision([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert np.isnan(average_precision([0.1, 0.2], [0, 0]))


def test_binary_f1_matches_sklearn():
    rng = np.random.default_rng(3)
    labels, scores = rng.integers(0, 2, 50), rng.random(50)
    assert binary_f1(scores, labels, 0.4) == pytest.approx(f1_score(labels, scores >= 0.4))
    assert binary_f1([0.1, 0.2], [0, 0]) == 0.0
    with pytest.raises(ValueError, match="labels must be 0/1"):
        binary_f1([0.1, 0.2], [0, 2])


def test_confusion_matrix_means_per_cell():
    m, rows, cols = confusion_matrix([1.0, 0.5, 0.2, 0.0], ["a", "a", "a", "b"], ["x", "x", "y", "y"])
    assert rows == ["a", "b"] and cols == ["x", "y"]
    assert m[0].tolist() == [0.75, 0.2] and np.isnan(m[1, 0]) and m[1, 1] == 0.0
