"""Study: the shipped ``demo`` reward model in a shifted FetchReach scene, and learning from 30 oracle labels.

The shift (``env=fetch_reach_shifted``): the target ball drawn blue instead of red and both reward cameras
moved (25 deg around, 12 deg lower, 15 cm further back): what a new table set-up or a bumped camera does to a model trained on one scene.
The instruction is unchanged ("move the gripper to the red target", as RL sends it).

Stages (each writes its JSON into ``--out`` and is skipped when that file exists, so a killed run resumes):

1. ``collect``: scripted FetchReach episodes (``experiments/demo_model/collect.py``'s controllers: successes,
   failures, suboptimal near-misses): a shifted *pool* (the episodes a labeller sees, in a shuffled order),
   shifted *held-out* episodes and *original-scene* held-out episodes.
2. ``frozen``: the demo model on both held-out sets (``rlrm.evaluate.evaluate``, what ``rlrm eval`` runs):
   final-frame success F1, per-frame F1, VOC.
3. ``adapt``: per selection rule (``every_k``, ``uncertain``) and seed, the pool is streamed through
   :class:`rlrm.rl.labels.OracleLabeller` (budget 30, one label per ``--every`` episodes; the uncertainty is
   the current version's) into :class:`rlrm.train.online.OnlineRewardTrainer` (the class the trainer process
   runs); after each published version both held-out sets are evaluated: F1 / VOC against labels used.

Writes ``results.json`` and ``adaptation.png`` (held-out shifted final-frame F1 against labels used, both
rules; original-scene F1 dashed) into ``--out``. Sizes are small on purpose (a pool of 40 episodes, 16
held-out episodes per scene, budget 20 at one label per 2 episodes): the box it ran on was shared, and with ``--results`` copies them to
``experiments/results/reward_adaptation*``.

    nice -n 10 python experiments/reward_adaptation.py --out outputs/reward_adaptation --results
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402,F401  (registers rlrm/FetchReach-v0)
from rlrm.wrappers.frames import FrameSource  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("reward_adaptation")

def _shift() -> dict:
    """The shifted scene's env kwargs beyond the unshifted ones: ``env=fetch_reach_shifted``'s (one definition)."""
    import yaml

    kwargs = yaml.safe_load((ROOT / "rlrm" / "configs" / "env" / "fetch_reach_shifted.yaml").read_text())["kwargs"]
    return {k: kwargs[k] for k in ("goal_rgba", "camera_offset")}


SHIFT = _shift()
"""The shifted scene: env kwargs on top of configs/env/fetch_reach.yaml's (``env=fetch_reach_shifted``)."""
TASK = "move the gripper to the red target"
SPLITS = {  # name -> (shifted?, {quality: count}, seed offset)
    "pool": (True, {"success": 16, "failure": 16, "suboptimal": 8}, 10_000),
    "heldout_shifted": (True, {"success": 6, "failure": 6, "suboptimal": 4}, 20_000),
    "heldout_original": (False, {"success": 6, "failure": 6, "suboptimal": 4}, 30_000),
}


def _collect_module():
    spec = importlib.util.spec_from_file_location("demo_collect", ROOT / "experiments" / "demo_model" / "collect.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_env(shifted: bool):
    """The FetchReach env the demo model was trained on (success ball, front + side at 128 px), optionally shifted."""
    env = gym.make("rlrm/FetchReach-v0", goal_marker="success_ball", image_size=128, **(SHIFT if shifted else {}))
    return env, FrameSource(env, ["front", "side"])


def collect(out: Path) -> None:
    """Stage 1: write the three splits as trajectory folders under ``out/data``."""
    from tqdm import tqdm

    collect_mod = _collect_module()
    collect_mod.REACH_PHRASINGS = [TASK]  # the instruction RL sends, for every episode
    for name, (shifted, counts, seed0) in SPLITS.items():
        folder = out / "data" / name
        if (folder / "DONE").exists():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        env = make_env(shifted)
        with tqdm(total=sum(counts.values()), desc=name) as bar:
            for i, (quality, count) in enumerate(counts.items()):
                collect_mod.collect_reach(env, folder, quality, count, seed0 + 1000 * i, 50, bar)
        env[0].close()
        (folder / "DONE").write_text("ok\n")


def _load(out: Path, name: str) -> list:
    from rlrm.train.data import load_dataset

    return list(load_dataset(out / "data" / name))


def metrics(model, trajectories) -> dict:
    """Final-frame success F1, per-frame success F1 and VOC of ``model`` (full mode, as ``rlrm eval``)."""
    from rlrm.evaluate.runner import evaluate
    from rlrm.transport import LocalScorer

    report, _ = evaluate(LocalScorer(model), trajectories, mode="full", confusion=False, progress_bar=False)
    return {"final_success_f1": report.final_success_f1, "success_f1": report.success_f1, "voc": report.voc,
            "success_auprc": report.success_auprc,
            "final_progress_by_quality": report.final_progress_by_quality}


def frozen(out: Path) -> dict:
    """Stage 2: the demo model on both held-out sets."""
    from rlrm.models import make_reward_model

    model = make_reward_model("demo")
    return {"shifted": metrics(model, _load(out, "heldout_shifted")),
            "original": metrics(model, _load(out, "heldout_original"))}


def adapt(out: Path, rule: str, seed: int, budget: int, every: int, steps: int, min_labels: int) -> dict:
    """Stage 3: stream the shuffled pool through the oracle into the trainer; evaluate after each version."""
    from rlrm.config import RewardTrainerConfig
    from rlrm.models import make_reward_model
    from rlrm.rl.episodes import EpisodeRecord
    from rlrm.rl.labels import OracleLabeller
    from rlrm.sampling import sample_indices
    from rlrm.train.online import LabelInbox, OnlineRewardTrainer
    from rlrm.types import RewardQuery

    folder = out / "adapt" / f"{rule}_seed{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    pool = _load(out, "pool")
    order = np.random.default_rng(seed).permutation(len(pool))
    shifted, original = _load(out, "heldout_shifted"), _load(out, "heldout_original")
    model = make_reward_model("demo")
    inbox = LabelInbox(folder)
    oracle = OracleLabeller(inbox.write, budget=budget, select=rule, every=every, threshold=0.65, seed=seed)
    cfg = RewardTrainerConfig(steps=steps, min_labels=min_labels, seed=seed, threads=1)
    trainer = OnlineRewardTrainer("demo", folder, cfg, model=model)
    curve = [{"labels": 0, "version": 0, "shifted": metrics(model, shifted), "original": metrics(model, original)}]
    t0 = time.monotonic()
    for k, i in enumerate(order):
        traj = pool[int(i)]
        idx = sample_indices(traj.num_frames, 8, "prefix")
        result = model.score([RewardQuery(traj.frames[idx], traj.task)])[0]
        steps_n = traj.num_frames - 1
        record = EpisodeRecord(
            key=k, frames=traj.frames, task=traj.task, env_rewards=np.zeros(steps_n, np.float32),
            progress=np.full(steps_n, result.progress[-1], np.float32),
            success_prob=np.full(steps_n, result.success[-1], np.float32), versions=np.zeros(steps_n, np.int64),
            env_success=bool(traj.success_labels()[-1] > 0.5))
        oracle.consider(record)
        trainer.poll_inbox()
        if trainer.ready():
            version = trainer.train_round()
            point = {"labels": oracle.used, "version": version, "episodes_seen": k + 1,
                     "shifted": metrics(model, shifted), "original": metrics(model, original),
                     "minutes": round((time.monotonic() - t0) / 60, 2)}
            curve.append(point)
            log.info("%s seed %d: %d labels, version %d: shifted final F1 %.3f VOC %.3f | original F1 %.3f VOC %.3f",
                     rule, seed, oracle.used, version, point["shifted"]["final_success_f1"], point["shifted"]["voc"],
                     point["original"]["final_success_f1"], point["original"]["voc"])
    return {"rule": rule, "seed": seed, "labels": oracle.summary(), "curve": curve}


def plot(results: dict, path: Path) -> None:
    """Held-out shifted final-frame F1 against labels used, per rule (mean over seeds); original dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    colours = {"every_k": "tab:blue", "uncertain": "tab:orange"}
    for run in results["adapt"]:
        c = colours[run["rule"]]
        xs = [p["labels"] for p in run["curve"]]
        ax.plot(xs, [p["shifted"]["final_success_f1"] for p in run["curve"]], "-o", color=c,
                label=f"{run['rule']} (seed {run['seed']}), shifted held-out")
        ax.plot(xs, [p["original"]["final_success_f1"] for p in run["curve"]], "--", color=c, alpha=0.6,
                label=f"{run['rule']} (seed {run['seed']}), original held-out")
    ax.axhline(0.9, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("oracle labels used")
    ax.set_ylabel("final-frame success F1")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("demo reward model in a shifted FetchReach scene")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/reward_adaptation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rules", nargs="+", default=["every_k", "uncertain"])
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per version")
    parser.add_argument("--min-labels", type=int, default=5)
    parser.add_argument("--results", action="store_true", help="copy results into experiments/results/")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    collect(out)
    frozen_path = out / "frozen.json"
    if not frozen_path.exists():
        frozen_path.write_text(json.dumps(frozen(out), indent=2))
    runs = []
    for seed in args.seeds:
        for rule in args.rules:
            path = out / f"adapt_{rule}_seed{seed}.json"
            if not path.exists():
                path.write_text(json.dumps(adapt(out, rule, seed, args.budget, args.every, args.steps,
                                                 args.min_labels), indent=2))
            runs.append(json.loads(path.read_text()))
    results = {"shift": SHIFT, "task": TASK, "splits": {k: v[1] for k, v in SPLITS.items()},
               "settings": {"budget": args.budget, "every": args.every, "steps_per_version": args.steps,
                            "min_labels": args.min_labels, "seeds": args.seeds},
               "frozen": json.loads(frozen_path.read_text()), "adapt": runs}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot(results, out / "adaptation.png")
    if args.results:
        dest = ROOT / "experiments" / "results"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "results.json", dest / "reward_adaptation.json")
        shutil.copy(out / "adaptation.png", dest / "reward_adaptation.png")
    print(json.dumps({"frozen": results["frozen"],
                      "final": [{"rule": r["rule"], "seed": r["seed"], **{k: r["curve"][-1][k] for k in
                                                                         ("labels", "shifted", "original")}}
                                for r in runs]}, indent=1))


if __name__ == "__main__":
    main()
