"""`rlrm bench envs`: rows for every render mode, ratios from the same run, JSON written."""

from __future__ import annotations

import argparse
import json

import pytest

from envs.bench import add_arguments, bench_envs, run


def test_bench_envs_rows_and_ratios():
    result = bench_envs(["fetch"], [32], steps_scale=0.05)
    modes = {(r["image_size"], r["render"]) for r in result["rows"]}
    assert modes == {(32, "none"), (32, "default"), (32, "fast")}
    assert all(r["steps"] == 10 and r["steps_per_s"] > 0 for r in result["rows"])
    assert all(r["frame_mean"] is not None for r in result["rows"] if r["render"] != "none")
    (ratio,) = result["ratios"]
    rows = {r["render"]: r["steps_per_s"] for r in result["rows"]}
    assert ratio["fast_over_default"] == pytest.approx(rows["fast"] / rows["default"])


def test_bench_envs_cli_writes_json(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "envs.json"
    args = parser.parse_args(["--envs", "fetch", "--sizes", "32", "--steps-scale", "0.025", "--json", str(out)])
    assert run(args) == 0
    report = json.loads(out.read_text())
    assert report["benchmark"] == "envs" and report["mujoco_gl"]
    assert len(report["rows"]) == 3 and len(report["ratios"]) == 1


def test_bench_envs_bad_input():
    with pytest.raises(ValueError, match=r"unknown adapters \['mujoco'\]; expected names from \['fetch'"):
        bench_envs(["mujoco"], [64])
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(ValueError, match="--sizes must be comma-separated integers"):
        run(parser.parse_args(["--sizes", "big"]))
