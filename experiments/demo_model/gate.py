"""The ship gate of the demo reward model: held-out numbers per episode kind against the targets.

Reads an ``rlrm eval --json`` report (``--mode full``) of the held-out set written by ``collect.py``
and checks what a reward that teaches SAC to reach needs:

* VOC (mean Pearson of predicted vs true progress over successful episodes) >= 0.9;
* success F1 at the episode's final frame >= 0.9;
* every hard-negative kind (``hover``, ``table``, ``decoy``, from the episode ids) ends below 0.3 mean
  progress, and successful episodes end above 0.8.

Prints a table, writes JSON (``--json``), exits 0 when every target is met, 1 otherwise.

    python -m rlrm eval outputs/demo3/data/heldout --model outputs/demo3/run/model --json eval_full.json
    python experiments/demo_model/gate.py eval_full.json --json gate.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

TARGETS = {"voc": (">=", 0.9), "final_success_f1": (">=", 0.9), "success_final_progress": (">", 0.8),
           "hover_final_progress": ("<", 0.3), "table_final_progress": ("<", 0.3), "decoy_final_progress": ("<", 0.3)}


def kind_of(traj: dict) -> str:
    """Episode kind from its id (``reach_<kind>_<seed>``, ``push_failure_<seed>``)."""
    parts = traj["episode_id"].split("_")
    if parts[0] == "push":
        return "push"
    return "_".join(parts[1:-1])


def gate(report: dict) -> dict:
    """Per-kind final progress / success probability and the target checks."""
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for t in report["trajectories"]:
        by_kind[kind_of(t)].append(t)
    kinds = {
        k: {"episodes": len(v),
            "final_progress": float(np.mean([t["progress"][-1] for t in v])),
            "final_success_prob": float(np.mean([t["success"][-1] for t in v])),
            "true_final_progress": float(np.mean([t["true_progress"][-1] for t in v]))}
        for k, v in sorted(by_kind.items())
    }
    summary = report["summary"]
    values = {"voc": summary["voc"], "final_success_f1": summary["final_success_f1"]}
    for k in ("success", "hover", "table", "decoy"):
        if k in kinds:
            values[f"{k}_final_progress"] = kinds[k]["final_progress"]
    checks = {}
    for name, (op, target) in TARGETS.items():
        v = values.get(name)
        ok = v is not None and {">=": v >= target, ">": v > target, "<": v < target}[op]
        checks[name] = {"value": v, "target": f"{op} {target}", "met": bool(ok)}
    return {"kinds": kinds, "checks": checks, "all_met": all(c["met"] for c in checks.values()),
            "model": summary.get("model")}


def main() -> int:
    """Print the table, write the JSON, exit 0 if every target is met."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="rlrm eval --json report (full mode) of the held-out set")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    result = gate(json.loads(args.report.read_text()))
    print(f"{'kind':<12} {'episodes':>8} {'final progress':>15} {'true':>6} {'final success p':>16}")
    for k, v in result["kinds"].items():
        print(f"{k:<12} {v['episodes']:>8} {v['final_progress']:>15.3f} {v['true_final_progress']:>6.2f} "
              f"{v['final_success_prob']:>16.3f}")
    print(f"\n{'target':<24} {'value':>7} {'needs':>8}  met")
    for name, c in result["checks"].items():
        value = "n/a" if c["value"] is None else f"{c['value']:.3f}"
        print(f"{name:<24} {value:>7} {c['target']:>8}  {'yes' if c['met'] else 'NO'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if result["all_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
