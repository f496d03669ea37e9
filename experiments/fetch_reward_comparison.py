"""FetchReach learning curves: the demo Robometer reward vs the env's sparse and dense rewards.

Runs ``python run_rl.py`` (SAC, the default budget and evaluation, a learning-curve point every
``eval_every`` steps) with the same seeds for:

* ``robometer`` - the demo Robometer model (``tiny`` if this build has no demo weights) behind
  one real ``rlrm worker`` on loopback, scoring the front + side views of the success ball;
* ``robometer_delta`` - the same model with delta progress, a success bonus and success termination;
* ``robometer_terminate`` - the default shaping with episodes ended on detected success (the terminal
  step pays the value of staying in success, :meth:`rlrm.shaping.Shaping.stay_value`);
* ``env_sparse`` - Fetch's own sparse reward (-1 until the gripper is within 5 cm);
* ``env_dense`` - Fetch's own dense reward (minus the distance to the goal).

Success is the env's ``info["is_success"]`` at the end of each evaluation episode. Writes
``outputs/experiments/fetch_reward_comparison.json`` (``--results``: ``experiments/results/``), ``.png`` (eval success against env steps: mean and
min-max band over seeds, final evaluation as dots), and for the Robometer runs a reward-hacking audit:
the share of final evaluation episodes where the model says success (success probability > 0.65) but the
env says failure, with a strip of final frames (``fetch_reward_hacking.png``). Prints a table.

    python experiments/fetch_reward_comparison.py --seeds 0 1 2 --conditions env_dense env_sparse robometer
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
from curves import draw_runs  # experiments/curves.py
from output_paths import add_output_arguments, output_path  # experiments/output_paths.py
from run_jobs import run_parallel  # experiments/run_jobs.py

from rlrm.rl.reward_source import resolve_model_spec  # noqa: E402
from rlrm.transport import spawn_worker  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = {
    "robometer": ["reward=robometer"],
    # the other shaping: progress deltas, a success bonus and termination on the model's success decision
    "robometer_delta": ["reward=robometer", "reward.shaping.progress=delta", "reward.shaping.success_bonus=1",
                        "reward.terminate_on_success=true"],
    # the default shaping, ending episodes on detected success (paying the value of staying in success)
    "robometer_terminate": ["reward=robometer", "reward.terminate_on_success=true"],
    "env_sparse": ["reward=env_sparse"],
    "env_dense": ["reward=env_dense"],
}
log = logging.getLogger("fetch_reward_comparison")


COLORS = {"robometer": "tab:purple", "robometer_delta": "tab:blue", "robometer_terminate": "tab:orange", "env_sparse": "tab:gray",
          "env_dense": "tab:green"}
LABELS = {"robometer": "Robometer (demo model)", "robometer_delta": "Robometer, delta + bonus + termination",
          "robometer_terminate": "Robometer, success termination",
          "env_sparse": "env sparse", "env_dense": "env dense"}


def plot(result: dict, path: Path) -> None:
    """Eval success against env steps per condition: mean over seeds, min-max band, final evaluations as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name in [n for n in CONDITIONS if n in result["conditions"]]:
        draw_runs(ax, result["conditions"][name]["runs"], COLORS[name], LABELS[name])
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval success rate (env is_success)")
    ax.set_title(f"FetchReach, SAC, {len(result['seeds'])} seeds (band: min-max; dots: final evaluation)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def hacking_audit(runs_dir: Path, names: list[str], seeds: list[int], threshold: float, png: Path) -> dict:
    """False positives of the reward model on the final evaluations, and a strip of final frames."""
    frames, captions, false_pos, total = [], [], 0, 0
    for name in names:
        for seed in seeds:
            path = runs_dir / f"{name}_seed{seed}" / "eval_final_frames.npz"
            if not path.exists():
                continue
            data = np.load(path)
            says = data["success_prob"] > threshold
            fp = says & ~data["is_success"]
            false_pos += int(fp.sum())
            total += len(says)
            order = list(np.flatnonzero(fp)) + list(np.flatnonzero(~fp))  # false positives first
            for i in order[:4]:
                frames.append(data["frames"][i])
                verdict = "env OK" if data["is_success"][i] else "env FAIL"
                captions.append((f"{name} s{seed}: p={data['success_prob'][i]:.2f}, {verdict}", bool(fp[i])))
    audit = {"threshold": threshold, "episodes": total, "model_success_env_failure": false_pos,
             "share": false_pos / total if total else None}
    if frames:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = 4
        rows = -(-len(frames) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.2, rows * 1.9), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, frame, (caption, is_false_positive) in zip(axes.flat, frames, captions, strict=False):
            ax.imshow(frame)
            ax.set_title(caption, fontsize=7, color="red" if is_false_positive else "black")
        fig.suptitle(f"final frames of evaluation episodes (model success prob p; false positives first): "
                     f"{false_pos}/{total} say success where the env says failure", fontsize=9)
        fig.tight_layout()
        fig.savefig(png, dpi=110)
        plt.close(fig)
    return audit


def run_all(jobs: list[tuple[str, int]], budget: list[str], source: list[str], runs_dir: Path,
            parallel: int) -> dict[tuple[str, int], dict]:
    """Run ``python run_rl.py`` for every (condition, seed), ``parallel`` at a time; returns their summaries."""
    specs = {(name, seed): (runs_dir / f"{name}_seed{seed}",
                            [*CONDITIONS[name], f"seed={seed}", "progress_bar=false", *budget,
                             *(source if name.startswith("robometer") else [])])
             for name, seed in jobs}
    return run_parallel(specs, parallel)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--total-steps", type=int, default=None, help="default: configs/config.yaml")
    parser.add_argument("--eval-episodes", type=int, default=None, help="default: configs/config.yaml")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--conditions", nargs="+", default=["env_dense", "env_sparse", "robometer"],
                        choices=list(CONDITIONS))
    add_output_arguments(parser, "fetch_reward_comparison")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (they share one reward worker)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other conditions already in the output JSON (run conditions separately)")
    parser.add_argument("--runs-dir", default=str(ROOT / "outputs" / "fetch_reward_comparison"))
    args = parser.parse_args()
    args.out = str(output_path(args, "fetch_reward_comparison"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model = resolve_model_spec(args.model)
    budget = [f"total_steps={args.total_steps}"] if args.total_steps else []
    budget += [f"eval_episodes={args.eval_episodes}"] if args.eval_episodes else []

    out = Path(args.out)
    result: dict = {"model": model, "seeds": args.seeds, "conditions": {}}
    needs_model = any(name.startswith("robometer") for name in args.conditions)
    with spawn_worker(model, env={"OMP_NUM_THREADS": "1"}) if needs_model else contextlib.nullcontext() as worker:
        jobs = [(name, seed) for name in args.conditions for seed in args.seeds]
        source = [f"reward.source={worker.url}"] if needs_model else []
        summaries = run_all(jobs, budget, source, Path(args.runs_dir), args.jobs)
    if args.merge and out.with_suffix(".json").exists():  # read now: other runs may have written meanwhile
        previous = json.loads(out.with_suffix(".json").read_text())
        if previous["seeds"] != args.seeds:
            raise SystemExit(f"--merge needs the same seeds as {out.with_suffix('.json')}: {previous['seeds']}")
        result["conditions"] = {k: v for k, v in previous["conditions"].items() if k not in args.conditions}
        result["model"] = model if needs_model else previous["model"]
    for name in args.conditions:
        runs = [summaries[(name, seed)] for seed in args.seeds]
        rates = [r["eval_success_rate"] for r in runs]
        result["conditions"][name] = {"runs": runs, "mean_success_rate": float(np.mean(rates)),
                                      "mean_wall_s": float(np.mean([r["wall_s"] for r in runs]))}
        result["total_steps"] = runs[0]["env_steps"]
        result["eval_episodes"] = runs[0]["eval_episodes"]

    print(f"\nFetchReach, SAC, {result['total_steps']} env steps, {result['eval_episodes']} eval episodes, "
          f"seeds {args.seeds}, reward model {model!r}")
    print(f"{'reward':<12} {'success':>8} {'per seed':<22} {'wall s':>7}")
    for name in [n for n in CONDITIONS if n in result["conditions"]]:
        cond = result["conditions"][name]
        per_seed = " ".join(f"{r['eval_success_rate']:.2f}" for r in cond["runs"])
        print(f"{name:<12} {cond['mean_success_rate']:>8.2f} {per_seed:<22} {cond['mean_wall_s']:>7.0f}")
    if "robometer" in result["conditions"] and "env_dense" in result["conditions"]:
        dense = result["conditions"]["env_dense"]["mean_success_rate"]
        rob = result["conditions"]["robometer"]["mean_success_rate"]
        result["robometer_over_dense"] = rob / dense if dense > 0 else None
        print(f"Robometer / dense success: {rob:.2f} / {dense:.2f}")
    robometer_runs = [n for n in result["conditions"] if n.startswith("robometer")]
    if robometer_runs:
        result["hacking_audit"] = hacking_audit(Path(args.runs_dir), robometer_runs, args.seeds, 0.65,
                                                out.parent / "fetch_reward_hacking.png")
        audit = result["hacking_audit"]
        print(f"reward hacking audit: {audit['model_success_env_failure']}/{audit['episodes']} final evaluation "
              f"episodes where the model says success (p > 0.65) but the env says failure")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
