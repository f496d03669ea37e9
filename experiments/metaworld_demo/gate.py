"""Judge a MetaWorld reward model on held-out episodes against issue targets, per task.

Scores every held-out episode of ``collect.py`` the way RL does (dense: at each stored frame, a prefix
query of at most 8 frames, first and current kept) and reports per task:

* ``voc``: mean Pearson correlation of predicted and true progress over the frames of success episodes
  (target >= 0.9);
* ``final_success_f1``: F1 of ``success_prob >= 0.5`` at each episode's last frame against its true success,
  counterfactual episodes included (target >= 0.9);
* ``counterfactual_final``: mean (and max) final progress of another task's successes under this task's
  sentence (target < 0.3);
* ``near_final``: mean (and max) final progress of near misses (target < 0.3);
* ``hold_success``: fraction of frames in the env's success state (success episodes) whose success
  probability is above the detector threshold 0.65, and the lowest such probability (target: all above).

    python experiments/metaworld_demo/gate.py --model outputs/demo_mw/run/model \\
        --data outputs/demo_mw/data/heldout --json outputs/demo_mw/gate.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rlrm.evaluate.metrics import binary_f1, value_order_correlation
from rlrm.models import make_reward_model
from rlrm.sampling import sample_indices
from rlrm.train.data import TrajectoryDataset
from rlrm.types import RewardQuery

THRESHOLD = 0.65
TARGETS = {"voc": 0.9, "final_success_f1": 0.9, "counterfactual_final": 0.3, "near_final": 0.3}


def scored_frames(num_frames: int, stride: int) -> np.ndarray:
    """Indices of the frames scored: every ``stride``-th frame and always the last one."""
    return np.unique(np.r_[np.arange(0, num_frames, stride), num_frames - 1])


def dense_scores(model, frames: np.ndarray, task: str, stride: int = 1, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Progress and success probability at :func:`scored_frames`, each from a prefix query as RL sends it."""
    queries = [RewardQuery(frames[sample_indices(t + 1, 8, "prefix")], task)
               for t in scored_frames(len(frames), stride)]
    progress, success = [], []
    for start in range(0, len(queries), batch):
        for result in model.score(queries[start:start + batch]):
            progress.append(float(result.progress[-1]))
            success.append(float(result.success[-1]))
    return np.asarray(progress), np.asarray(success)


def judge(model, data: Path, stride: int = 1) -> dict:
    """Per-task metrics and per-episode finals of every held-out episode under ``data``."""
    dataset = TrajectoryDataset(data)
    per_task: dict[str, dict[str, list]] = {}
    for traj in tqdm(dataset, desc="held-out episodes"):
        kind = traj.extra.get("kind", traj.quality)
        progress, success = dense_scores(model, traj.frames, traj.task, stride)
        idx = scored_frames(traj.num_frames, stride)
        true_p, true_s = traj.progress_targets()[idx], traj.success_labels()[idx]
        rows = per_task.setdefault(traj.task_id, {"episodes": []})
        rows["episodes"].append({"episode": traj.episode_id, "kind": kind, "task": traj.task,
                                 "pred_progress": progress.tolist(), "true_progress": true_p.tolist(),
                                 "pred_success": success.tolist(), "true_success": true_s.tolist()})
    report = {}
    for task_id, rows in sorted(per_task.items()):
        eps = rows["episodes"]
        succ = [e for e in eps if e["kind"] == "success"]
        voc, _ = value_order_correlation([e["pred_progress"] for e in succ], [e["true_progress"] for e in succ])
        f1 = binary_f1([e["pred_success"][-1] for e in eps], [e["true_success"][-1] for e in eps])
        cf = [e["pred_progress"][-1] for e in eps if e["kind"] == "counterfactual"]
        near = [e["pred_progress"][-1] for e in eps if e["kind"] == "near"]
        decoy = [e["pred_success"][-1] > THRESHOLD for e in eps if e["kind"] == "decoy"]
        hold = np.concatenate([np.asarray(e["pred_success"])[np.asarray(e["true_success"]) > 0.5] for e in succ]
                              or [np.zeros(0)])
        report[task_id] = {
            "episodes": len(eps),
            "voc": voc,
            "final_success_f1": f1,
            "counterfactual_final": float(np.mean(cf)) if cf else None,
            "counterfactual_final_max": float(np.max(cf)) if cf else None,
            "near_final": float(np.mean(near)) if near else None,
            "near_final_max": float(np.max(near)) if near else None,
            "decoy_false_success": float(np.mean(decoy)) if decoy else None,
            "hold_success_above_threshold": float(np.mean(hold > THRESHOLD)) if hold.size else None,
            "hold_success_min": float(hold.min()) if hold.size else None,
            "final_progress_by_kind": {k: float(np.mean([e["pred_progress"][-1] for e in eps if e["kind"] == k]))
                                       for k in sorted({e["kind"] for e in eps})},
        }
        r = report[task_id]
        r["met"] = {
            "voc": r["voc"] >= TARGETS["voc"],
            "final_success_f1": r["final_success_f1"] >= TARGETS["final_success_f1"],
            "counterfactual_final": r["counterfactual_final"] is not None and r["counterfactual_final"] < 0.3,
            "near_final": r["near_final"] is not None and r["near_final"] < 0.3,
            "hold_success": r["hold_success_above_threshold"] == 1.0,
        }
    return {"tasks": report, "episodes": {t: rows["episodes"] for t, rows in per_task.items()}}


def main(argv: list[str] | None = None) -> int:
    """Command line; exit code 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo_mw")
    parser.add_argument("--data", type=Path, default=Path("outputs/demo_mw/data/heldout"))
    parser.add_argument("--json", type=Path, default=Path("outputs/demo_mw/gate.json"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stride", type=int, default=1, help="score every k-th stored frame (and the last)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(args.threads)
    model = make_reward_model(args.model)
    result = judge(model, args.data, args.stride)
    result["stride"] = args.stride
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"{'task':16s} {'VOC':>6s} {'F1':>6s} {'cf final':>9s} {'near final':>11s} {'hold>0.65':>10s} {'hold min':>9s}")
    for task, r in result["tasks"].items():
        print(f"{task:16s} {r['voc']:6.3f} {r['final_success_f1']:6.3f} {r['counterfactual_final'] or 0:9.3f} "
              f"{r['near_final'] or 0:11.3f} {r['hold_success_above_threshold'] or 0:10.3f} {r['hold_success_min'] or 0:9.3f}")
    missed = [f"{t}:{k}" for t, r in result["tasks"].items() for k, ok in r["met"].items() if not ok]
    print("all targets met" if not missed else f"missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
