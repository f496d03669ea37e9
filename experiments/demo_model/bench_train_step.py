"""Training-step time of the demo-sized Robometer on CPU: Conv3d vs matmul patch embedding.

Measures, in one process and on the same batches, the wall time of a full training step
(forward + backward + AdamW) with the stock Qwen3-VL Conv3d patch embedding and with
:func:`rlrm.models.patch_embed.use_linear_patch_embedding`, and reports the ratio. Prints a table
and writes JSON.

    python experiments/demo_model/bench_train_step.py --data outputs/demo_model/data/train --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from rlrm.train.trainer import TrainConfig, Trainer


def time_steps(trainer: Trainer, batches, repeats: int) -> list[float]:
    """Seconds per training step over ``batches`` (each used ``repeats`` times)."""
    out = []
    for _ in range(repeats):
        for singles, pairs in batches:
            start = time.perf_counter()
            trainer.train_step(singles, pairs)
            out.append(time.perf_counter() - start)
    return out


def main() -> None:
    """Run both variants on identical batches and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="outputs/demo_model/data/train")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="outputs/demo_model/bench_train_step.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    batches = None
    for name, fast in (("conv3d", False), ("linear", True)):
        cfg = TrainConfig(data=args.data, output_dir="/tmp/rlrm_bench_train_step", batch_size=6, pair_batch_size=2,
                          fast_patch_embedding=fast, resume=False, tiny={"max_pixels": 16384, "min_pixels": 4096})
        trainer = Trainer(cfg)
        if batches is None:
            batches = [trainer.sample_batch() for _ in range(args.batches)]
        trainer.train_step(*batches[0])  # warm-up
        times = time_steps(trainer, batches, args.repeats)
        results[name] = {"median_s": statistics.median(times), "mean_s": statistics.fmean(times), "n": len(times)}
    ratio = results["conv3d"]["median_s"] / results["linear"]["median_s"]
    print(f"{'patch embedding':<16} {'median s/step':>14} {'mean s/step':>12} {'steps':>6}")
    for name, r in results.items():
        print(f"{name:<16} {r['median_s']:>14.3f} {r['mean_s']:>12.3f} {r['n']:>6}")
    print(f"speed-up of linear over conv3d (median): {ratio:.2f}x  (6 views + 2 pairs of 8 frames, 128x128)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"results": results, "speedup_linear_over_conv3d": ratio,
                                           "threads": args.threads}, indent=1))


if __name__ == "__main__":
    main()
