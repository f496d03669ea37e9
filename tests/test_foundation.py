"""The package imports light, the CLI lists its subcommands, the core types check input."""

import subprocess
import sys

import numpy as np
import pytest

from rlrm.types import ModelInfo, RewardQuery, RewardResult


def test_cli_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "rlrm", "--help"], capture_output=True, text=True, check=True)
    for name in ("worker", "keys", "score", "eval", "train", "bench"):
        assert name in out.stdout


def test_query_rejects_bad_frames():
    with pytest.raises(ValueError, match=r"uint8 \(T,H,W,3\), got float32 \(2, 3, 8, 8\)"):
        RewardQuery(np.zeros((2, 3, 8, 8), np.float32), "task")
    with pytest.raises(ValueError, match="T=0"):
        RewardQuery(np.zeros((0, 8, 8, 3), np.uint8), "task")
    with pytest.raises(ValueError, match="channel-first"):
        RewardQuery(np.zeros((2, 3, 8, 8), np.uint8), "task")
    with pytest.raises(ValueError, match="non-empty"):
        RewardQuery(np.zeros((2, 8, 8, 3), np.uint8), "  ")


def test_result_and_info_roundtrip():
    r = RewardResult([0.1, 0.5], [0.0, 1.0])
    assert r.progress.dtype == np.float32 and len(r) == 2
    with pytest.raises(ValueError, match="same length"):
        RewardResult([0.1], [0.1, 0.2])
    info = ModelInfo("tiny", image_size=(64, 64))
    assert ModelInfo.from_dict(info.to_dict()) == info
