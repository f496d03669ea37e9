"""Old vs fine-tuned ``demo`` model on the original held-out set and the hard-negative held-out set.

Reads ``rlrm eval`` JSONs (``summary`` + per-``trajectories`` scores), prints a table, writes JSON, and
applies the ship gate of the hard-negative fine-tune: the new model ships only if its original held-out
VOC (full and dense) is within ``--voc-tol`` of the old one AND its mean final progress and mean final
success probability on the hard negatives are both lower.

    python experiments/demo_model/compare.py --old outputs/demo_model_v2/eval_old \\
        --new outputs/demo_model_v2/eval_new --json outputs/demo_model_v2/compare.json
    # each folder: {orig,hard}_{full,dense}.json; exit code 0 = ship, 1 = keep the old weights
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("compare")

SETS = ("orig_full", "orig_dense", "hard_full", "hard_dense")


def hard_negative_stats(report: dict) -> dict[str, float]:
    """Mean final progress / success prob, share of episodes ending with success prob > 0.5, true final progress."""
    trajs = report["trajectories"]
    if not trajs:
        raise ValueError("eval report has no trajectories")
    final_p = np.array([t["progress"][-1] for t in trajs], dtype=float)
    final_s = np.array([t["success"][-1] for t in trajs], dtype=float)
    true_p = np.array([t["true_progress"][-1] for t in trajs], dtype=float)
    stats = {
        "final_progress": float(final_p.mean()),
        "final_success_prob": float(final_s.mean()),
        "final_success_rate": float((final_s > 0.5).mean()),
        "true_final_progress": float(true_p.mean()),
        "final_progress_mae": float(np.abs(final_p - true_p).mean()),
    }
    for kind in ("table", "decoy", "hover"):
        sel = [i for i, t in enumerate(trajs) if t["episode_id"].startswith(f"reach_{kind}_")]
        if sel:
            stats[f"{kind}_final_progress"] = float(final_p[sel].mean())
            stats[f"{kind}_final_success_prob"] = float(final_s[sel].mean())
    return stats


def summarize(folder: Path) -> dict[str, dict]:
    """The numbers that matter from one model's four eval JSONs."""
    out: dict[str, dict] = {}
    for name in SETS:
        path = folder / f"{name}.json"
        if not path.exists():
            raise FileNotFoundError(f"missing eval report {path} (expected {', '.join(s + '.json' for s in SETS)})")
        report = json.loads(path.read_text())
        s = report["summary"]
        if name.startswith("orig"):
            out[name] = {k: s[k] for k in ("voc", "kendall_tau_a_mean", "success_auprc", "success_f1", "final_success_f1")}
            out[name]["final_progress_by_quality"] = s["final_progress_by_quality"]
        else:
            out[name] = hard_negative_stats(report)
    return out


def ship_gate(old: dict, new: dict, voc_tol: float) -> tuple[bool, list[str]]:
    """(ship?, reasons): VOC within ``voc_tol`` on the original held-out set, lower hard-negative scores."""
    reasons, ok = [], True
    for name in ("orig_full", "orig_dense"):
        drop = old[name]["voc"] - new[name]["voc"]
        good = drop <= voc_tol
        ok &= good
        reasons.append(f"{name} VOC {old[name]['voc']:.3f} -> {new[name]['voc']:.3f} ({'ok' if good else 'too low'})")
    for name in ("hard_full", "hard_dense"):
        for key in ("final_progress", "final_success_prob"):
            good = new[name][key] < old[name][key]
            ok &= good
            reasons.append(f"{name} {key} {old[name][key]:.3f} -> {new[name][key]:.3f} ({'lower' if good else 'NOT lower'})")
    return bool(ok), reasons


def main() -> int:
    """Print the old/new table, write JSON, exit 0 if the new model passes the ship gate."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="folder with the old model's {orig,hard}_{full,dense}.json")
    ap.add_argument("--new", required=True, help="folder with the new model's {orig,hard}_{full,dense}.json")
    ap.add_argument("--json", dest="json_out", default=None, help="write the comparison here")
    ap.add_argument("--voc-tol", type=float, default=0.02, help="allowed drop of original held-out VOC")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    old, new = summarize(Path(args.old)), summarize(Path(args.new))
    rows = []
    for name in SETS:
        for key, v_old in old[name].items():
            if isinstance(v_old, dict):
                rows += [(f"{name} final progress | {q}", v, new[name][key][q]) for q, v in v_old.items()]
            else:
                rows.append((f"{name} {key}", v_old, new[name][key]))
    width = max(len(r[0]) for r in rows)
    print(f"{'metric':<{width}}  {'old':>7}  {'new':>7}")
    for label, a, b in rows:
        print(f"{label:<{width}}  {a:7.3f}  {b:7.3f}")
    ship, reasons = ship_gate(old, new, args.voc_tol)
    print("\n".join(["", *reasons, f"ship: {ship}"]))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"old": old, "new": new, "ship": ship, "reasons": reasons}, indent=1))
    return 0 if ship else 1


if __name__ == "__main__":
    raise SystemExit(main())
