"""Copy a trained demo model into ``rlrm/models/assets/demo`` and write its model card from real numbers.

Reads the run folder (``model/``, ``config.yaml``, ``train_log.jsonl``), the held-out eval
reports written by ``rlrm eval --json`` (full and dense modes) and the training data folder,
then writes ``MODEL_CARD.md`` next to the weights and a results folder
(``experiments/demo_model/results``: eval summaries, curves, confusion matrix, loss curve).

    python experiments/demo_model/ship.py --run outputs/demo_model/run \\
        --full outputs/demo_model/eval_full.json --dense outputs/demo_model/eval_dense.json

A hard-negative fine-tune (``run.sh`` stages ``hardneg finetune compare``) ships with ``--base-run`` (the
from-scratch run it started from) and ``--compare`` (the ``compare.py`` JSON, old vs new on both held-out
sets); the card then describes both stages.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "rlrm" / "models" / "assets" / "demo"
RESULTS = ROOT / "experiments" / "demo_model" / "results"
MAX_BYTES = 30 * 1024 * 1024


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def data_counts(data_dir: Path) -> tuple[Counter, Counter]:
    """(episodes per (task id, quality), episodes per instruction) of a trajectory folder."""
    by_quality, by_task = Counter(), Counter()
    for meta_path in sorted(data_dir.glob("*/meta.json")):
        meta = json.loads(meta_path.read_text())
        by_quality[(meta.get("task_id") or meta["task"], meta["quality"])] += 1
        by_task[meta["task"]] += 1
    return by_quality, by_task


def write_reference_frames(data_dir: Path, out: Path, count: int = 2) -> None:
    """Save the reset frames of a few held-out FetchReach episodes with their env seeds, so a test
    can check that ``rlrm/FetchReach-v0`` (default kwargs) still renders what the model was trained on."""
    import numpy as np

    from rlrm.train.data import read_trajectory

    frames, seeds = [], []
    for meta_path in sorted(data_dir.glob("reach_success_*/meta.json"))[:count]:
        traj = read_trajectory(meta_path.parent)
        frames.append(traj.frames[0])
        seeds.append(int(traj.extra["seed"]))
    if not frames:
        raise SystemExit(f"no reach_success_* episodes in {data_dir} to take reference frames from")
    np.savez_compressed(out, frames=np.stack(frames), seeds=np.asarray(seeds))


def plot_losses(log_path: Path, out: Path) -> None:
    """Training loss curves (total and parts) from ``train_log.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
    for key in ("total", "progress", "success", "preference"):
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], label=key, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (per logged batch)")
    ax.legend(fontsize=7)
    ax.set_title("demo model training loss", fontsize=9)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def metric_rows(full: dict, dense: dict | None) -> str:
    """Markdown table of the headline metrics, full and dense mode side by side."""
    fs, ds = full["summary"], (dense or {}).get("summary", {})
    lines = ["| metric (held-out) | full (1 query / episode) | dense (1 query / step, as RL) |", "|---|---|---|"]

    def row(name, key, sub=None):
        f = fs.get(key) if sub is None else fs.get(key, {}).get(sub)
        d = ds.get(key) if sub is None else ds.get(key, {}).get(sub)
        lines.append(f"| {name} | {_fmt(f)} | {_fmt(d) if ds else 'not run'} |")

    row("VOC: mean Pearson(pred, true progress), successful episodes", "voc")
    row("Kendall tau-a, final progress vs quality (fetch_reach)", "kendall_tau_a", "fetch_reach")
    row("success AUPRC (per frame)", "success_auprc")
    row(f"success F1 @ {fs['success_threshold']:g} (per frame)", "success_f1")
    row("success F1 (last frame of each episode)", "final_success_f1")
    for q in ("success", "suboptimal", "failure"):
        row(f"mean final progress, {q} episodes", "final_progress_by_quality", q)
    return "\n".join(lines)


def finetune_section(cfg: dict, last: dict, compare: dict | None) -> str:
    """Markdown section on the hard-negative fine-tune: why, what data, how, old vs new numbers."""
    lines = [
        "",
        "## Hard-negative fine-tune",
        "SAC trained on the first version of this model found an exploit: pressing the gripper down onto the",
        "table away from the red target read as progress ~0.8 and success ~0.85. `collect.py --hard-negatives`",
        "adds failures of exactly that kind - the gripper driven onto the table (z 0.38-0.41) 12+ cm (xy) from",
        "the target and held there (`table`), or reaching a decoy point 12-25 cm from the target and stopping",
        "(`decoy`) - labelled `failure` with the same distance-based true progress. The first model was then",
        f"fine-tuned on the original episodes + these (`rlrm train --config demo_hardneg`, `model: {cfg['model']}`):",
        f"lr {cfg['lr']}, {last['step']} steps, {last['minutes']:.0f} min on 1 CPU thread, same objective.",
    ]
    if compare:
        old, new = compare["old"], compare["new"]
        lines += ["", "| held-out metric | before fine-tune | after |", "|---|---|---|"]
        for name, label in (("orig_full", "original set, full"), ("orig_dense", "original set, dense (as RL)")):
            lines.append(f"| VOC, {label} | {_fmt(old[name]['voc'])} | {_fmt(new[name]['voc'])} |")
            lines.append(f"| success F1 per frame, {label} | {_fmt(old[name]['success_f1'])} | {_fmt(new[name]['success_f1'])} |")
        for name, label in (("hard_full", "hard negatives, full"), ("hard_dense", "hard negatives, dense")):
            for key, what in (("final_progress", "mean final progress"), ("final_success_prob", "mean final success prob")):
                lines.append(f"| {what}, {label} | {_fmt(old[name][key])} | {_fmt(new[name][key])} |")
        lines.append(f"| true final progress, hard negatives | {_fmt(old['hard_full']['true_final_progress'])} | same |")
    lines.append("")
    return "\n".join(lines)


def gate_section(path: Path | None) -> str:
    """Per-kind final progress and the ship targets, from ``gate.py --json`` (empty without one)."""
    if path is None or not path.exists():
        return ""
    gate = json.loads(path.read_text())
    kinds = "\n".join(f"| {k} | {v['episodes']} | {v['final_progress']:.3f} | {v['true_final_progress']:.2f} | "
                      f"{v['final_success_prob']:.3f} |" for k, v in gate["kinds"].items())
    checks = "\n".join(f"| {k} | {c['value']:.3f} | {c['target']} | {'yes' if c['met'] else '**no**'} |"
                       for k, c in gate["checks"].items())
    return f"""
Per episode kind (`experiments/demo_model/gate.py`; true = the label's mean final progress):

| kind | episodes | final progress | true | final success prob |
|---|---|---|---|---|
{kinds}

| target | value | needs | met |
|---|---|---|---|
{checks}
"""


def confusion_table(full: dict) -> str:
    """Markdown table of the task x instruction confusion matrix."""
    conf = full["summary"].get("confusion")
    if not conf:
        return "(not computed)"
    lines = ["| episodes of \\ instruction | " + " | ".join(conf["cols"]) + " |",
             "|---|" + "---|" * len(conf["cols"])]
    for task, row in zip(conf["rows"], conf["matrix"], strict=True):
        lines.append(f"| {task} | " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def main() -> None:
    """Copy weights, write results and the model card."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--full", required=True, type=Path, help="rlrm eval --json report (mode full)")
    ap.add_argument("--dense", type=Path, default=None, help="rlrm eval --json report (mode dense)")
    ap.add_argument("--plots", type=Path, default=None, help="rlrm eval --plots folder (full mode)")
    ap.add_argument("--heldout", type=Path, default=None, help="held-out data folder (default <run>/../data/heldout)")
    ap.add_argument("--base-run", type=Path, default=None,
                    help="for a fine-tune: the from-scratch run folder it started from (its config.yaml, train_log.jsonl)")
    ap.add_argument("--compare", type=Path, default=None, help="for a fine-tune: compare.py JSON (old vs new model)")
    ap.add_argument("--gate", type=Path, default=None, help="gate.py JSON: final progress per episode kind vs targets")
    args = ap.parse_args()

    model_dir = args.run / "model"
    files = [p for p in model_dir.iterdir() if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    if size > MAX_BYTES:
        raise SystemExit(f"model is {size / 2**20:.1f} MB, over the 30 MB budget for the repo")
    if ASSETS.exists():
        for p in ASSETS.iterdir():
            if p.is_file():
                p.unlink()
    ASSETS.mkdir(parents=True, exist_ok=True)
    for p in files:
        shutil.copy2(p, ASSETS / p.name)

    cfg = yaml.safe_load((args.run / "config.yaml").read_text())
    log = [json.loads(line) for line in (args.run / "train_log.jsonl").read_text().splitlines() if line.strip()]
    full = json.loads(args.full.read_text())
    dense = json.loads(args.dense.read_text()) if args.dense and args.dense.exists() else None
    backbone = json.loads((model_dir / "config.json").read_text())
    text = backbone.get("text_config", {})
    vision = backbone.get("vision_config", {})
    data_dir = Path(cfg["data"])
    train_counts, train_tasks = data_counts(data_dir)
    held_counts, _ = data_counts(args.heldout or args.run.parent / "data" / "heldout")

    write_reference_frames(args.heldout or args.run.parent / "data" / "heldout", ASSETS / "reference_frames.npz")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "eval_full_summary.json").write_text(json.dumps(full["summary"], indent=1))
    if dense:
        (RESULTS / "eval_dense_summary.json").write_text(json.dumps(dense["summary"], indent=1))
    if args.plots:
        for name in ("curves.png", "confusion.png"):
            if (args.plots / name).exists():
                shutil.copy2(args.plots / name, RESULTS / name)
    plot_losses(args.run / "train_log.jsonl", RESULTS / "train_loss.png")

    last = log[-1]
    from safetensors import safe_open

    params = 0
    for p in files:
        if p.suffix == ".safetensors":
            with safe_open(str(p), "pt") as f:
                params += sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 (safe_open is not iterable)
    counts_md = "\n".join(f"| {tid} | {q} | {n} | {held_counts.get((tid, q), 0)} |"
                          for (tid, q), n in sorted(train_counts.items()))
    base_cfg, base_last, finetune_md = cfg, last, ""
    if args.base_run:
        base_cfg = yaml.safe_load((args.base_run / "config.yaml").read_text())
        base_log = (args.base_run / "train_log.jsonl").read_text().splitlines()
        base_last = json.loads([line for line in base_log if line.strip()][-1])
        finetune_md = finetune_section(cfg, last, json.loads(args.compare.read_text()) if args.compare else None)
    card = f"""# `demo` reward model (tiny Qwen3-VL Robometer for FetchReach)

A {params / 1e6:.2f} M-parameter Robometer (Qwen3-VL backbone + progress / success / preference heads)
trained {"from scratch, then fine-tuned on hard negatives," if args.base_run else "from scratch"} on CPU for `rlrm/FetchReach-v0`. Load it with `make_reward_model("demo")`.
It exists so that the whole rlrm loop (reward worker, wrappers, RL) runs with a *trained* reward
model on a laptop; it knows nothing beyond this one simulated task and camera.

## Model
- Backbone: Qwen3-VL architecture built from a config (no pretrained weights): text hidden
  {text.get('hidden_size')}, {text.get('num_hidden_layers')} layers, {text.get('num_attention_heads')} heads; vision hidden
  {vision.get('hidden_size')}, depth {vision.get('depth')}, patch {vision.get('patch_size')}; byte-level tokenizer + the five Robometer tokens.
- Same code path as `robometer/Robometer-4B` (`rlrm.models.robometer.RobometerModel`), upstream checkpoint layout.
- Input: up to {cfg['max_frames']} frames of `rlrm/FetchReach-v0` as `python run_rl.py` renders them
  (`configs/env/fetch_reach.yaml`): the target drawn as a translucent red ball of the success radius
  (`goal_marker="success_ball"`, 5 cm), seen from the `front` and `side` render cameras, 128x128 each, tiled
  side by side into one 128x256 frame; plus the instruction sentence. Output per frame: progress in [0, 1],
  success probability.
- Files: {size / 2**20:.1f} MB.

## Data (`experiments/demo_model/collect.py`)
Scripted episodes of 51 frames (reset + 50 steps). Successes: speed-limited P-controller to the
target with action noise; suboptimal: the same aimed 7-13 cm off the target (never succeeds);
failures: smoothed random walks, moving away, or holding still; plus random FetchPush episodes
(task `fetch_push`, failures) as "different task" videos; `reach_leave` (reaches the ball, then leaves
it); hard negatives `hover` (stopped 7-15 cm above or below the ball), `table` (pressed onto the table
away from it) and `decoy` (stopped 12-25 cm away). True per-frame progress is an absolute function of the
gripper-target distance d: 1 inside the ball, `exp(-(d - 0.05) / 0.07)` outside (every frame's label can be
read off that frame); success = Fetch's `is_success`.
Instructions: {len(train_tasks)} phrasings, e.g. {', '.join(repr(t) for t, _ in train_tasks.most_common(3))}.

| task | quality | train episodes | held-out episodes |
|---|---|---|---|
{counts_md}

## Training
`bash experiments/demo_model/run.sh` (or the `train` stage alone:
`rlrm train --config demo data=outputs/demo4/data/train output_dir=outputs/demo4/run`).
Published Robometer objective (two-hot progress cross-entropy over 10 bins, class-balanced success BCE,
preference BCE on `<|pref_token|>` for suboptimal / rewound / different-task pairs; total = sum), AdamW
lr {base_cfg['lr']}, {base_cfg['batch_size']} views + {base_cfg['pair_batch_size']} pairs per step, seed {base_cfg['seed']}.
Ran {base_last['step']} steps in {base_last['minutes']:.0f} min on 2 shared CPU cores (1 torch thread).
**Deviation from the published recipe:** `progress_on: {base_cfg.get('progress_on')}` - failed and suboptimal episodes are
progress targets too (the simulator knows their true progress). Trained on successes only, a first
200-step run learned "progress = position in the sequence" and scored failures like successes.
Last logged losses: total {last['total']:.3f}, progress {last['progress']:.3f}, success {last['success']:.3f},
preference {last['preference']:.3f} (`experiments/demo_model/results/train_loss.png`{", of the fine-tune" if args.base_run else ""}).
{finetune_md}
## Held-out evaluation (`rlrm eval`, {full['summary']['num_trajectories']} episodes never seen in training)
{metric_rows(full, dense)}

Task x instruction confusion (mean final progress of successful episodes given each instruction):

{confusion_table(full)}

Plots: `experiments/demo_model/results/curves.png`, `confusion.png`.
{gate_section(args.gate)}
## Limitations
See the per-kind numbers above and `experiments/demo_model/README.md` for which targets this model
meets. Only FetchReach with the success ball from the `front` + `side` views at 128x128 each; other
cameras, sizes, goal markers, tasks or real images are out of distribution. Instructions outside the phrasings above are
handled only as far as their bytes resemble them. A toy for running the stack end to end on
CPU, not a general reward model: use `robometer/Robometer-4B` for real tasks.
"""
    (ASSETS / "MODEL_CARD.md").write_text(card)
    print(f"shipped {size / 2**20:.1f} MB to {ASSETS}; results in {RESULTS}")


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


if __name__ == "__main__":
    main()
