"""``rlrm bench model``: milliseconds per query of a reward model at several batch sizes.

* :func:`bench_model` - times ``model.score`` on random frames; returns one row per batch size with
  median ms per batch, ms per query, queries/s and the speedup per query over batch size 1.
* ``add_arguments`` / ``run`` - the subcommand: prints a table and writes JSON.

Example::

    rlrm bench model --model tiny --batch-sizes 1,8,32 --frames 8 --image-size 128 --json bench_model.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlrm.types import RewardQuery

__all__ = ["bench_model", "add_arguments", "run"]

log = logging.getLogger(__name__)


def _queries(batch: int, frames: int, size: int, rng: np.random.Generator) -> list[RewardQuery]:
    return [
        RewardQuery(rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8), "reach the red target")
        for _ in range(batch)
    ]


def bench_model(
    model: Any, batch_sizes: list[int], frames: int = 8, image_size: int = 128, repeats: int = 5, seed: int = 0
) -> list[dict[str, Any]]:
    """Median wall time of ``model.score`` per batch size (after one warm-up call).

    Args:
        model: anything with ``score(list[RewardQuery])``.
        batch_sizes: queries per call, e.g. ``[1, 8, 32]``; the first is the speedup baseline.
        frames / image_size: each query holds ``frames`` random (image_size, image_size, 3) frames.
        repeats: timed calls per batch size.
    """
    from tqdm import tqdm

    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise ValueError(f"batch sizes must be >= 1, got {batch_sizes}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for batch in tqdm(batch_sizes, desc="batch sizes", unit="size"):
        queries = _queries(batch, frames, image_size, rng)
        model.score(queries)  # warm-up: tokenizer caches, allocator
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.score(queries)
            times.append(time.perf_counter() - start)
        ms_batch = float(np.median(times) * 1000)
        rows.append(
            {
                "batch_size": batch,
                "ms_per_batch": ms_batch,
                "ms_per_query": ms_batch / batch,
                "queries_per_s": 1000 * batch / ms_batch,
                "ms_per_batch_min": float(np.min(times) * 1000),
            }
        )
    base = rows[0]["ms_per_query"]
    for row in rows:
        row["speedup_per_query_vs_first"] = base / row["ms_per_query"]
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rlrm bench model``."""
    parser.add_argument("--model", default="tiny", help="reward model spec (default: %(default)s)")
    parser.add_argument("--batch-sizes", default="1,8,32", help="comma-separated queries per call")
    parser.add_argument("--frames", type=int, default=8, help="frames per query (default 8)")
    parser.add_argument("--image-size", type=int, default=128, help="frame side in pixels (default 128)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per batch size")
    parser.add_argument("--device", default=None, help="cpu / cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", dest="json_out", default=None, help="write the results here")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write the JSON."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from rlrm.models import make_reward_model

    try:
        batch_sizes = [int(b) for b in str(args.batch_sizes).split(",") if b.strip()]
    except ValueError as e:
        raise ValueError(f"--batch-sizes must be comma-separated integers like 1,8,32, got {args.batch_sizes!r}") from e
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = {"device": args.device} if args.device else {}
    model = make_reward_model(args.model, **kwargs)
    rows = bench_model(model, batch_sizes, args.frames, args.image_size, args.repeats)
    table = Table(title=f"{args.model}: {args.frames} frames of {args.image_size}x{args.image_size} per query")
    for col in ("batch", "ms/batch", "ms/query", "queries/s", f"speedup vs batch {batch_sizes[0]}"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["batch_size"]), f"{r['ms_per_batch']:.1f}", f"{r['ms_per_query']:.2f}",
            f"{r['queries_per_s']:.1f}", f"{r['speedup_per_query_vs_first']:.2f}x",
        )
    Console().print(table)
    report = {
        "benchmark": "model",
        "model": model.info().to_dict(),
        "frames": args.frames,
        "image_size": args.image_size,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "rows": rows,
    }
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2))
        log.info("wrote %s", args.json_out)
    return 0
