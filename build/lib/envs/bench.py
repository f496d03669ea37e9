"""``rlrm bench envs``: simulated env steps/s with a rendered frame per step, default vs fast rendering.

* :data:`ADAPTERS` - benchmark name -> (gym id, env kwargs, default timed steps).
* :func:`bench_env` - times ``step`` + ``render`` (or ``step`` alone) of one env configuration.
* :func:`bench_envs` - every adapter x image size x {no render, default, fast}; rows + fast/default ratios.
* ``add_arguments`` / ``run`` - the subcommand: prints a table and writes JSON.

Ratios compare configurations measured in the same run, on the same machine, one after another.

Example::

    rlrm bench envs --envs fetch,metaworld,libero --sizes 128,224 --json outputs/bench/envs.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["ADAPTERS", "bench_env", "bench_envs", "add_arguments", "run"]

log = logging.getLogger(__name__)

ADAPTERS: dict[str, tuple[str, dict[str, Any], int]] = {
    "fetch": ("rlrm/FetchReach-v0", {}, 200),
    "metaworld": ("rlrm/MetaWorld-v0", {"task_name": "pick-place-v3"}, 100),
    "libero": ("rlrm/LIBERO-v0", {"suite": "libero_spatial", "task_id": 0, "settle_steps": 0}, 30),
}
_NEEDS = {"metaworld": "metaworld", "libero": "libero"}
RENDER_MODES = ("none", "default", "fast")


def bench_env(env_id: str, kwargs: dict[str, Any], steps: int, image_size: int, render: str, seed: int = 0) -> dict:
    """Steps/s of ``env_id`` over ``steps`` random-action steps, rendering every step unless ``render="none"``.

    Args:
        render: ``"none"`` (physics only), ``"default"`` (MuJoCo's shadows, MSAA, reflections,
            skybox) or ``"fast"`` (none of them).
    """
    import envs  # noqa: F401  (registers the ids)

    if render not in RENDER_MODES:
        raise ValueError(f"render must be one of {RENDER_MODES}, got {render!r}")
    env = gym.make(env_id, image_size=image_size, fast_render=(render != "default"), **kwargs)
    try:
        env.action_space.seed(seed)
        env.reset(seed=seed)
        for _ in range(3):  # warm-up: first frame uploads meshes and textures
            env.step(env.action_space.sample())
            if render != "none":
                env.render()
        frame = None
        start = time.perf_counter()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if render != "none":
                frame = env.render()
            if terminated or truncated:
                env.reset()
        seconds = time.perf_counter() - start
    finally:
        env.close()
    return {
        "env": env_id,
        "kwargs": kwargs,
        "image_size": image_size,
        "render": render,
        "steps": steps,
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "frame_mean": None if frame is None else float(np.mean(frame)),
    }


def bench_envs(names: list[str], sizes: list[int], steps_scale: float = 1.0) -> dict[str, Any]:
    """Run :func:`bench_env` for each adapter, size and render mode; skips adapters that are not installed."""
    from tqdm import tqdm

    unknown = [n for n in names if n not in ADAPTERS]
    if unknown:
        raise ValueError(f"unknown adapters {unknown}; expected names from {list(ADAPTERS)}")
    available, skipped = [], {}
    for name in names:
        module = _NEEDS.get(name)
        if module and importlib.util.find_spec(module) is None:
            skipped[name] = f"not installed: pip install 'rlrm[{name}]'"
            log.warning("skipping %s: %s", name, skipped[name])
        else:
            available.append(name)
    jobs = [(n, s, r) for n in available for s in sizes for r in RENDER_MODES if not (r == "none" and s != sizes[0])]
    rows = []
    for name, size, render in tqdm(jobs, desc="env configurations", unit="config"):
        env_id, kwargs, steps = ADAPTERS[name]
        row = bench_env(env_id, kwargs, max(5, int(steps * steps_scale)), size, render)
        row["adapter"] = name
        rows.append(row)
    ratios = []
    for name in available:
        for size in sizes:
            by_mode = {r["render"]: r for r in rows if r["adapter"] == name and r["image_size"] == size}
            none = next(r for r in rows if r["adapter"] == name and r["render"] == "none")
            ratios.append({
                "adapter": name,
                "image_size": size,
                "fast_over_default": by_mode["fast"]["steps_per_s"] / by_mode["default"]["steps_per_s"],
                "fast_over_no_render": by_mode["fast"]["steps_per_s"] / none["steps_per_s"],
            })
    return {"rows": rows, "ratios": ratios, "skipped": skipped}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rlrm bench envs``."""
    parser.add_argument("--envs", default="fetch,metaworld,libero", help=f"comma-separated, from {list(ADAPTERS)}")
    parser.add_argument("--sizes", default="128,224", help="comma-separated frame sides in pixels")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply the timed steps per configuration (fetch 200, metaworld 100, libero 30)")
    parser.add_argument("--json", dest="json_out", default="outputs/bench/envs.json", help="write the results here")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write the JSON."""
    import mujoco
    from rich.console import Console
    from rich.table import Table

    names = [n.strip() for n in str(args.envs).split(",") if n.strip()]
    try:
        sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    except ValueError as err:
        raise ValueError(f"--sizes must be comma-separated integers like 128,224, got {args.sizes!r}") from err
    result = bench_envs(names, sizes, args.steps_scale)
    table = Table(title=f"env steps/s with a rendered frame per step (MUJOCO_GL={os.environ.get('MUJOCO_GL')})")
    for col in ("adapter", "size", "no render", "default render", "fast render", "fast / default", "fast / no render"):
        table.add_column(col, justify="right")
    rows = result["rows"]
    for ratio in result["ratios"]:
        name, size = ratio["adapter"], ratio["image_size"]
        sps = {r["render"]: r["steps_per_s"] for r in rows if r["adapter"] == name and r["image_size"] == size}
        none = next(r["steps_per_s"] for r in rows if r["adapter"] == name and r["render"] == "none")
        table.add_row(
            name, str(size), f"{none:.1f}", f"{sps['default']:.1f}", f"{sps['fast']:.1f}",
            f"{ratio['fast_over_default']:.2f}x", f"{ratio['fast_over_no_render']:.2f}x",
        )
    Console().print(table)
    report = {
        "benchmark": "envs",
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "mujoco": mujoco.__version__,
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
        **result,
    }
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2))
        log.info("wrote %s", args.json_out)
    return 0
