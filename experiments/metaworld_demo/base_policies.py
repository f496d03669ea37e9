"""Train the mediocre MetaWorld base policies the residual runs start from (behaviour cloning, state).

For each task: record up to 20 demonstrations of MetaWorld's scripted expert, fit a BC MLP
(:func:`rlrm.rl.bc.train_bc`) on the first ``n`` of them for each ``n`` in ``--demos``, evaluate each
on 20 episodes with fixed seeds (success = ``info["is_success"]`` at the end of the 150-step episode),
and ship the policy whose success is nearest ``--target`` without exceeding ``--max-success``: a
policy that works sometimes, as users bring. Every attempt is written to the JSON.

    python experiments/metaworld_demo/base_policies.py --out envs/assets/bases --json outputs/bases.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import envs  # noqa: E402,F401
from envs.metaworld_experts import expert_policy  # noqa: E402
from rlrm.rl.bc import rollout, train_bc  # noqa: E402

log = logging.getLogger("base_policies")

EPISODE_STEPS = 150
EVAL_SEED = 50_000


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["push-v3", "pick-place-v3", "drawer-open-v3"])
    parser.add_argument("--demos", type=int, nargs="+", default=[2, 3, 5, 8, 12, 20])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--target", type=float, default=0.35)
    parser.add_argument("--max-success", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path("outputs/bases"))
    parser.add_argument("--json", type=Path, default=Path("outputs/bases/base_policies.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    report: dict[str, dict] = {}
    for task in args.tasks:
        env = gym.make("rlrm/MetaWorld-v0", task_name=task, image_size=64, max_episode_steps=EPISODE_STEPS)
        demos = rollout(env, expert_policy(task), max(args.demos), seed=0)
        expert_rate = float(np.mean([d["success"] for d in demos]))
        attempts = []
        for n in args.demos:
            obs = np.concatenate([d["observations"] for d in demos[:n]])
            act = np.concatenate([d["actions"] for d in demos[:n]])
            policy = train_bc(obs, act, epochs=args.epochs, seed=0,
                              meta={"task": task, "demos": n, "epochs": args.epochs, "source": "metaworld expert"})
            evals = rollout(env, policy.act, args.eval_episodes, seed=EVAL_SEED)
            rate = float(np.mean([e["success"] for e in evals]))
            log.info("%s: BC on %d demos (%d pairs) -> success %.2f over %d episodes", task, n, len(obs), rate,
                     args.eval_episodes)
            attempts.append({"demos": n, "pairs": int(len(obs)), "success": rate, "policy": policy})
        eligible = [a for a in attempts if a["success"] <= args.max_success] or attempts[:1]
        best = min(eligible, key=lambda a: abs(a["success"] - args.target))
        best["policy"].meta["eval_success"] = best["success"]
        best["policy"].meta["eval_episodes"] = args.eval_episodes
        path = best["policy"].save(args.out / f"metaworld_{task.removesuffix('-v3').replace('-', '_')}_bc.pt")
        log.info("%s: shipped %s (%d demos, success %.2f)", task, path, best["demos"], best["success"])
        report[task] = {"expert_success": expert_rate, "shipped": str(path), "shipped_demos": best["demos"],
                        "shipped_success": best["success"],
                        "attempts": [{k: v for k, v in a.items() if k != "policy"} for a in attempts]}
        env.close()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(json.dumps({t: {k: r[k] for k in ("shipped_demos", "shipped_success", "expert_success")}
                      for t, r in report.items()}, indent=1))


if __name__ == "__main__":
    main()
