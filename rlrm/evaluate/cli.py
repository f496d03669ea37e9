"""``rlrm eval DATA --model SPEC --json OUT --plots DIR``: reward-model quality on trajectory data.

Prints a table of the headline metrics, writes the full report (metrics + per-trajectory
curves) as JSON and, with ``--plots``, ``curves.png``, ``confusion.png`` and ``reliability.png``.
Every model is also scored on the 1-5 scale (:mod:`rlrm.evaluate.bench`: MAE per task and overall,
success reliability), so Robometer and RoboReward compare on the same episodes.

``rlrm eval --bench roboreward DIR --model SPEC``: the same final-score metrics on a RoboRewardBench
folder (subset folders with ``metadata.jsonl`` and mp4s): MAE per subset and the mean over subsets.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rlrm eval``."""
    parser.add_argument("data", help="folder of trajectory folders (rlrm format) or a LeRobot dataset folder; "
                        "with --bench roboreward, a RoboRewardBench folder")
    parser.add_argument("--bench", choices=("roboreward",), default=None,
                        help="roboreward: DATA is in the RoboRewardBench layout (<subset>/metadata.jsonl + mp4s); "
                             "report MAE on the 1-5 scale per subset and overall")
    parser.add_argument("--model", default="demo",
                        help="model spec: demo, tiny, a checkpoint dir, a hub id, or roboreward:<dir | hub id | tiny>")
    parser.add_argument("--json", dest="json_out", default=None, help="write the full report here")
    parser.add_argument("--plots", default=None, help="folder for curves.png and confusion.png")
    parser.add_argument("--mode", choices=("full", "dense"), default="full",
                        help="full: one query per episode; dense: one per step, as the RL wrapper (slower)")
    parser.add_argument("--max-frames", type=int, default=None, help="frames per query (default: the model's)")
    parser.add_argument("--threshold", type=float, default=0.5, help="success probability threshold for F1")
    parser.add_argument("--instructions", nargs="*", default=[],
                        help="extra instructions (other tasks) as confusion-matrix columns")
    parser.add_argument("--no-confusion", action="store_true", help="skip the task x instruction matrix")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N trajectories")
    parser.add_argument("--batch-size", type=int, default=16, help="queries per model call")
    parser.add_argument("--device", default=None, help="model device (cpu, cuda)")


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _final_score_rows(final) -> list[tuple[str, str]]:
    return [
        ("MAE 1-5 (mean over groups)", _fmt(final.mae)),
        *[(f"  MAE {group}", _fmt(v)) for group, v in final.mae_per_subset.items()],
        ("MAE 1-5 (all episodes)", _fmt(final.mae_all)),
        ("success ECE (final, true = 5)", _fmt(final.success_reliability["ece"])),
    ]


def _print_rows(header: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(header)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def _run_bench(args: argparse.Namespace, model) -> int:
    """``--bench roboreward``: final-score metrics on a RoboRewardBench folder."""
    from rlrm.evaluate.bench import evaluate_final_scores, read_roboreward_bench
    from rlrm.evaluate.plots import plot_reliability

    examples = read_roboreward_bench(args.data)
    if args.limit is not None:
        examples = examples[: args.limit]
    final = evaluate_final_scores(model, examples, max_frames=args.max_frames, batch_size=args.batch_size)
    _print_rows(f"rlrm eval --bench roboreward: model={final.model} examples={final.num_examples} data={args.data}",
                _final_score_rows(final))
    if args.json_out:
        path = Path(args.json_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"summary": final.summary(), "examples": final.examples}, indent=1))
        print(f"  wrote {path}")
    if args.plots:
        print(f"  wrote {plot_reliability({final.model: final.success_reliability}, Path(args.plots) / 'reliability.png')}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Evaluate, print a table, write JSON and plots."""
    from rlrm.evaluate.bench import evaluate_final_scores, examples_from_trajectories
    from rlrm.evaluate.plots import plot_confusion_matrix, plot_progress_curves, plot_reliability
    from rlrm.evaluate.runner import evaluate
    from rlrm.models import make_reward_model
    from rlrm.train.data import load_dataset

    kwargs = {"device": args.device} if args.device else {}
    if getattr(args, "bench", None) == "roboreward":
        return _run_bench(args, make_reward_model(args.model, **kwargs))
    dataset = load_dataset(args.data)
    trajectories = [dataset[i] for i in range(len(dataset) if args.limit is None else min(args.limit, len(dataset)))]
    model = make_reward_model(args.model, **kwargs)
    report, scores = evaluate(
        model,
        trajectories,
        mode=args.mode,
        max_frames=args.max_frames,
        success_threshold=args.threshold,
        confusion=not args.no_confusion,
        extra_instructions=args.instructions,
        batch_size=args.batch_size,
    )
    rows = [
        ("trajectories", str(report.num_trajectories)),
        ("VOC (mean Pearson, successes)", _fmt(report.voc)),
        ("Kendall tau-a (mean over tasks)", _fmt(report.kendall_tau_a_mean)),
        *[(f"  tau-a {task}", _fmt(v)) for task, v in report.kendall_tau_a.items()],
        ("success AUPRC (per frame)", _fmt(report.success_auprc)),
        (f"success F1 @ {report.success_threshold:g} (per frame)", _fmt(report.success_f1)),
        ("success F1 (final frame)", _fmt(report.final_success_f1)),
        *[(f"  final progress | {q}", _fmt(v)) for q, v in report.final_progress_by_quality.items()],
    ]
    final = evaluate_final_scores(model, examples_from_trajectories(trajectories), max_frames=args.max_frames,
                                  batch_size=args.batch_size)
    rows += _final_score_rows(final)
    _print_rows(f"rlrm eval: model={report.model} mode={report.mode} data={args.data}", rows)
    if report.confusion is not None:
        print("  confusion (rows: task of the episodes, cols: instruction) mean final progress:")
        for task, row in zip(report.confusion["rows"], report.confusion["matrix"], strict=True):
            print(f"    {task:<16} " + " ".join(_fmt(v) for v in row))
    if args.json_out:
        path = Path(args.json_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"summary": report.summary(), "trajectories": report.trajectories,
                                    "final_scores": final.summary(), "final_score_examples": final.examples},
                                   indent=1))
        print(f"  wrote {path}")
    if args.plots:
        curves = plot_progress_curves(scores, Path(args.plots) / "curves.png", title=f"{report.model} ({report.mode})")
        print(f"  wrote {curves}")
        print(f"  wrote {plot_reliability({report.model: final.success_reliability}, Path(args.plots) / 'reliability.png')}")
        if report.confusion is not None:
            conf = report.confusion
            matrix = [[float("nan") if v is None else v for v in r] for r in conf["matrix"]]
            print(f"  wrote {plot_confusion_matrix(matrix, conf['rows'], conf['cols'], Path(args.plots) / 'confusion.png')}")
    return 0
