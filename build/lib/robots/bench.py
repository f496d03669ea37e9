"""``rlrm bench robots`` / ``python -m robots.bench``: control-loop cost of each simulated robot env.

* :func:`measure` - mean ms per ``env.step`` (rate limiter not sleeping) and µs per safety-filter call.
* :func:`add_arguments` / :func:`run` - the CLI: prints a table, writes JSON.

Figures are reported as ratios against the kinematic backend measured in the same run, which is
the cost of the env and safety code alone (no SDK, no bus, no simulator).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

__all__ = ["measure", "add_arguments", "run"]

logger = logging.getLogger(__name__)


def _time_steps(env, steps: int, seed: int = 0) -> float:
    """Mean seconds per env.step over ``steps`` random actions (after one reset)."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    start = time.perf_counter()
    for _ in tqdm(range(steps), desc=type(env.backend).__name__, leave=False):
        env.step(rng.uniform(-1, 1, env.action_space.shape))
    return (time.perf_counter() - start) / steps


def measure(robots: list[str], steps: int = 300) -> list[dict]:
    """One row per env: ms/step, achievable Hz, ratio to the kinematic baseline, µs per safety filter."""
    from robots import make_robot_env
    from robots.base import RobotEnv, RobotEnvConfig
    from robots.geometry import EEPose
    from robots.sim.kinematic import KinematicBackend

    no_sleep = {"sleep": lambda s: None}
    base_env = RobotEnv(KinematicBackend(), RobotEnvConfig(action_mode="xyz_yaw"), **no_sleep)
    rows = [{"robot": "kinematic (baseline)", "s_per_step": _time_steps(base_env, steps)}]
    # safety filter alone
    rng = np.random.default_rng(0)
    prev = base_env._target
    targets = [EEPose(prev.position + rng.normal(0, 0.05, 3), prev.rotation) for _ in range(2000)]
    start = time.perf_counter()
    for t in targets:
        base_env.safety.apply(t, prev)
    filter_s = (time.perf_counter() - start) / len(targets)
    base_env.close()
    for name in robots:
        env = make_robot_env(name, sim=True, **no_sleep)
        try:
            rows.append({"robot": f"{name} (sim)", "s_per_step": _time_steps(env, steps)})
        finally:
            env.close()
    baseline = rows[0]["s_per_step"]
    for row in rows:
        row["ms_per_step"] = round(row["s_per_step"] * 1e3, 3)
        row["max_hz"] = round(1.0 / row["s_per_step"], 1)
        row["x_baseline"] = round(row["s_per_step"] / baseline, 2)
        row["safety_filter_us"] = round(filter_s * 1e6, 1)
        row["filter_share_of_step"] = round(filter_s / row["s_per_step"], 3)
        del row["s_per_step"]
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI options."""
    parser.add_argument("--robots", nargs="+", default=["xarm", "so101", "franka"], choices=["franka", "xarm", "so101"])
    parser.add_argument("--steps", type=int, default=300, help="env steps per robot")
    parser.add_argument("--out", default="outputs/bench_robots.json", help="JSON results path")


def run(args: argparse.Namespace) -> int:
    """Measure, print a table, write JSON."""
    rows = measure(args.robots, args.steps)
    cols = ["robot", "ms_per_step", "max_hz", "x_baseline", "safety_filter_us", "filter_share_of_step"]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"steps": args.steps, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m robots.bench", description=__doc__.splitlines()[0])
    add_arguments(p)
    logging.basicConfig(level=logging.WARNING)
    sys.exit(run(p.parse_args()))
