"""Robometer losses on hand-made logits, and C51 two-hot targets."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlrm.train.losses import (
    preference_loss,
    progress_from_logits,
    progress_loss,
    robometer_loss,
    success_loss,
    success_loss_mask,
    two_hot_targets,
)


def test_two_hot_splits_mass_between_neighbouring_bins():
    t = two_hot_targets(torch.tensor([0.0, 1.0, 0.5, 0.05, 1 / 3]), num_bins=10)
    centres = torch.linspace(0, 1, 10)
    assert t.shape == (5, 10)
    assert torch.allclose(t.sum(-1), torch.ones(5))
    assert t[0, 0] == 1 and t[1, 9] == 1
    # 0.5 * 9 = 4.5 -> half on bin 4, half on bin 5
    assert torch.allclose(t[2, 4:6], torch.tensor([0.5, 0.5]))
    # 0.05 * 9 = 0.45 -> 0.55 on bin 0, 0.45 on bin 1
    assert torch.allclose(t[3, :2], torch.tensor([0.55, 0.45]), atol=1e-6)
    assert (t > 0).sum(-1).max() <= 2
    # the distribution's mean is the progress value itself
    assert torch.allclose((t * centres).sum(-1), torch.tensor([0.0, 1.0, 0.5, 0.05, 1 / 3]), atol=1e-6)


def test_two_hot_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        two_hot_targets(torch.tensor([1.2]))
    with pytest.raises(ValueError, match="num_bins"):
        two_hot_targets(torch.tensor([0.2]), num_bins=1)


def test_progress_loss_by_hand():
    # one sample, two frames, 3 bins; targets 0.0 (bin 0) and 0.75 (half bin 1, half bin 2)
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 1.0, 1.0]]])
    target = torch.tensor([[0.0, 0.75]])
    loss = progress_loss(logits, target, torch.ones(1, 2), torch.ones(1))
    lp0 = F.log_softmax(logits[0, 0], -1)
    lp1 = F.log_softmax(logits[0, 1], -1)
    expected = (-lp0[0] + -(0.5 * lp1[1] + 0.5 * lp1[2])) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_progress_loss_masks_padding_and_non_target_samples():
    logits = torch.randn(3, 4, 10)
    target = torch.rand(3, 4)
    frame_mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.float32)
    sample_mask = torch.tensor([1.0, 0.0, 1.0])  # the middle one is a failed episode
    loss = progress_loss(logits, target, frame_mask, sample_mask)
    # changing padded frames or the masked sample changes nothing
    logits2 = logits.clone()
    logits2[0, 2:] = 100.0
    logits2[1] = -7.0
    assert progress_loss(logits2, target, frame_mask, sample_mask).item() == pytest.approx(loss.item())
    # equal to the mean of the two per-sample frame means
    soft = two_hot_targets(target, 10)
    ce = -(soft * logits.log_softmax(-1)).sum(-1)
    expected = (ce[0, :2].mean() + ce[2].mean()) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_progress_loss_is_zero_with_graph_when_nothing_is_a_target():
    logits = torch.randn(2, 3, 10, requires_grad=True)
    loss = progress_loss(logits, torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2))
    assert loss.item() == 0.0
    loss.backward()  # still differentiable


def test_progress_loss_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"target must have shape \(2, 3\)"):
        progress_loss(torch.zeros(2, 3, 10), torch.zeros(3, 2), torch.ones(2, 3), torch.ones(2))


def test_success_loss_balances_classes_by_hand():
    # 1 positive, 3 negatives: the positive weighs 3, negatives 1 -> weighted mean
    logits = torch.tensor([[0.5, -1.0, 0.2, 2.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    mask = torch.ones(1, 4)
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")[0]
    expected = (3 * bce[0] + bce[1] + bce[2] + bce[3]) / 6
    assert success_loss(logits, labels, mask).item() == pytest.approx(expected.item(), rel=1e-6)


def test_success_loss_without_one_class_is_plain_mean_and_mask_applies():
    logits = torch.tensor([[0.3, -0.4, 5.0]])
    labels = torch.zeros(1, 3)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")[0]
    assert success_loss(logits, labels, mask).item() == pytest.approx(bce[:2].mean().item(), rel=1e-6)


def test_success_mask_follows_the_published_rule():
    target = torch.tensor([[0.1, 0.7, 1.0], [0.2, 0.8, 0.9]])
    labels = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    frame_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    unsuccessful = torch.tensor([False, True])
    mask = success_loss_mask(target, labels, frame_mask, unsuccessful, min_success=0.5)
    # success episode: low progress frame and the success frame, not the 0.7 frame in between
    # failed episode: every real frame
    assert mask.tolist() == [[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]


def test_preference_loss_by_hand():
    logits = torch.tensor([2.0, -1.0])
    labels = torch.tensor([1.0, 1.0])
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2
    assert preference_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_total_is_the_sum_of_the_parts():
    torch.manual_seed(0)
    out = robometer_loss(
        torch.randn(2, 3, 10), torch.randn(2, 3), torch.rand(2, 3), torch.tensor([[0, 0, 1.0], [0, 0, 0]]),
        torch.ones(2, 3), torch.tensor([1.0, 0.0]), torch.tensor([False, True]),
        preference_logits=torch.randn(4), preference_labels=torch.tensor([1.0, 0.0, 1.0, 0.0]),
    )
    parts = out.as_floats()
    assert parts["total"] == pytest.approx(parts["progress"] + parts["success"] + parts["preference"], rel=1e-6)
    assert all(np.isfinite(v) and v > 0 for v in parts.values())


def test_progress_from_logits_matches_expected_value():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]])
    assert progress_from_logits(logits).tolist() == pytest.approx([0.5, 0.0], abs=1e-6)


def test_progress_bar_names_the_losses_in_whole_words():
    """The bar showed 'tota=0.412' (every key cut to 4 letters)."""
    from rlrm.train.trainer import bar_postfix

    fields = bar_postfix({"total": 0.41234, "progress": 0.2, "success": 0.1, "preference": 0.05})
    assert fields == {"loss": "0.412", "progress": "0.200", "success": "0.100", "pref": "0.050"}
