"""Experiment scripts write into outputs/ by default; the tracked experiments/results/ only with --results."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["async_rate", "distributed_scaling", "fetch_reward_comparison", "metaworld_demos", "reward_family_cost",
           "vector_batching"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_default_output_is_outside_the_tracked_results(script):
    shown = subprocess.run([sys.executable, str(ROOT / "experiments" / f"{script}.py"), "--help"], capture_output=True,
                           text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"})
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert f"(default outputs/experiments/{script}" in shown.stdout
    assert "--results" in shown.stdout


def test_output_path_resolution():
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        from output_paths import add_output_arguments, output_path
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    parser = argparse.ArgumentParser()
    add_output_arguments(parser, "x.json")
    assert output_path(parser.parse_args([]), "x.json") == ROOT / "outputs" / "experiments" / "x.json"
    assert output_path(parser.parse_args(["--results"]), "x.json") == ROOT / "experiments" / "results" / "x.json"
    assert output_path(parser.parse_args(["--out", "/tmp/y.json"]), "x.json") == Path("/tmp/y.json")
