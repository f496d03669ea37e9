"""Env steps/s and policy lag of distributed runs (1, 2, 4 runners) against a single-process run.

Every configuration trains the same SAC on FetchReach for the same number of env steps, with the
same update-to-data ratio (one gradient step per env step after ``learning_starts``):

* ``single-process`` - what ``run_rl.py`` does with ``distributed.runners=0``: ``model.learn`` with
  run_rl's logging callbacks; env steps/s = steps / time in ``learn``.
* ``N runner(s)``    - ``run_rl.py distributed.runners=N`` on a local Ray cluster; env steps/s =
  steps / time from the first batch handed out to the last one trained on (summary ``env_steps_per_s``).

Both exclude setup (env, model, actors) and the final checkpoint; ``updates/s`` is gradient steps over
the same wall time. On a 2-core machine the
question is overhead, not speedup: the learner's gradient steps bound both, so 1 runner should
keep at least 0.8x the single-process rate; 4 runners oversubscribe the cores. Configurations run
interleaved, ``--repeats`` times each, and the table shows medians. Prints a table and writes
``outputs/experiments/distributed_scaling.json`` (``--results``: ``experiments/results/``).

    python experiments/distributed_scaling.py --steps 2000 --repeats 2
    python experiments/distributed_scaling.py --reward tiny     # runners share a real tiny-model worker
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from output_paths import add_output_arguments, output_path  # experiments/output_paths.py

log = logging.getLogger("distributed_scaling")
ROOT = Path(__file__).resolve().parents[1]


def run_config(steps: int, reward: str, runners: int, seed: int) -> dict[str, Any]:
    """The resolved run_rl.py config of one measurement."""
    overrides = [f"total_steps={steps}", f"distributed.runners={runners}", f"seed={seed}", "eval_episodes=0",
                 "checkpoint_every=0", "progress_bar=false", "algo.learning_starts=500"]
    if reward == "env_dense":
        overrides.append("reward=env_dense")
    else:  # a spawned worker with the tiny model, shared by the runners
        overrides += ["reward.model=tiny", "transport=worker", "env.kwargs.image_size=64", "reward.max_frames=4"]
    from rlrm.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=overrides), resolve=True)


def measure_single_process(cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Env steps/s of run_rl.py's single-process loop (the same pieces and callbacks), timing ``learn`` only."""
    import torch
    from stable_baselines3.common.logger import configure

    from rlrm.rl.algorithms import make_algorithm
    from rlrm.rl.callbacks import RewardLoggingCallback
    from rlrm.rl.environment import make_env, vectorize, wrap_with_reward
    from rlrm.rl.interventions import InterventionLoggingCallback
    from rlrm.rl.reward_source import open_reward_source

    torch.set_num_threads(int(cfg["torch_threads"]))
    with open_reward_source(cfg["reward"], cfg["transport"]) as scorer:
        env = wrap_with_reward(make_env(cfg), cfg, scorer)
        venv = vectorize(env, bool(cfg["algo"].get("normalize_obs", False)))
        model = make_algorithm(cfg["algo"], venv, seed=cfg["seed"], device=cfg["device"])
        model.set_logger(configure(str(run_dir / "tb"), ["tensorboard", "csv"]))
        callbacks = [RewardLoggingCallback(None), InterventionLoggingCallback()]  # no checkpoints, as measured below
        t0 = time.perf_counter()
        model.learn(total_timesteps=cfg["total_steps"], callback=callbacks, progress_bar=False)
        learn_s = time.perf_counter() - t0
        venv.close()
    return {"env_steps": int(model.num_timesteps), "train_s": learn_s, "learner_updates": int(model._n_updates),
            "env_steps_per_s": model.num_timesteps / learn_s, "policy_lag_p50": 0.0, "policy_lag_p90": 0.0,
            "updates_per_s": model._n_updates / learn_s}


def measure_distributed(cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Env steps/s and policy lag of a distributed run (summary.json numbers)."""
    from rlrm.distributed.run import run_distributed

    summary = run_distributed(cfg, run_dir)
    keys = ("env_steps", "train_s", "env_steps_per_s", "policy_lag_p50", "policy_lag_p90", "learner_updates",
            "learner_updates_per_s", "runner_env_steps", "weights_version")
    # updates_per_s over the same wall time as env_steps_per_s; learner_updates_per_s counts time in gradient steps only
    return {**{k: summary[k] for k in keys}, "updates_per_s": summary["learner_updates"] / summary["train_s"]}


def main() -> None:
    """Measure every configuration ``--repeats`` times, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="env steps per run (learning starts at 500)")
    parser.add_argument("--runners", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--reward", choices=["env_dense", "tiny"], default="env_dense")
    add_output_arguments(parser, "distributed_scaling.json")
    args = parser.parse_args()
    args.out = str(output_path(args, "distributed_scaling.json"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("rlrm.distributed.run").setLevel(logging.WARNING)

    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    names = ["single-process"] + [f"{n} runner{'s' if n > 1 else ''}" for n in args.runners]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    load_before = os.getloadavg()
    try:
        for repeat in range(args.repeats):
            for name, runners in zip(names, [0, *args.runners], strict=True):
                cfg = run_config(args.steps, args.reward, runners, seed=repeat)
                with tempfile.TemporaryDirectory(prefix="rlrm-scaling-") as tmp:
                    measure = measure_single_process if runners == 0 else measure_distributed
                    result = measure(cfg, Path(tmp))
                result["load_avg_1m"] = os.getloadavg()[0]
                runs[name].append(result)
                log.info("%s (repeat %d): %.1f env steps/s, policy lag p50 %s", name, repeat,
                         result["env_steps_per_s"], result["policy_lag_p50"])
    finally:
        ray.shutdown()

    def median(name: str, key: str) -> float | None:
        values = [r[key] for r in runs[name] if r.get(key) is not None]
        return statistics.median(values) if values else None

    base = median("single-process", "env_steps_per_s")
    table = [{"configuration": name, "env_steps_per_s": median(name, "env_steps_per_s"),
              "vs_single_process": median(name, "env_steps_per_s") / base,
              "policy_lag_p50": median(name, "policy_lag_p50"), "policy_lag_p90": median(name, "policy_lag_p90"),
              "updates_per_s": median(name, "updates_per_s")} for name in names]
    report = {
        "steps": args.steps, "reward": args.reward, "repeats": args.repeats, "cpus": os.cpu_count(),
        "machine": platform.platform(), "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        "algo": "sac, 1 gradient step per env step after 500, batch 256, net [256, 256], torch_threads=1",
        "table": table, "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))

    print(f"\nFetchReach SAC, {args.steps} env steps, reward={args.reward}, {os.cpu_count()} CPUs, "
          f"median of {args.repeats} (load avg {load_before[0]:.1f} before)")
    print(f"{'configuration':16s} {'env steps/s':>12s} {'vs single':>10s} {'lag p50':>8s} {'lag p90':>8s} "
          f"{'updates/s':>10s}")
    for row in table:
        lag50 = "-" if row["policy_lag_p50"] is None else f"{row['policy_lag_p50']:.0f}"
        lag90 = "-" if row["policy_lag_p90"] is None else f"{row['policy_lag_p90']:.0f}"
        print(f"{row['configuration']:16s} {row['env_steps_per_s']:12.1f} {row['vs_single_process']:9.2f}x "
              f"{lag50:>8s} {lag90:>8s} {row['updates_per_s']:10.1f}")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
