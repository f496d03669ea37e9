"""experiments/libero_rl.py end to end at toy scale: SAC + Robometer reward (tiny model) on LIBERO."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import pytest

pytest.importorskip("libero", reason="needs pip install 'rlrm[libero]'")

pytestmark = pytest.mark.slow

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "libero_rl.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("libero_rl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_libero_rl_smoke_writes_success_curves(tmp_path):
    libero_rl = _load_script()
    rc = libero_rl.main([
        "--smoke", "--model", "tiny", "--variants", "robometer_term", "--total-steps", "4",
        "--eval-every", "2", "--out", str(tmp_path), "--no-progress",
    ])
    assert rc == 0
    report = json.loads((tmp_path / "libero_rl.json").read_text())
    assert report["reward_model"] == "tiny" and report["scale"] == "smoke"
    (run,) = report["runs"]
    assert run["variant"] == "robometer_term"
    assert [p["env_steps"] for p in run["curve"]] == [0, 2, 4]
    assert all(0.0 <= p["success_rate"] <= 1.0 for p in run["curve"])
    assert pathlib.Path(run["checkpoint"]).is_file()
    assert (tmp_path / "libero_rl.png").stat().st_size > 1000


def test_libero_rl_rejects_unknown_variant(tmp_path):
    libero_rl = _load_script()
    with pytest.raises(SystemExit):
        libero_rl.main(["--smoke", "--variants", "dense", "--out", str(tmp_path)])
