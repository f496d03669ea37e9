"""A faster, numerically equivalent vision patch embedding (RobometerModel always uses it).

* :class:`LinearPatchConv3d` - ``nn.Conv3d`` whose kernel equals its stride and its input,
  computed as one matrix multiply (same parameters, same state-dict keys).
* :func:`use_linear_patch_embedding` - switch every such Conv3d in a model to it, in place.
* :func:`use_conv3d_patch_embedding` - switch them back to the stock ``nn.Conv3d`` (for comparisons).

Qwen3-VL embeds each (2, 16, 16) patch with a Conv3d whose kernel covers the whole input; on
CPU oneDNN's Conv3d (and especially its backward) is several times slower than the equivalent
``F.linear`` on flattened patches, and dominated a tiny model's training step here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LinearPatchConv3d", "use_linear_patch_embedding", "use_conv3d_patch_embedding"]


class LinearPatchConv3d(nn.Conv3d):
    """Conv3d for inputs exactly one kernel in size: ``(N, C, *kernel) -> (N, out, 1, 1, 1)`` via F.linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - same contract as nn.Conv3d
        if tuple(x.shape[2:]) != tuple(self.kernel_size):
            return super().forward(x)
        n = x.shape[0]
        out = F.linear(x.reshape(n, -1), self.weight.reshape(self.out_channels, -1), self.bias)
        return out.reshape(n, self.out_channels, 1, 1, 1)


def use_linear_patch_embedding(model: nn.Module) -> int:
    """Turn each patch-sized ``nn.Conv3d`` (kernel == stride, no padding/groups) into a
    :class:`LinearPatchConv3d` in place; returns how many were switched.

    >>> from transformers import Qwen3VLConfig, Qwen3VLModel   # doctest: +SKIP
    >>> use_linear_patch_embedding(Qwen3VLModel(Qwen3VLConfig()))   # doctest: +SKIP
    1
    """
    switched = 0
    for module in model.modules():
        if (
            type(module) is nn.Conv3d
            and tuple(module.kernel_size) == tuple(module.stride)
            and all(p == 0 for p in module.padding)
            and module.groups == 1
            and tuple(module.dilation) == (1, 1, 1)
        ):
            module.__class__ = LinearPatchConv3d
            switched += 1
    return switched


def use_conv3d_patch_embedding(model: nn.Module) -> int:
    """Turn each :class:`LinearPatchConv3d` in ``model`` back into a stock ``nn.Conv3d``; returns how many."""
    switched = 0
    for module in model.modules():
        if type(module) is LinearPatchConv3d:
            module.__class__ = nn.Conv3d
            switched += 1
    return switched
