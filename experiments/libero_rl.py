"""Online RL on a LIBERO task: env sparse reward vs Robometer rewards (with / without success termination).

SAC (stable-baselines3) on ``rlrm/LIBERO-v0`` with three reward variants, the published recipe:

* ``sparse`` - LIBERO's own reward (1 on success), episode ends on success.
* ``robometer`` - Robometer progress-delta reward + success bonus; episodes run to the time limit.
* ``robometer_term`` - the same reward, and the Robometer success detector ends the episode.

Every ``--eval-every`` env steps the policy runs ``--eval-episodes`` deterministic episodes on a
separate env judged by LIBERO's ground-truth success (the same fixed initial states each time).
Writes ``libero_rl.json`` (success rate vs env steps per variant and seed) and ``libero_rl.png``.
With ``--base-policy PATH`` (an SB3 checkpoint, e.g. a ``model.zip`` this script saved) every
variant learns a residual on top of that frozen policy.

Full scale, Robometer-4B on a GPU worker (``rlrm worker --model robometer/Robometer-4B``)::

    python experiments/libero_rl.py --reward-source tcp://gpu:5555 --suite libero_spatial --task-id 0

Smoke run on CPU with the tiny (or demo) model in-process, a few minutes::

    python experiments/libero_rl.py --smoke --model demo --out outputs/libero_rl_smoke
"""

from __future__ import annotations

import argparse
import json
import logging
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

import envs  # noqa: F401  (registers rlrm/LIBERO-v0)
from rlrm.rl.algorithms import make_algorithm
from rlrm.rl.evaluation import evaluate_policy
from rlrm.shaping import Shaping, SuccessDetector

log = logging.getLogger("libero_rl")

VARIANTS = ("sparse", "robometer", "robometer_term")


@dataclass
class Settings:
    """Scale of one study; ``full()`` and ``smoke()`` are the two presets."""

    total_steps: int
    eval_every: int
    eval_episodes: int
    image_size: int
    max_episode_steps: int | None  # None: the suite's limit
    settle_steps: int
    sac: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def full(cls) -> Settings:
        """GPU-worker scale: 224 px frames, 100k env steps, 20 evaluation episodes every 5k steps."""
        return cls(total_steps=100_000, eval_every=5_000, eval_episodes=20, image_size=224,
                   max_episode_steps=None, settle_steps=10,
                   sac=dict(name="sac", learning_rate=3e-4, buffer_size=200_000, learning_starts=2_000,
                            batch_size=256, gamma=0.99, tau=0.005, train_freq=1, gradient_steps=1,
                            net_arch=[256, 256]))

    @classmethod
    def smoke(cls) -> Settings:
        """CPU smoke scale: 64 px, 40 env steps, one 12-step evaluation episode every 20 steps."""
        return cls(total_steps=40, eval_every=20, eval_episodes=1, image_size=64,
                   max_episode_steps=12, settle_steps=2,
                   sac=dict(name="sac", learning_rate=3e-4, buffer_size=1_000, learning_starts=10,
                            batch_size=16, gamma=0.99, tau=0.005, train_freq=1, gradient_steps=1,
                            net_arch=[64, 64]))


class SuccessCurve(BaseCallback):
    """Evaluates the policy every ``every`` env steps (and before training) by the env's own success."""

    def __init__(self, eval_env: gym.Env, every: int, episodes: int, seed: int) -> None:
        super().__init__()
        self.eval_env, self.every, self.episodes, self.seed = eval_env, every, episodes, seed
        self.points: list[dict[str, Any]] = []

    def evaluate(self) -> None:
        """One point of the curve at the current env step."""
        result = evaluate_policy(self.model, self.eval_env, self.episodes, seed=self.seed)
        self.points.append({"env_steps": int(self.num_timesteps), "success_rate": result["success_rate"],
                            "mean_length": result["mean_length"]})
        log.info("step %d: eval success rate %.2f", self.num_timesteps, result["success_rate"])

    def _on_training_start(self) -> None:
        self.evaluate()

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0:
            self.evaluate()
        return True


def make_train_env(base_env: gym.Env, variant: str, scorer: Any, max_frames: int, base_policy: Any,
                   residual_scale: float) -> gym.Env:
    """The training env of one variant, on a shared LIBERO env (built once, it takes ~20 s)."""
    from rlrm.rl.residual import ResidualAction
    from rlrm.wrappers import RobometerReward

    libero = base_env.unwrapped
    libero.terminate_on_success = variant == "sparse"  # Robometer variants: the model decides
    env = base_env
    if variant != "sparse":
        env = RobometerReward(base_env, task=None, source=scorer, max_frames=max_frames,
                              shaping=Shaping(progress="delta", success_bonus=1.0),
                              success=SuccessDetector(), terminate_on_success=variant == "robometer_term")
    if base_policy is not None:
        env = ResidualAction(env, base_policy, scale=residual_scale)
    return env


def run_variant(variant: str, seed: int, settings: Settings, train_base: gym.Env, eval_base: gym.Env,
                scorer: Any, args: argparse.Namespace, base_policy: Any, out: Path) -> dict[str, Any]:
    """Train one variant with one seed; returns its success curve."""
    from rlrm.rl.residual import ResidualAction, zero_init_residual

    env = make_train_env(train_base, variant, scorer, args.max_frames, base_policy, args.residual_scale)
    eval_env = eval_base if base_policy is None else ResidualAction(eval_base, base_policy, args.residual_scale)
    model = make_algorithm(dict(settings.sac), env, seed=seed)
    if base_policy is not None:
        zero_init_residual(model)
    curve = SuccessCurve(eval_env, settings.eval_every, settings.eval_episodes, seed=10_000)
    start = time.perf_counter()
    model.learn(total_timesteps=settings.total_steps, callback=curve, progress_bar=args.progress)
    seconds = time.perf_counter() - start
    run_dir = out / variant / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.zip")
    return {"variant": variant, "seed": seed, "curve": curve.points, "train_seconds": seconds,
            "env_steps_per_s": settings.total_steps / seconds, "checkpoint": str(run_dir / "model.zip")}


def plot_curves(runs: list[dict[str, Any]], title: str, path: Path) -> None:
    """Success rate vs env steps, one line per variant (mean over seeds, band = min..max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for variant in VARIANTS:
        curves = [r["curve"] for r in runs if r["variant"] == variant]
        if not curves:
            continue
        steps = np.array([p["env_steps"] for p in curves[0]])
        rates = np.array([[p["success_rate"] for p in c] for c in curves])
        ax.plot(steps, rates.mean(axis=0), marker="o", label=f"{variant} ({len(curves)} seeds)")
        if len(curves) > 1:
            ax.fill_between(steps, rates.min(axis=0), rates.max(axis=0), alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("success rate (LIBERO ground truth)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def open_scorer(args: argparse.Namespace) -> Any:
    """A worker client for ``--reward-source``, else the ``--model`` loaded in this process."""
    from rlrm.transport import make_scorer

    if args.reward_source:
        return make_scorer(args.reward_source, timeout_ms=args.timeout_ms)
    from rlrm.models import make_reward_model
    from rlrm.rl.reward_source import resolve_model_spec

    return make_scorer(make_reward_model(resolve_model_spec(args.model)))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run every variant x seed, write JSON and PNG."""
    from rlrm.known_notices import silence_known_notices

    silence_known_notices()  # robosuite's macro-file warnings, the Adroit notice, SDL's XDG_RUNTIME_DIR line
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="libero_spatial")
    parser.add_argument("--task-id", type=int, default=0)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated from {VARIANTS}")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--smoke", action="store_true", help="CPU smoke scale (see Settings.smoke)")
    parser.add_argument("--reward-source", default=None, help="worker URL, e.g. tcp://gpu:5555 (Robometer-4B)")
    parser.add_argument("--model", default="demo", help="in-process model when no --reward-source: demo | tiny | dir")
    parser.add_argument("--timeout-ms", type=int, default=60_000)
    parser.add_argument("--max-frames", type=int, default=8)
    parser.add_argument("--total-steps", type=int, default=None, help="override the preset")
    parser.add_argument("--eval-every", type=int, default=None, help="override the preset")
    parser.add_argument("--eval-episodes", type=int, default=None, help="override the preset")
    parser.add_argument("--base-policy", default=None, help="SB3 checkpoint (.zip) to learn a residual on")
    parser.add_argument("--base-algo", default="SAC", help="SB3 class of --base-policy")
    parser.add_argument("--residual-scale", type=float, default=0.2)
    parser.add_argument("--out", default="outputs/libero_rl")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        parser.error(f"unknown variants {bad}; expected names from {VARIANTS}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    settings = Settings.smoke() if args.smoke else Settings.full()
    for name in ("total_steps", "eval_every", "eval_episodes"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    env_kwargs = dict(suite=args.suite, task_id=args.task_id, image_size=settings.image_size,
                      max_episode_steps=settings.max_episode_steps, settle_steps=settings.settle_steps)
    train_base = gym.make("rlrm/LIBERO-v0", **env_kwargs)
    eval_base = gym.make("rlrm/LIBERO-v0", terminate_on_success=True, **env_kwargs)
    base_policy = None
    if args.base_policy:
        from rlrm.rl.residual import SB3Policy

        base_policy = SB3Policy(args.base_policy, algo=args.base_algo)
    scorer = open_scorer(args) if any(v != "sparse" for v in variants) else None
    reward_model = scorer.info().name if scorer is not None else None
    runs = []
    try:
        for variant in variants:
            for seed in seeds:
                log.info("variant %s, seed %d", variant, seed)
                runs.append(run_variant(variant, seed, settings, train_base, eval_base, scorer, args,
                                        base_policy, out))
    finally:
        if scorer is not None:
            scorer.close()
        train_base.close()
        eval_base.close()

    task = train_base.unwrapped.task
    report = {
        "experiment": "libero_rl",
        "suite": args.suite, "task_id": args.task_id, "task": task,
        "reward_model": reward_model, "reward_source": args.reward_source or "in-process",
        "scale": "smoke" if args.smoke else "full", "settings": asdict(settings),
        "base_policy": args.base_policy, "residual_scale": args.residual_scale if args.base_policy else None,
        "runs": runs,
    }
    (out / "libero_rl.json").write_text(json.dumps(report, indent=2))
    title = "\n".join(textwrap.wrap(f"{args.suite} task {args.task_id}: {task}", 70))
    title += f"\nreward model {reward_model}" + (" (residual on a base policy)" if args.base_policy else "")
    plot_curves(runs, title, out / "libero_rl.png")
    for r in runs:
        final = r["curve"][-1]["success_rate"] if r["curve"] else float("nan")
        log.info("%s seed %d: final success %.2f, %.1f env steps/s", r["variant"], r["seed"], final,
                 r["env_steps_per_s"])
    log.info("wrote %s and %s", out / "libero_rl.json", out / "libero_rl.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
