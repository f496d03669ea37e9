"""Reward-model cost per env step: Robometer vs RoboReward, scored every k steps (``prefix``) or once per episode
(``episode_end``), measured in the same run with the tiny models of both families.

Each condition drives the one reward pipeline (:class:`rlrm.wrappers.pipeline.RewardPipeline`, synchronous,
in-process model) through episodes of ``--steps`` steps of 64x64 frames, and times the model calls. Reported:
ms of model time per env step, queries and videos per episode, and the ratio to Robometer scoring every
step (the default dense reward). The tiny models share one backbone size (hidden 64, 2 layers, vision depth 2),
so the ratios reflect how many tokens each family runs per step, not the 4B models' absolute speed.
``cache`` rows pass per-frame keys as a streaming worker does (each stored frame's key), so vision outputs
are reused: per frame for Robometer, per frame pair for RoboReward (Qwen3-VL encodes a video's frames in pairs).

    python experiments/reward_family_cost.py --steps 40 --episodes 4 [--results]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

import numpy as np

from rlrm.models import make_reward_model
from rlrm.transport import LocalScorer
from rlrm.wrappers.pipeline import RewardPipeline

from output_paths import add_output_arguments, output_path  # experiments/output_paths.py

log = logging.getLogger("reward_family_cost")
TASK = "open the drawer"
NAME = "reward_family_cost.json"


class TimedScorer(LocalScorer):
    """A LocalScorer that adds up the time and the queries of its model calls; ``keyed``: frames carry cache
    keys (episode, frame index), as the worker's frame store gives them."""

    def __init__(self, model, keyed: bool = False):
        super().__init__(model)
        self.keyed = keyed
        self.seconds = 0.0
        self.queries = 0

    def _score(self, queries, timeout_ms):
        t0 = time.perf_counter()
        if self.keyed:
            keys = [[(q.episode_id, int(i)) for i in q.frame_index] for q in queries]
            out = list(self.model.score(queries, feature_keys=keys))
        else:
            out = super()._score(queries, timeout_ms)
        self.seconds += time.perf_counter() - t0
        self.queries += len(queries)
        return out


def episode_frames(steps: int, seed: int) -> np.ndarray:
    """``steps + 1`` smooth random 64x64 frames (the reset frame first)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (steps + 1, 8, 8, 3)).astype(np.uint8)
    return np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)


def run_episode(model, when: str, every: int, steps: int, seed: int, cache: bool = False) -> dict:
    """Drive one episode through the pipeline: model seconds, queries, and vision-cache hits / misses."""
    model.feature_cache.clear()
    before = model.feature_cache_stats()
    scorer = TimedScorer(model, keyed=cache)
    pipe = RewardPipeline(1, TASK, scorer, when=when, every=every, success=None)
    frames = episode_frames(steps, seed=seed)
    pipe.start(0, frames[0])
    for t in range(1, steps + 1):
        pipe.finish([frames[t]], [0.0], [t == steps], [False])
    pipe.close()
    after = model.feature_cache_stats()
    return {"seconds": scorer.seconds, "queries": scorer.queries, "hits": after["hits"] - before["hits"],
            "misses": after["misses"] - before["misses"]}


def main() -> None:
    """Measure every (family, when, every) condition, print a table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="env steps per episode")
    parser.add_argument("--episodes", type=int, default=4, help="episodes per condition (conditions interleaved)")
    parser.add_argument("--every", type=int, default=5, help="k of the sparser prefix condition")
    add_output_arguments(parser, NAME)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    models = {"robometer": make_reward_model("tiny", seed=0), "roboreward": make_reward_model("roboreward:tiny", seed=0)}
    conditions = [(fam, "prefix", 1, False) for fam in models] + [(fam, "prefix", 1, True) for fam in models]
    conditions += [(fam, "prefix", args.every, False) for fam in models]
    conditions += [(fam, "episode_end", 1, False) for fam in models]
    for model in models.values():  # warm up (first calls allocate)
        run_episode(model, "prefix", 1, 4, seed=0)
    totals = {c: {"seconds": 0.0, "queries": 0, "hits": 0, "misses": 0} for c in conditions}
    for episode in range(args.episodes):  # conditions interleaved, so a change in the machine's load hits all alike
        for family, when, every, cache in conditions:
            res = run_episode(models[family], when, every, args.steps, seed=episode, cache=cache)
            for key, value in res.items():
                totals[(family, when, every, cache)][key] += value
        log.info("episode %d of %d done", episode + 1, args.episodes)
    rows = []
    for (family, when, every, cache), tot in totals.items():
        looked_up = tot["hits"] + tot["misses"]
        rows.append({"family": family, "when": when, "every": every, "cache": cache,
                     "ms_per_step": tot["seconds"] / (args.steps * args.episodes) * 1e3,
                     "queries_per_episode": tot["queries"] / args.episodes,
                     "cache_hit_rate": tot["hits"] / looked_up if cache and looked_up else None})
    base = next(r["ms_per_step"] for r in rows if r["family"] == "robometer" and r["when"] == "prefix"
                and r["every"] == 1 and not r["cache"])
    for r in rows:
        r["ratio_to_robometer_every_step"] = r["ms_per_step"] / base
    print(f"{'family':<11} {'when':<12} {'every':>5} {'cache':>5} {'ms/step':>8} {'queries/ep':>10} "
          f"{'hit rate':>8} {'x Robometer k=1':>16}")
    for r in rows:
        every = str(r["every"]) if r["when"] == "prefix" else "-"
        hit = "-" if r["cache_hit_rate"] is None else f"{r['cache_hit_rate']:.2f}"
        print(f"{r['family']:<11} {r['when']:<12} {every:>5} {'yes' if r['cache'] else 'no':>5} "
              f"{r['ms_per_step']:>8.2f} {r['queries_per_episode']:>10.1f} {hit:>8} "
              f"{r['ratio_to_robometer_every_step']:>16.2f}")
    out = output_path(args, NAME)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"steps": args.steps, "episodes": args.episodes, "frames": "64x64",
                               "models": {k: m.info().to_dict() for k, m in models.items()},
                               "threads": torch.get_num_threads(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
