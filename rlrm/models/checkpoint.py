"""Robometer checkpoint layouts: detect, load and write.

* :func:`resolve_dtype` - a dtype name or torch.dtype, with the device's default (float32 CPU, bf16 GPU).
"""

from __future__ import annotations

import torch


def resolve_dtype(dtype, device) -> torch.dtype:
    """``dtype`` as a torch.dtype; None means bfloat16 on CUDA and float32 elsewhere."""
    if dtype is None:
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}, expected e.g. 'float32', 'bfloat16', 'float16'")
    return value
