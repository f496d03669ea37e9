"""Residual SAC on MetaWorld contact tasks: lift a mediocre BC base with the demo_mw reward vs the env's dense reward.

For each task (``configs/env/metaworld_<task>.yaml``: its BC base policy and the ``demo_mw`` reward model) and
seed, runs ``python run_rl.py env=metaworld_<task> algo=residual_sac`` with

* ``robometer`` - the multi-task ``demo_mw`` Robometer on the tiled front + side views, behind one real
  ``rlrm worker`` on loopback shared by all runs;
* ``env_dense`` - MetaWorld's own dense reward (0..10 per step), the ceiling the issue compares against.

The base alone is evaluated with the same protocol (the same 20 evaluation layouts as the runs' final
evaluation). Success is the env's ``info["is_success"]`` at the end of each evaluation episode. Writes
``outputs/experiments/metaworld_residual.json`` (``--results``: ``experiments/results/``), one learning-curve
plot per task (mean and min-max band over seeds; the base as a dashed line) and, for the Robometer runs, the
reward-hacking audit (model success, env failure) with a strip of final frames. Prints a table.

    python experiments/metaworld_residual.py --tasks push --seeds 0 1 2 --total-steps 15000 --jobs 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
from curves import draw_runs  # experiments/curves.py  # noqa: E402
from fetch_reward_comparison import hacking_audit  # experiments/fetch_reward_comparison.py  # noqa: E402
from output_paths import add_output_arguments, output_path  # experiments/output_paths.py  # noqa: E402
from run_jobs import run_parallel  # experiments/run_jobs.py  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"push": "push-v3", "pick_place": "pick-place-v3", "drawer_open": "drawer-open-v3"}
CONDITIONS = {"robometer": ["reward=robometer"], "env_dense": ["reward=env_dense"]}
COLORS = {"robometer": "tab:purple", "env_dense": "tab:green"}
LABELS = {"robometer": "residual SAC, demo_mw Robometer reward", "env_dense": "residual SAC, MetaWorld dense reward"}
log = logging.getLogger("metaworld_residual")


def base_success(task: str, seeds: list[int], episodes: int) -> list[float]:
    """The env config's base policy alone, on each seed's evaluation layouts (run_rl's seeds 10_000 + seed)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import envs  # noqa: F401
    from rlrm.config import register_configs
    from rlrm.rl.bc import rollout
    from rlrm.rl.environment import make_env, resolve_env_defaults
    from rlrm.rl.residual import make_base_policy

    register_configs()  # the typed schemas the YAML builds on
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        cfg = OmegaConf.to_container(compose("config", overrides=[f"env=metaworld_{task}", "algo=residual_sac"]),
                                     resolve=True)
    resolve_env_defaults(cfg)
    env = make_env(cfg)  # the env exactly as the runs build it
    base = make_base_policy(cfg["algo"]["base_policy"], env.action_space)
    rates = [float(np.mean([r["success"] for r in rollout(env, base.act, episodes, seed=10_000 + s)])) for s in seeds]
    env.close()
    return rates


def run_all(jobs: list[tuple[str, str, int]], budget: list[str], source: list[str], runs_dir: Path,
            parallel: int) -> dict[tuple[str, str, int], dict]:
    """Run ``run_rl.py`` for every (task, condition, seed), ``parallel`` at a time; skip runs already finished."""
    specs = {(task, name, seed): (runs_dir / f"{task}_{name}_seed{seed}",
                                  [f"env=metaworld_{task}", "algo=residual_sac", *CONDITIONS[name], f"seed={seed}",
                                   "progress_bar=false", *(o.format(task=task) for o in budget),
                                   *(source if name == "robometer" else [])])
             for task, name, seed in jobs}
    return run_parallel(specs, parallel, strict=False)


def plot(task: str, result: dict, path: Path) -> None:
    """Eval success against env steps for one task: mean over seeds, min-max band, base as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    entry = result["tasks"][task]
    palette = iter(["tab:blue", "tab:orange", "tab:red", "tab:olive", "tab:cyan", "tab:brown"])
    for name, cond in entry["conditions"].items():
        base_points = [{"env_steps": 0, "success_rate": b} for b in entry["base_per_seed"]]
        kind = next(c for c in CONDITIONS if name.startswith(c))
        variant = name[len(kind):].strip("_")
        label = f"{LABELS[kind]}, {cond.get('total_steps', '?')} steps" + (f" ({variant.replace('_', ' + ')})" if variant else "")
        draw_runs(ax, cond["runs"], COLORS[kind] if not variant else next(palette), label, start=base_points)
    ax.axhline(entry["base_success"], color="black", ls="--", lw=1, label=f"BC base alone ({entry['base_success']:.2f})")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval success rate (env is_success)")
    ax.set_title(f"MetaWorld {TASKS[task]}, residual SAC on a BC base, seeds {result['seeds']}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    parser.add_argument("--total-steps", type=int, default=15000)
    parser.add_argument("--eval-every", type=int, default=2500)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--model", default="demo_mw")
    parser.add_argument("--extra", nargs="*", default=[],
                        help="more run_rl.py overrides for every run; {task} becomes the task (demos=outputs/demos/{task})")
    parser.add_argument("--suffix", default="", help="names these runs' conditions <condition><suffix> in the JSON "
                        "(e.g. _sil_demos), beside earlier runs of the same condition with other settings")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (they share one reward worker)")
    parser.add_argument("--runs-dir", default=str(ROOT / "outputs" / "metaworld_residual"))
    add_output_arguments(parser, "metaworld_residual")
    args = parser.parse_args()
    out = output_path(args, "metaworld_residual")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    budget = [f"total_steps={args.total_steps}", f"eval_every={args.eval_every}", f"eval_episodes={args.eval_episodes}",
              "curve_episodes=10", "eval_video_episodes=0", *args.extra]
    needs_model = "robometer" in args.conditions
    if needs_model:
        from rlrm.transport import spawn_worker
    with (spawn_worker(args.model, env={"OMP_NUM_THREADS": "1"}) if needs_model
          else contextlib.nullcontext()) as worker:
        source = [f"reward.source={worker.url}"] if needs_model else []
        jobs = [(t, c, s) for s in args.seeds for t in args.tasks for c in args.conditions]
        runs = run_all(jobs, budget, source, Path(args.runs_dir), args.jobs)
    previous = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
    result = {"model": args.model, "seeds": args.seeds, "total_steps": args.total_steps,
              "eval_episodes": args.eval_episodes, "tasks": previous.get("tasks", {})}
    print(f"\nMetaWorld residual SAC, {args.total_steps} env steps, {args.eval_episodes} eval episodes, seeds {args.seeds}")
    print(f"{'task':<12} {'base':>6} {'robometer':>10} {'env dense':>10} {'ratio':>6}")
    out.parent.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        base = base_success(task, args.seeds, args.eval_episodes)
        kept = result["tasks"].get(task, {}).get("conditions", {})  # conditions run earlier, e.g. env_dense
        entry = {"base_success": float(np.mean(base)), "base_per_seed": base,
                 "conditions": {k: v for k, v in kept.items() if k not in [c + args.suffix for c in args.conditions]}}
        for name in args.conditions:
            got = [runs[(task, name, s)] for s in args.seeds if (task, name, s) in runs]
            if not got:
                continue
            entry["conditions"][name + args.suffix] = {
                "runs": got, "overrides": args.extra, "total_steps": args.total_steps,
                "mean_success_rate": float(np.mean([r["eval_success_rate"] for r in got])) if got else None}
        rob = entry["conditions"].get("robometer" + args.suffix, {}).get("mean_success_rate")
        dense = entry["conditions"].get("env_dense" + args.suffix, {}).get("mean_success_rate")
        entry["robometer_over_dense"] = rob / dense if rob is not None and dense else None
        previous_audit = result["tasks"].get(task, {}).get("hacking_audit")
        if "robometer" + args.suffix in entry["conditions"] and "robometer" in args.conditions:  # this run's
            entry["hacking_audit"] = hacking_audit(Path(args.runs_dir), [f"{task}_robometer"], args.seeds, 0.65,
                                                   out.parent / f"metaworld_{task}_hacking.png")
            entry["hacking_audit"]["condition"] = "robometer" + args.suffix
        elif previous_audit is not None:  # an earlier invocation's
            entry["hacking_audit"] = previous_audit
        result["tasks"][task] = entry
        plot(task, result, out.parent / f"metaworld_{task}_curve.png")
        fmt = lambda x: f"{x:.2f}" if x is not None else "-"  # noqa: E731
        print(f"{task:<12} {entry['base_success']:>6.2f} {fmt(rob):>10} {fmt(dense):>10} "
              f"{fmt(entry['robometer_over_dense']):>6}")
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out.with_suffix('.json')} and the per-task plots in {out.parent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
