"""The Robometer training objective on plain tensors.

* :func:`two_hot_targets` - C51-style two-hot distributions of progress values over the bins.
* :func:`progress_loss` - cross-entropy of progress logits against two-hot targets, on the
  trajectories whose progress is a target (successful, rewound, different-instruction).
* :func:`success_loss` - class-balanced BCE of per-frame success logits.
* :func:`preference_loss` - BCE of the ``<|pref_token|>`` logit (1 = A preferred over B).
* :func:`robometer_loss` - the sum of the three, plus the parts for logging.

Facts from the public robometer trainer: progress targets are two-hot over ``linspace(0, 1, K)``
(K = 10); progress is masked to successful/rewound/different-task samples; the success loss
uses frames whose target progress is below ``min_success`` (0.5) or that are successes, plus
every frame of failed/suboptimal trajectories, and up-weights the minority class by the
majority/minority count ratio; preference is plain BCE with logits; the total is the sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "two_hot_targets",
    "progress_from_logits",
    "progress_loss",
    "success_loss",
    "success_loss_mask",
    "preference_loss",
    "RobometerLoss",
    "robometer_loss",
]


def two_hot_targets(progress: torch.Tensor, num_bins: int = 10) -> torch.Tensor:
    """(..., ) progress in [0, 1] -> (..., num_bins) two-hot distribution over ``linspace(0, 1, num_bins)``.

    A value between bin centres c_l <= p <= c_u puts (c_u - p)/(c_u - c_l) on bin l and the
    rest on bin u, so the distribution's mean is exactly ``p``.

    >>> two_hot_targets(torch.tensor([0.5]), num_bins=3).tolist()
    [[0.0, 1.0, 0.0]]
    """
    if num_bins < 2:
        raise ValueError(f"num_bins must be >= 2, got {num_bins}")
    progress = torch.as_tensor(progress, dtype=torch.float32)
    if torch.any((progress < 0) | (progress > 1)) or torch.any(torch.isnan(progress)):
        raise ValueError(
            f"progress targets must lie in [0, 1], got min {progress.min().item()} max {progress.max().item()}"
        )
    scaled = progress * (num_bins - 1)
    lower = scaled.floor().clamp(0, num_bins - 1)
    upper = (lower + 1).clamp(max=num_bins - 1)
    w_upper = scaled - lower
    out = torch.zeros(*progress.shape, num_bins, dtype=torch.float32, device=progress.device)
    out.scatter_add_(-1, lower.long().unsqueeze(-1), (1 - w_upper).unsqueeze(-1))
    out.scatter_add_(-1, upper.long().unsqueeze(-1), w_upper.unsqueeze(-1))
    return out


def progress_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """(..., K) progress logits -> (...) expected progress ``softmax(logits) . linspace(0, 1, K)``."""
    centres = torch.linspace(0.0, 1.0, logits.shape[-1], device=logits.device, dtype=logits.dtype)
    return (logits.softmax(-1) * centres).sum(-1)


def _check_shapes(name: str, tensor: torch.Tensor, expected: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != expected:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(tensor.shape)}")


def progress_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    frame_mask: torch.Tensor,
    sample_mask: torch.Tensor,
) -> torch.Tensor:
    """Mean cross-entropy of progress logits vs two-hot targets over valid frames of target samples.

    Args:
        logits: (B, T, K) progress logits per frame.
        target: (B, T) true progress in [0, 1] (padding frames may hold anything in range).
        frame_mask: (B, T) 1 for real frames, 0 for padding.
        sample_mask: (B,) 1 for samples whose progress is a target (successful, rewound,
            different instruction), 0 for failed/suboptimal ones.

    Each sample's frames are averaged first, then samples are averaged, so long and short
    samples weigh the same. Returns 0 (with a graph) when no sample is a target.
    """
    b, t, k = logits.shape
    _check_shapes("target", target, (b, t))
    _check_shapes("frame_mask", frame_mask, (b, t))
    _check_shapes("sample_mask", sample_mask, (b,))
    frame_mask = frame_mask.to(logits.dtype)
    sample_mask = sample_mask.to(logits.dtype)
    soft = two_hot_targets(target.clamp(0, 1), k).to(logits.dtype)
    ce = -(soft * logits.log_softmax(-1)).sum(-1)  # (B, T)
    per_sample = (ce * frame_mask).sum(1) / frame_mask.sum(1).clamp(min=1)
    weight = sample_mask * (frame_mask.sum(1) > 0).to(logits.dtype)
    return (per_sample * weight).sum() / weight.sum().clamp(min=1)


def success_loss_mask(
    target_progress: torch.Tensor,
    labels: torch.Tensor,
    frame_mask: torch.Tensor,
    unsuccessful: torch.Tensor,
    min_success: float = 0.5,
) -> torch.Tensor:
    """(B, T) 1 where the success head is trained: progress < ``min_success`` or a success frame,
    every frame of failed/suboptimal samples (``unsuccessful``: (B,) bool), never padding."""
    keep = (target_progress < min_success) | (labels > 0.5) | unsuccessful.bool().unsqueeze(1)
    return (keep & frame_mask.bool()).to(torch.float32)


def success_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Class-balanced BCE with logits over the masked frames.

    Args:
        logits: (B, T) success logits per frame.
        labels: (B, T) 0/1 per-frame success.
        mask: (B, T) 1 for frames that count (see :func:`success_loss_mask`).

    The minority class (positives or negatives among the masked frames) is weighted by the
    majority/minority count ratio so both classes contribute equally; the result is the
    weighted mean. Returns 0 (with a graph) when the mask is empty.
    """
    _check_shapes("labels", labels, tuple(logits.shape))
    _check_shapes("mask", mask, tuple(logits.shape))
    labels = labels.to(logits.dtype)
    mask = mask.to(logits.dtype)
    n_pos = (labels * mask).sum().detach()
    n_neg = ((1 - labels) * mask).sum().detach()
    if n_pos > 0 and n_neg > 0:
        w_pos = torch.clamp(n_neg / n_pos, min=1.0)
        w_neg = torch.clamp(n_pos / n_neg, min=1.0)
        weights = mask * torch.where(labels > 0.5, w_pos, w_neg)
    else:
        weights = mask
    bce = F.binary_cross_entropy_with_logits(logits.clamp(-50, 50), labels, reduction="none")
    return (bce * weights).sum() / weights.sum().clamp(min=1e-8)


def preference_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE with logits of the preference logit; ``labels`` (B,) is 1 when A is preferred."""
    logits = logits.reshape(-1)
    _check_shapes("labels", labels.reshape(-1), tuple(logits.shape))
    return F.binary_cross_entropy_with_logits(logits.clamp(-50, 50), labels.reshape(-1).to(logits.dtype))


@dataclass
class RobometerLoss:
    """The total loss and its parts (tensors; ``.item()`` them for logging)."""

    total: torch.Tensor
    progress: torch.Tensor
    success: torch.Tensor
    preference: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        """Plain floats for logs and progress bars."""
        return {k: float(getattr(self, k).detach()) for k in ("total", "progress", "success", "preference")}


def robometer_loss(
    progress_logits: torch.Tensor,
    success_logits: torch.Tensor,
    target_progress: torch.Tensor,
    success_labels: torch.Tensor,
    frame_mask: torch.Tensor,
    progress_mask: torch.Tensor,
    unsuccessful: torch.Tensor,
    preference_logits: torch.Tensor | None = None,
    preference_labels: torch.Tensor | None = None,
    min_success: float = 0.5,
) -> RobometerLoss:
    """Progress CE + success BCE on single-trajectory samples, + preference BCE on pairs (if given)."""
    prog = progress_loss(progress_logits, target_progress, frame_mask, progress_mask)
    mask = success_loss_mask(target_progress, success_labels, frame_mask, unsuccessful, min_success)
    succ = success_loss(success_logits, success_labels, mask)
    if preference_logits is not None and preference_logits.numel() > 0:
        if preference_labels is None:
            raise ValueError("preference_labels are required when preference_logits are given")
        pref = preference_loss(preference_logits, preference_labels)
    else:
        pref = progress_logits.sum() * 0.0
    return RobometerLoss(total=prog + succ + pref, progress=prog, success=succ, preference=pref)
