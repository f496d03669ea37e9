"""Time per vector step: one batched reward request (RobometerVecReward) vs one request per sub-env.

N CartPole envs render 400x600 rgb_array frames; the tiny Robometer model scores them
(prefix sampling, <= 8 frames per query). Each transport runs two ways:

* ``N x RobometerReward``   - every sub-env wrapped alone: N sequential requests per vector step.
* ``RobometerVecReward``    - the vector env wrapped once: one batched request per vector step.

``in-process`` uses a LocalScorer; ``worker`` a real ``rlrm worker`` subprocess on loopback.
Prints a table, writes ``outputs/experiments/vector_batching.json`` and reports the
single/vector ratio measured in the same run.

    python experiments/vector_batching.py --num-envs 4 --steps 10
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from rlrm.models import make_reward_model
from rlrm.transport import LocalScorer, RewardClient, spawn_worker
from rlrm.wrappers import RobometerReward, RobometerVecReward

from output_paths import add_output_arguments, output_path  # experiments/output_paths.py

log = logging.getLogger("vector_batching")
TASK = "balance the pole"


def make_env() -> gym.Env:
    """One CartPole rendering rgb_array frames, long episodes."""
    return gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=10_000)


def time_bare(n: int, steps: int) -> float:
    """ms per vector step of the env alone, rendering every sub-env."""
    venv = gym.vector.SyncVectorEnv([make_env] * n)
    venv.reset(seed=0)
    t0 = time.perf_counter()
    for k in tqdm(range(steps), desc="env only", leave=False):
        venv.step(np.full(n, k % 2))
        venv.render()
    venv.close()
    return (time.perf_counter() - t0) / steps * 1e3


def time_single_wrappers(n: int, steps: int, scorer) -> float:
    """ms per vector step with each sub-env under its own RobometerReward (n requests per step)."""
    envs = [RobometerReward(make_env(), TASK, scorer, success=None) for _ in range(n)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    t0 = time.perf_counter()
    for k in tqdm(range(steps), desc=f"{n} x RobometerReward", leave=False):
        for env in envs:
            env.step(k % 2)
    return (time.perf_counter() - t0) / steps * 1e3


def time_vector_wrapper(n: int, steps: int, scorer) -> float:
    """ms per vector step with RobometerVecReward (one batched request per step)."""
    venv = RobometerVecReward(gym.vector.SyncVectorEnv([make_env] * n), TASK, scorer, success=None)
    venv.reset(seed=list(range(n)))
    t0 = time.perf_counter()
    for k in tqdm(range(steps), desc="RobometerVecReward", leave=False):
        venv.step(np.full(n, k % 2))
    venv.close()
    return (time.perf_counter() - t0) / steps * 1e3


def main() -> None:
    """Run every configuration, print the table, write the JSON."""
    from rlrm.known_notices import silence_known_notices

    silence_known_notices()  # robosuite's macro-file warnings, the Adroit notice, SDL's XDG_RUNTIME_DIR line
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="vector steps timed per configuration")
    add_output_arguments(parser, "vector_batching.json")
    args = parser.parse_args()
    args.out = str(output_path(args, "vector_batching.json"))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    n, steps = args.num_envs, args.steps
    rows: dict[str, float] = {"env + render only": time_bare(n, steps)}
    local = LocalScorer(make_reward_model("tiny", seed=0))
    rows["in-process, N x RobometerReward"] = time_single_wrappers(n, steps, local)
    rows["in-process, RobometerVecReward"] = time_vector_wrapper(n, steps, local)
    with spawn_worker("tiny", seed=0) as worker:
        client = RewardClient(worker.url)
        rows["worker, N x RobometerReward"] = time_single_wrappers(n, steps, client)
        rows["worker, RobometerVecReward"] = time_vector_wrapper(n, steps, client)
        client.close()
    ratios = {
        "in-process single/vector": rows["in-process, N x RobometerReward"] / rows["in-process, RobometerVecReward"],
        "worker single/vector": rows["worker, N x RobometerReward"] / rows["worker, RobometerVecReward"],
    }
    print(f"\n{n} CartPole sub-envs, {steps} vector steps each, tiny model")
    print(f"{'configuration':36s} {'ms / vector step':>16s}")
    for name, ms in rows.items():
        print(f"{name:36s} {ms:16.1f}")
    for name, ratio in ratios.items():
        print(f"{name:36s} {ratio:15.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"num_envs": n, "steps": steps, "ms_per_vector_step": rows, "ratios": ratios},
                              indent=2))
    log.info("wrote %s", out)


if __name__ == "__main__":
    main()
