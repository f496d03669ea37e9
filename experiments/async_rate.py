"""Env-loop rate with a slow reward model: synchronous rewards vs asynchronous relabelling.

A real ``rlrm worker`` (tiny model) is made artificially slow (``--slow-ms``, default 200 ms
per batch, like a large model on a busy GPU). The same FetchReach loop (128 px frames, random
actions, transitions stored in a replay buffer) runs three ways:

* ``no reward``  - env + rendering only (a frame per step, as a pixel policy or the reward needs): the ceiling.
* ``sync``       - :class:`rlrm.wrappers.RobometerReward`: every step waits for its reward.
* ``async``      - :class:`rlrm.rl.async_reward.AsyncRobometerReward` + the relabelling replay
  buffer: the loop keeps its rate; rewards are written into the buffer as they arrive.

Prints a table, writes ``outputs/experiments/async_rate.json`` (+ ``.png``) and reports the
async env-loop rate against the no-reward rate (``async_over_no_reward``; the target is >= 0.9)
and against sync, and whether every async transition was labelled by the end of the run
(``async_all_labelled``: the loop, then waiting for the last labels). The async env thread only
copies each frame and enqueues; the reward client builds, encodes and sends on its I/O thread
and uploads each frame of an episode once.

    python experiments/async_rate.py --steps 100 --rounds 5 --slow-ms 200
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402,F401
from rlrm.rl.async_reward import AsyncRobometerReward  # noqa: E402
from rlrm.rl.relabel_buffer import RelabelingDictReplayBuffer  # noqa: E402
from rlrm.transport import make_scorer, spawn_worker  # noqa: E402
from rlrm.wrappers import RobometerReward  # noqa: E402

from output_paths import add_output_arguments, output_path  # experiments/output_paths.py

log = logging.getLogger("async_rate")


class RenderEachStep(gym.Wrapper):
    """Renders a frame after every reset and step, as the reward wrappers do, without scoring it."""

    def reset(self, **kwargs):
        """Reset and render the reset frame."""
        out = self.env.reset(**kwargs)
        self.env.render()
        return out

    def step(self, action):
        """Step and render the new frame."""
        out = self.env.step(action)
        self.env.render()
        return out


def run_loop(env: gym.Env, steps: int, seed: int) -> tuple[float, RelabelingDictReplayBuffer, float]:
    """Step ``env`` with random actions into a relabelling buffer; returns (seconds, buffer, env-thread CPU seconds)."""
    labeler = env.labeler if isinstance(env, AsyncRobometerReward) else None
    buf = RelabelingDictReplayBuffer(steps + 1, env.observation_space, env.action_space, device="cpu",
                                     labeler=labeler)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    t0, cpu0 = time.perf_counter(), time.thread_time()
    for _ in range(steps):
        action = rng.uniform(-1, 1, size=env.action_space.shape).astype(np.float32)
        nxt, reward, terminated, truncated, info = env.step(action)
        buf.add({k: v[None] for k, v in obs.items()}, {k: v[None] for k, v in nxt.items()}, action[None],
                np.array([reward]), np.array([terminated]), [info])
        obs = nxt
        if terminated or truncated:
            obs, _ = env.reset()
    return time.perf_counter() - t0, buf, time.thread_time() - cpu0


def plot(result: dict, path: Path) -> None:
    """Bar chart of env-loop steps/s per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar([r["mode"] for r in rows], [r["steps_per_s"] for r in rows],
           color=["tab:gray", "tab:red", "tab:green"][: len(rows)])
    ax.set_yscale("log")
    ax.set_ylabel("env-loop steps/s (log)")
    ax.set_title(f"FetchReach {result['image_size']}px, reward model +{result['slow_ms']:.0f} ms/batch: "
                 f"async {result['async_over_sync']:.1f}x sync", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    from rlrm.known_notices import silence_known_notices

    silence_known_notices()  # robosuite's macro-file warnings, the Adroit notice, SDL's XDG_RUNTIME_DIR line
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="env steps per mode and round")
    parser.add_argument("--rounds", type=int, default=5,
                        help="no-reward and async loops alternate this many times (sync runs once): load from "
                        "other processes drifts over both alike; rates are over the summed loop times")
    parser.add_argument("--slow-ms", type=float, default=200.0, help="artificial delay per model batch (ms)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--worker-nice", type=int, default=0,
                        help="run the worker this much nicer than the env loop (its tiny model's CPU work stands "
                        "in for a model that would run on a GPU; 0 = same priority)")
    add_output_arguments(parser, "async_rate.json")
    args = parser.parse_args()
    args.out = str(output_path(args, "async_rate.json"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def fetch():
        return gym.make("rlrm/FetchReach-v0", image_size=args.image_size, max_episode_steps=50)

    rows = []
    with spawn_worker(args.model, seed=0, slow_ms=args.slow_ms, env={"OMP_NUM_THREADS": "1"},
                      nice=args.worker_nice or None) as worker:
        scorer = make_scorer(worker.url, timeout_ms=60000)
        no_reward = {"mode": "no reward", "steps": 0, "loop_s": 0.0}
        asynch = {"mode": "async", "steps": 0, "loop_s": 0.0, "labelled": 0, "pending_at_loop_end": 0,
                  "drain_s": 0.0, "pending_after_drain": 0}
        latencies: list[float] = []
        for r in range(args.rounds):
            env = RenderEachStep(fetch())
            seconds, _, cpu = run_loop(env, args.steps, seed=r)
            no_reward["steps"] += args.steps
            no_reward["loop_s"] += seconds
            no_reward["env_thread_cpu_s"] = no_reward.get("env_thread_cpu_s", 0.0) + cpu
            env.close()

            env = AsyncRobometerReward(fetch(), None, scorer, terminate_on_success=False)
            seconds, buf, cpu = run_loop(env, args.steps, seed=r)
            asynch["env_thread_cpu_s"] = asynch.get("env_thread_cpu_s", 0.0) + cpu
            asynch["pending_at_loop_end"] += buf.num_pending
            t0 = time.perf_counter()
            buf.flush(timeout_s=600)  # also keeps the worker idle during the next no-reward round
            asynch["drain_s"] += time.perf_counter() - t0
            asynch["steps"] += args.steps
            asynch["loop_s"] += seconds
            asynch["labelled"] += buf.num_labelled
            asynch["pending_after_drain"] += buf.num_pending
            latencies += [lab.latency_ms for lab in env.labeler.finished]
            env.close()
        asynch["mean_label_latency_ms"] = float(np.mean(latencies))
        asynch["client"] = scorer.transfer_stats()

        env = RobometerReward(fetch(), None, scorer, terminate_on_success=False)
        seconds, buf, _ = run_loop(env, args.steps, seed=0)
        rows += [no_reward, {"mode": "sync", "steps": args.steps, "loop_s": seconds, "labelled": buf.num_labelled},
                 asynch]
        env.close()
        scorer.close()

    for row in rows:
        row["steps_per_s"] = row["steps"] / row["loop_s"]
        if "env_thread_cpu_s" in row:  # what the env thread itself spends per step, waiting excluded
            row["env_thread_cpu_ms_per_step"] = 1000 * row["env_thread_cpu_s"] / row["steps"]
        # all rewards known: the loop plus, for async, waiting for the last labels
        row["labelled_steps_per_s"] = row["steps"] / (row["loop_s"] + row.get("drain_s", 0.0))
    sync_rate = next(r["steps_per_s"] for r in rows if r["mode"] == "sync")
    async_rate = next(r["steps_per_s"] for r in rows if r["mode"] == "async")
    print(f"\nenv-loop rate, FetchReach {args.image_size}px, reward model delayed {args.slow_ms:.0f} ms per batch")
    print(f"{'mode':<10} {'steps/s':>8} {'labelled/s':>10} {'loop s':>8} {'pending at end':>15} {'drain s':>8} "
          f"{'label lat ms':>13}")
    for r in rows:
        print(f"{r['mode']:<10} {r['steps_per_s']:>8.2f} {r['labelled_steps_per_s']:>10.2f} {r['loop_s']:>8.1f} "
              f"{r.get('pending_at_loop_end', 0):>15} {r.get('drain_s', 0.0):>8.2f} "
              f"{r.get('mean_label_latency_ms', float('nan')):>13.0f}")
    ratio = async_rate / sync_rate
    no_reward_rate = next(r["steps_per_s"] for r in rows if r["mode"] == "no reward")
    async_row = next(r for r in rows if r["mode"] == "async")
    all_labelled = async_row["labelled"] == async_row["steps"] and async_row["pending_after_drain"] == 0
    labelled_ratio = (next(r["labelled_steps_per_s"] for r in rows if r["mode"] == "async")
                      / next(r["labelled_steps_per_s"] for r in rows if r["mode"] == "sync"))
    print(f"async / sync env-loop rate: {ratio:.1f}x; steps with known reward per second: {labelled_ratio:.1f}x")
    cpu_nr, cpu_as = (next(r["env_thread_cpu_ms_per_step"] for r in rows if r["mode"] == m) for m in ("no reward", "async"))
    print(f"env thread's own CPU per step: {cpu_nr:.2f} ms without reward, {cpu_as:.2f} ms async "
          f"(+{cpu_as - cpu_nr:.2f} ms: copy the frame, enqueue)")
    print(f"async / no-reward env-loop rate: {async_rate / no_reward_rate:.2f}x (target >= 0.9); "
          f"labelled by the end: {async_row['labelled']}/{async_row['steps']} transitions"
          f"{'' if all_labelled else '  <- NOT all labelled'}")
    result = {"slow_ms": args.slow_ms, "image_size": args.image_size, "model": args.model, "rounds": args.rounds,
              "worker_nice": args.worker_nice,
              "rows": rows,
              "async_over_sync": ratio, "async_over_no_reward": async_rate / no_reward_rate,
              "env_thread_cpu_ms_per_step": {"no reward": cpu_nr, "async": cpu_as},
              "async_all_labelled": bool(all_labelled),
              "async_over_sync_labelled": labelled_ratio, "cpu_count": os.cpu_count()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
