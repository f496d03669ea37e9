"""Does ``demos=`` (RLPD) halve the env steps SAC needs? MetaWorld drawer-open from state, dense reward, 3 seeds.

Two conditions of ``python run_rl.py env=metaworld_drawer_open reward=env_dense algo=sac`` (SAC from the 39-D
state, MetaWorld's dense reward, the shipped SAC config), the same but for ``demos=``:

* ``no_demos`` - plain SAC, up to ``--budget`` env steps (50k);
* ``demos10`` - ``demos=DIR`` with ``--demo-episodes`` scripted-expert episodes recorded by
  ``experiments/record_metaworld_demos.py`` (half of each batch from them), up to ``--demo-budget`` env steps.

A run's learning curve is MetaWorld's success (``is_success`` at the end of the episode) over 10 evaluation
episodes every ``--eval-every`` env steps, on evaluation seeds the demonstrations never saw. *Steps to target* is
the first curve point at or above ``--target`` (0.8). With ``--stop-at-target`` a run is stopped (Ctrl-C: it
saves a checkpoint and ``summary.json``) once its curve reaches the target, to spend the CPU on the other runs;
a run that ends its budget gets the final 20-episode evaluation. Runs are resumable: a run stopped before its
budget or target (killed, Ctrl-C) continues from its last checkpoint in ``<run>_r<k>`` (``resume=``).

Writes ``outputs/experiments/metaworld_demos.json`` (``--results``: ``experiments/results/``) with every run's
curve and steps to target, and a learning-curve plot (``.png``: mean over seeds, min-max band, each seed thin).

    nohup nice -n 5 python experiments/metaworld_demos.py --seeds 0 1 2 --jobs 2 --stop-at-target --results &
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from curves import draw_runs  # experiments/curves.py  # noqa: E402
from output_paths import add_output_arguments, output_path  # experiments/output_paths.py  # noqa: E402

COMMON = ["env=metaworld_drawer_open", "reward=env_dense", "algo=sac", "curve_episodes=10", "eval_episodes=20",
          "eval_video_episodes=0", "progress_bar=false"]
COLORS = {"no_demos": "tab:gray", "demos10": "tab:blue"}
log = logging.getLogger("metaworld_demos")


def steps_to_target(curve: list[dict], target: float) -> int | None:
    """The env steps of the first learning-curve point with success >= ``target`` (None: never).

    >>> steps_to_target([{"env_steps": 2500, "success_rate": 0.3}, {"env_steps": 5000, "success_rate": 0.8}], 0.8)
    5000
    """
    return next((int(p["env_steps"]) for p in curve if p["success_rate"] >= target), None)


def chain(runs_dir: Path, name: str) -> list[Path]:
    """A run's folders in order: ``<name>``, then ``<name>_r1``, ``<name>_r2``, ... (each resuming the one before)."""
    out = [runs_dir / name]
    while (runs_dir / f"{name}_r{len(out)}").exists():
        out.append(runs_dir / f"{name}_r{len(out)}")
    return out


def _curve(run_dir: Path) -> list[dict]:
    path = run_dir / "learning_curve.json"
    return json.loads(path.read_text())["points"] if path.exists() else []


def _alive(run_dir: Path) -> bool:
    """Whether the run_rl.py process this script (or a person) started for ``run_dir`` still runs (``pid`` file)."""
    pid_file = run_dir / "pid"
    if not pid_file.exists():
        return False
    try:
        cmdline = Path(f"/proc/{int(pid_file.read_text())}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return False
    return "run_rl.py" in cmdline and run_dir.resolve().name in cmdline


def state(run_dir: Path, target: float | None) -> str:
    """``running`` | ``done`` (budget finished, or stopped at the target) | ``resume`` (a checkpoint to continue
    from) | ``fresh`` (nothing saved)."""
    if _alive(run_dir):
        return "running"
    summary = run_dir / "summary.json"
    if summary.exists():
        if not json.loads(summary.read_text()).get("interrupted"):
            return "done"
        if target is not None and steps_to_target(_curve(run_dir), target) is not None:
            return "done"
    return "resume" if any((run_dir / "checkpoints").glob("step_*")) else "fresh"


def start(run_dir: Path, overrides: list[str]) -> subprocess.Popen:
    """``run_rl.py overrides hydra.run.dir=run_dir`` in the background (its pid in ``run_dir/pid``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "stdout.log", "a") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "run_rl.py"), *overrides, f"hydra.run.dir={run_dir}"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    (run_dir / "pid").write_text(str(proc.pid))
    log.info("started %s (pid %d)", run_dir.name, proc.pid)
    return proc


def run_all(jobs: dict[str, list[str]], runs_dir: Path, parallel: int, target: float | None,
            stop_at_target: bool) -> None:
    """Bring every job (name -> overrides) to ``done``, ``parallel`` runs at a time, resuming interrupted ones."""
    procs: dict[str, tuple[Path, subprocess.Popen | None]] = {}
    while True:
        for name, (run_dir, proc) in list(procs.items()):
            if proc is not None and proc.poll() is not None:
                log.info("%s exited with %s", run_dir.name, proc.returncode)
                del procs[name]
            elif proc is None and not _alive(run_dir):
                del procs[name]
        pending = []
        for name, overrides in jobs.items():
            if name in procs:
                continue
            current = chain(runs_dir, name)[-1]
            s = state(current, target if stop_at_target else None)
            if s == "running":
                procs[name] = (current, None)  # started before this script (or by an earlier one)
            elif s != "done":
                pending.append((name, overrides, current, s))
        for run_dir, _ in procs.values():  # stop runs that reached the target
            if stop_at_target and target is not None and steps_to_target(_curve(run_dir), target) is not None \
                    and not (run_dir / "stop_requested").exists():
                log.info("%s reached %.2f: stopping it (checkpoint + summary)", run_dir.name, target)
                (run_dir / "stop_requested").write_text(str(time.time()))
                os.kill(int((run_dir / "pid").read_text()), signal.SIGINT)
        if not pending and not procs:
            return
        while pending and len(procs) < parallel:
            name, overrides, current, s = pending.pop(0)
            if s == "resume":
                links = chain(runs_dir, name)
                new = runs_dir / f"{name}_r{len(links)}"
                procs[name] = (new, start(new, [f"resume={current}"]))
            else:
                procs[name] = (current, start(current, overrides))
        time.sleep(10)


def read(runs_dir: Path, name: str, target: float) -> dict[str, Any]:
    """One run (its resume chain): the learning curve, steps to target, final evaluation if it ran."""
    links = chain(runs_dir, name)
    last = links[-1]
    curve = _curve(last)  # a resumed run's curve continues the earlier one's
    summary = json.loads((last / "summary.json").read_text()) if (last / "summary.json").exists() else {}
    finished = bool(summary) and not summary.get("interrupted")
    return {"run": name, "folders": [p.name for p in links], "curve": curve,
            "steps_to_target": steps_to_target(curve, target),
            "env_steps": int(summary.get("env_steps") or summary.get("stopped_at_step") or
                             (curve[-1]["env_steps"] if curve else 0)),
            "finished_budget": finished,
            "eval_success_rate": summary.get("eval_success_rate") if finished else None,
            "demos": summary.get("demos")}


def plot(result: dict, path: Path) -> None:
    """Eval success against env steps: mean and min-max band over seeds, each seed thin, the target dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, cond in result["conditions"].items():
        runs = cond["runs"]
        draw_runs(ax, runs, COLORS[name], f"{cond['label']} ({len(runs)} seeds)")
        for r in runs:
            if r["curve"]:
                ax.plot([p["env_steps"] for p in r["curve"]], [p["success_rate"] for p in r["curve"]],
                        color=COLORS[name], lw=0.7, alpha=0.5)
    ax.axhline(result["target"], color="black", ls="--", lw=1, label=f"target {result['target']}")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval success rate (10 episodes)")
    ax.set_title("MetaWorld drawer-open-v3, SAC from state, dense reward", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarize(runs_dir: Path, seeds: list[int], target: float, args: argparse.Namespace,
              dataset: dict[str, Any]) -> dict[str, Any]:
    """The JSON of the study: per condition its runs, steps to target per seed and their mean; the ratio."""
    labels = {"no_demos": "SAC", "demos10": f"SAC + {args.demo_episodes} scripted demos (demos=)"}
    conditions = {}
    for name in ("no_demos", "demos10"):
        runs = [read(runs_dir, f"{name}_seed{s}", target) | {"seed": s} for s in seeds
                if (runs_dir / f"{name}_seed{s}").exists()]
        steps = [r["steps_to_target"] for r in runs]
        reached = [s for s in steps if s is not None]
        conditions[name] = {"label": labels[name], "runs": runs, "steps_to_target": steps,
                            "seeds_reaching_target": len(reached),
                            "mean_steps_to_target": float(np.mean(reached)) if reached and len(reached) == len(steps)
                            else None}
    base, demo = conditions["no_demos"]["mean_steps_to_target"], conditions["demos10"]["mean_steps_to_target"]
    return {"task": "drawer-open-v3", "target": target, "seeds": seeds, "budget": args.budget,
            "demo_budget": args.demo_budget, "eval_every": args.eval_every, "curve_episodes": 10,
            "dataset": dataset, "conditions": conditions,
            "ratio_demos_over_no_demos": demo / base if base and demo else None,
            "halved": bool(base and demo and demo <= 0.5 * base)}


def main() -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--conditions", nargs="+", default=["no_demos", "demos10"], choices=["no_demos", "demos10"])
    parser.add_argument("--budget", type=int, default=50000, help="env steps of the runs without demos")
    parser.add_argument("--demo-budget", type=int, default=25000, help="env steps of the runs with demos")
    parser.add_argument("--demo-episodes", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=2500)
    parser.add_argument("--target", type=float, default=0.8)
    parser.add_argument("--stop-at-target", action="store_true", help="stop a run once its curve reaches the target")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--first", choices=["no_demos", "demos10"], default=None,
                        help="after the first seed's runs, start this condition's runs before the other's")
    parser.add_argument("--report-only", action="store_true", help="write the JSON and plot from the runs so far")
    parser.add_argument("--runs-dir", default=str(ROOT / "outputs" / "metaworld_demos"))
    add_output_arguments(parser, "metaworld_demos")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = output_path(args, "metaworld_demos")
    runs_dir = Path(args.runs_dir)
    dataset_dir = runs_dir / f"dataset_drawer_open_{args.demo_episodes}"
    if not (dataset_dir / "meta" / "info.json").exists():
        from record_metaworld_demos import record_demos  # experiments/record_metaworld_demos.py

        record_demos(dataset_dir, episodes=args.demo_episodes)
    from rlrm.bridges.lerobot_dataset import read_lerobot_episodes

    episodes = read_lerobot_episodes(dataset_dir, columns=["next.success"])
    dataset = {"path": str(dataset_dir.relative_to(ROOT)) if dataset_dir.is_relative_to(ROOT) else str(dataset_dir),
               "episodes": len(episodes), "frames": int(sum(e["length"] for e in episodes)),
               "expert_success_rate": float(np.mean([bool(e["features"]["next.success"][-1]) for e in episodes]))}
    budget = {"no_demos": [f"total_steps={args.budget}"],
              "demos10": [f"total_steps={args.demo_budget}", f"demos={dataset_dir}"]}
    order = [(s, c) for s in args.seeds for c in args.conditions]
    if args.first:  # e.g. the short runs with demos before the long runs without (a busy machine)
        order.sort(key=lambda sc: (sc[0] != args.seeds[0] and sc[1] != args.first))
    jobs = {f"{c}_seed{s}": [*COMMON, f"seed={s}", f"eval_every={args.eval_every}", "checkpoint_every=2500",
                             *budget[c]] for s, c in order}
    if not args.report_only:
        run_all(jobs, runs_dir, args.jobs, args.target, args.stop_at_target)
    result = summarize(runs_dir, args.seeds, args.target, args, dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    plot(result, out.with_suffix(".png"))
    print(f"\nMetaWorld drawer-open-v3, SAC from state, dense reward: env steps to {args.target} eval success")
    for cond in result["conditions"].values():
        print(f"{cond['label']:<40} {cond['steps_to_target']}  mean {cond['mean_steps_to_target']}")
    print(f"ratio demos / no demos: {result['ratio_demos_over_no_demos']}  -> {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
