"""What ``record.dataset=DIR`` costs the control loop: recording on vs off, interleaved in the same run.

The env stack is run_rl.py's (FetchReach, its two cameras, the reward wrapper with the ``demo`` reward model
in this process, as ``transport=local``). Episodes alternate between the bare stack and the same stack
wrapped in :class:`rlrm.bridges.lerobot_dataset.RecordEpisodes` (ABBA order per round, so drift and the
writer thread's backlog fall on both sides); random actions stand in for the policy. Timed: every
``reset`` and ``step`` on the control thread, and (exactly) the recorder's own share of it. The writer
thread (PNG encoding, parquet, metadata; niceness 10) runs beside it on the same cores, so its cost shows up
wherever it competes; its own time per frame is reported too.

Prints a table, writes ``outputs/experiments/recording_overhead.json`` (``--results``: experiments/results/).

    python experiments/recording_overhead.py --rounds 6 --steps 50 --model demo
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from output_paths import add_output_arguments, output_path  # experiments/output_paths.py

from rlrm.bridges.lerobot_dataset import LeRobotDatasetWriter, RecordEpisodes  # noqa: E402
from rlrm.rl.environment import make_env, wrap_with_reward  # noqa: E402
from rlrm.rl.reward_source import open_reward_source  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("recording_overhead")


class InnerTimer(gym.Wrapper):
    """Sums the time spent below it, so the recorder's own share of a step is known exactly."""

    def __init__(self, env):
        super().__init__(env)
        self.seconds = 0.0

    def reset(self, **kwargs):
        """Timed reset."""
        t0 = time.perf_counter()
        out = self.env.reset(**kwargs)
        self.seconds += time.perf_counter() - t0
        return out

    def step(self, action):
        """Timed step."""
        t0 = time.perf_counter()
        out = self.env.step(action)
        self.seconds += time.perf_counter() - t0
        return out


def run_episode(env, rng: np.random.Generator, seed: int) -> tuple[float, int]:
    """One episode with random actions: (seconds spent in reset + step, steps)."""
    t0 = time.perf_counter()
    env.reset(seed=seed)
    spent = time.perf_counter() - t0
    steps, done = 0, False
    while not done:
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        t0 = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        spent += time.perf_counter() - t0
        steps += 1
        done = terminated or truncated
    return spent, steps


def main() -> None:
    """Parse options, run the interleaved episodes, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds of (off, on, on, off) episodes")
    parser.add_argument("--steps", type=int, default=50, help="env steps per episode")
    parser.add_argument("--image-size", type=int, default=128, help="camera image size (px)")
    parser.add_argument("--model", default="demo", help="reward model (demo, tiny, a checkpoint dir)")
    add_output_arguments(parser, "recording_overhead.json")
    args = parser.parse_args()
    out = output_path(args, "recording_overhead.json")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    overrides = [f"env.max_episode_steps={args.steps}", f"env.kwargs.image_size={args.image_size}",
                 f"reward.model={args.model}", "transport=local"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        cfg = OmegaConf.to_container(compose("config", overrides=overrides), resolve=True)

    with tempfile.TemporaryDirectory() as tmp, open_reward_source(cfg["reward"], cfg["transport"]) as scorer:
        writer = LeRobotDatasetWriter(Path(tmp) / "ds", fps=10)
        bare = wrap_with_reward(make_env(cfg), cfg, scorer, asynchronous=False)
        inner = InnerTimer(bare)
        recorded = RecordEpisodes(inner, writer)
        rng = np.random.default_rng(0)
        run_episode(bare, rng, seed=999)  # warm-up: first render, model load paths
        times = {"off": [], "on": []}
        steps = {"off": 0, "on": 0}
        seed = 0
        for _ in range(args.rounds):
            for mode in ("off", "on", "on", "off"):
                spent, n = run_episode(recorded if mode == "on" else bare, rng, seed)
                times[mode].append(spent)
                steps[mode] += n
                seed += 1
        t0 = time.perf_counter()
        writer.close()
        drain_s = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in (Path(tmp) / "ds").rglob("*") if p.is_file()) / 1e6
        frames = writer.total_frames
        bare.close()

    ms = {m: 1000 * sum(times[m]) / steps[m] for m in times}
    recorder_ms = 1000 * (sum(times["on"]) - inner.seconds) / steps["on"]  # the recorder's own control-thread time
    writer_ms = 1000 * writer.write_seconds / max(frames, 1)
    per_round = [(sum(times["on"][2 * r:2 * r + 2]) / sum(times["off"][2 * r:2 * r + 2])) - 1
                 for r in range(args.rounds)]
    result = {
        "env": cfg["env"]["id"], "image_size": args.image_size, "cameras": "front + side (run_rl.py's)",
        "reward_model": args.model, "episode_steps": args.steps, "rounds": args.rounds,
        "ms_per_step_off": ms["off"], "ms_per_step_on": ms["on"],
        "overhead": ms["on"] / ms["off"] - 1, "overhead_per_round": per_round,
        "overhead_median_round": float(np.median(per_round)),
        "recorder_ms_per_step_control_thread": recorder_ms, "recorder_share_of_step": recorder_ms / ms["off"],
        "writer_thread_ms_per_frame": writer_ms,
        "episodes_recorded": len(times["on"]), "frames_recorded": frames,
        "writer_drain_s_at_close": drain_s, "dataset_mb": size_mb, "cpu_cores": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
    }
    print(f"{'recording':<10} {'ms/step':>9} {'steps':>7}")
    for m in ("off", "on"):
        print(f"{m:<10} {ms[m]:>9.2f} {steps[m]:>7d}")
    print(f"recorder on the control thread: {recorder_ms:.3f} ms/step ({100 * recorder_ms / ms['off']:.2f}% of a step); "
          f"writer thread: {writer_ms:.2f} ms CPU per frame")
    print(f"overhead {100 * result['overhead']:+.1f}% (median round {100 * result['overhead_median_round']:+.1f}%), "
          f"{frames} frames, {size_mb:.1f} MB, writer drained {drain_s:.2f} s after the last episode")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
