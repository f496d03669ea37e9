"""Copy a trained multi-task MetaWorld model into ``rlrm/models/assets/demo_mw`` with a model card from real numbers.

Reads the run folder (``model/``, ``train_log.jsonl``), the gate report of ``gate.py`` (held-out metrics per
task) and the data folders, writes ``MODEL_CARD.md`` next to the weights and the per-task summary to
``experiments/metaworld_demo/results/gate_summary.json``.

    python experiments/metaworld_demo/ship.py --run outputs/demo_mw/run --gate outputs/demo_mw/gate.json
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "rlrm" / "models" / "assets" / "demo_mw"
RESULTS = ROOT / "experiments" / "metaworld_demo" / "results"
MAX_BYTES = 30 * 1024 * 1024


def kinds(data: Path) -> Counter:
    """Episodes per (task id, kind) of a trajectory folder."""
    counts: Counter = Counter()
    for meta_path in sorted(data.glob("*/meta.json")):
        meta = json.loads(meta_path.read_text())
        counts[(meta.get("task_id"), (meta.get("extra") or {}).get("kind", meta["quality"]))] += 1
    return counts


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("outputs/demo_mw/run"))
    parser.add_argument("--gate", type=Path, default=Path("outputs/demo_mw/gate.json"))
    parser.add_argument("--data", type=Path, default=Path("outputs/demo_mw/data"))
    args = parser.parse_args(argv)
    model_dir = args.run / "model"
    size = sum(p.stat().st_size for p in model_dir.iterdir() if p.is_file())
    if size > MAX_BYTES:
        raise SystemExit(f"{model_dir} is {size / 2**20:.1f} MB; the shipped model must stay under 30 MB")
    gate = json.loads(args.gate.read_text())["tasks"]
    log = [json.loads(line) for line in (args.run / "train_log.jsonl").read_text().splitlines() if line.strip()]
    steps = max((e.get("step", 0) for e in log), default=0)
    minutes = max((e.get("minutes", 0) for e in log), default=0)
    if ASSETS.exists():
        shutil.rmtree(ASSETS)
    shutil.copytree(model_dir, ASSETS)
    train_counts, heldout_counts = kinds(args.data / "train"), kinds(args.data / "heldout")
    rows = []
    for task, r in gate.items():
        rows.append(f"| {task} | {r['voc']:.3f} | {r['final_success_f1']:.3f} | {r['counterfactual_final']:.3f} "
                    f"(max {r['counterfactual_final_max']:.3f}) | {r['near_final']:.3f} (max {r['near_final_max']:.3f}) "
                    f"| {r['hold_success_above_threshold']:.3f} (min {r['hold_success_min']:.3f}) |")
    data_rows = [f"| {t} | {k} | {n} | {heldout_counts.get((t, k), 0)} |" for (t, k), n in sorted(train_counts.items())]
    card = f"""# demo_mw: a multi-task MetaWorld Robometer (tiny Qwen3-VL, trained on CPU)

Scores MetaWorld v3 push, pick-place and drawer-open as `configs/env/metaworld_*.yaml` render them for RL:
the env's `front` and `side` render views tiled into one 128x256 frame. It is conditioned on the task
sentence: trained with counterfactual episodes (a success of one task under another task's sentence has
progress 0), temporal clips, near misses (the object stopped 5-10 cm outside the success region) and holds
(success episodes keep the success state to the end). Progress labels are absolute functions of the
simulator state: 1 in MetaWorld's success state, else at most 0.25.

Made by `experiments/metaworld_demo/` (`run.sh`: collect, train, gate, ship):
`rlrm train --config demo_mw` ({steps} steps, {minutes:.0f} min on one CPU core of a shared 2-core box),
{size / 2**20:.1f} MB.

## Held-out evaluation (dense: a prefix query at every stored frame, as RL sends them)

| task | VOC (success episodes) | final-frame success F1 | counterfactual final progress | near-miss final progress | hold: success prob > 0.65 |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Targets: VOC >= 0.9, F1 >= 0.9, counterfactual and near-miss final progress < 0.3, success probability above
0.65 while the env's success holds.

## Data (episodes; train / held-out)

| task | kind | train | held-out |
|---|---|---|---|
{chr(10).join(data_rows)}
"""
    (ASSETS / "MODEL_CARD.md").write_text(card)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gate_summary.json").write_text(json.dumps(
        {"steps": steps, "minutes": minutes, "megabytes": size / 2**20, "tasks": gate}, indent=1))
    print(card)


if __name__ == "__main__":
    main()
