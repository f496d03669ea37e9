"""Collect the FetchReach (+ a little FetchPush) trajectories the ``demo`` reward model is trained on.

Scripted controllers on ``rlrm/FetchReach-v0`` / ``rlrm/FetchPush-v0`` with default kwargs (so the
frames are exactly what RL renders: 128x128, fast rendering, the env's default camera):

* success     - a speed-limited P-controller to the target, with action noise and random speed;
* suboptimal  - the same controller aimed at a point 7-13 cm off the target (never succeeds);
* failure     - a smoothed random walk, moving away from the target, or holding still.

Hard negatives (``--hard-negatives``, for the fine-tune that fixes the "press on the table" exploit SAC
found; labelled ``failure``, true distance-based progress as above):

* table  - the gripper driven down onto the table (z 0.38-0.41) at a point 12+ cm (xy) from the target,
  then held there;
* decoy  - the controller reaches a decoy point 12-25 cm from the target, then stops;
* hover  - the controller stops 7-15 cm straight above or below the target (within 3 cm in xy, never
  into the table): right place in the image, wrong height, the depth ambiguity of a single camera.

Random FetchPush episodes (labelled ``failure``, task id ``fetch_push``) show the model videos of
another task, so the published "different task" preference pairs can be drawn. Each episode is written with :func:`rlrm.train.data.write_trajectory`, with true
per-frame progress ``clip((d0 - d_t) / (d0 - 0.05), 0, 1)`` (d: gripper- or block-to-target
distance; 1 exactly when Fetch reports success) and per-frame ``info["is_success"]``.

    python experiments/demo_model/collect.py --out outputs/demo_model/data
    python experiments/demo_model/collect.py --hard-negatives --link outputs/demo_model/data \
        --out outputs/demo_model_v2/data   # hard negatives + symlinks to the original episodes
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import envs  # noqa: E402,F401  (registers rlrm/Fetch*-v0)
from rlrm.train.data import Trajectory, write_trajectory  # noqa: E402
from rlrm.wrappers.frames import FrameSource  # noqa: E402

log = logging.getLogger("collect")

SUCCESS_DISTANCE = 0.05  # Fetch's distance_threshold
# What the model sees (configs/env/fetch_reach.yaml must match): the success ball, front + side tiled.
GOAL_MARKER = "success_ball"
CAMERAS = ("front", "side")
IMAGE_SIZE = 128
REACH_PHRASINGS = [
    "move the gripper to the red target",  # the env's own instruction: RL uses this one
    "reach the red target",
    "move the end effector to the red dot",
    "touch the red ball with the gripper",
    "bring the gripper to the red sphere",
    "reach for the red target with the robot arm",
]
PUSH_PHRASINGS = [
    "push the black block to the red target",
    "slide the block over to the red dot",
    "push the cube onto the red target",
]
DISTRACTORS = [
    "open the drawer",
    "pick up the black block and move it to the red target",
    "close the gripper",
    "wipe the table with the sponge",
    "stack the red block on the blue block",
    "turn on the faucet",
]


PROGRESS_SCALE = 0.07  # metres: progress falls to 1/e this far outside the success ball


def progress_curve(distances: np.ndarray, success: np.ndarray) -> np.ndarray:
    """(T,) progress from distances to the target: 1 inside the success ball, exp(-(d - 0.05) / 0.07) outside.

    An absolute function of the distance (not relative to the start): every frame's label can be read off
    that frame, a reach that stops 7-15 cm short ends at 0.24-0.75 instead of the 0.5-0.9 a start-relative
    label gives it, and the slope is steepest near the target, where the policy has to be precise.
    """
    d = np.maximum(np.asarray(distances, np.float64) - SUCCESS_DISTANCE, 0.0)
    p = np.exp(-d / PROGRESS_SCALE)
    p[success > 0.5] = 1.0
    return p.astype(np.float32)


def towards(src: np.ndarray, dst: np.ndarray, speed: float, gain: float = 10.0) -> np.ndarray:
    """Cartesian action (3,) toward ``dst``: P-control with gain, norm capped at ``speed``."""
    a = gain * (dst - src)
    n = np.linalg.norm(a)
    return a if n <= speed else a * (speed / n)


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def reach_policy(kind: str, rng: np.random.Generator, goal: np.ndarray, start: np.ndarray):
    """A closure obs -> action for one FetchReach episode of the given quality ``kind``."""
    speed = rng.uniform(0.1, 0.4)
    noise = rng.uniform(0.0, 0.25)
    delay = int(rng.integers(0, 6))
    aim = goal
    if kind == "suboptimal":
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        aim = goal + direction * rng.uniform(0.07, 0.13)
        speed = rng.uniform(0.1, 0.35)
    mode = rng.choice(["random", "away", "still"], p=[0.5, 0.3, 0.2])
    leave_at = int(rng.integers(18, 35))
    leave_to = goal + _unit(rng) * rng.uniform(0.08, 0.2)
    leave_to[2] = max(leave_to[2], 0.44)
    smooth = np.zeros(3)
    state = {"t": 0}

    def act(obs: dict) -> np.ndarray:
        nonlocal smooth
        x = obs["achieved_goal"]
        t = state["t"]
        state["t"] += 1
        a = np.zeros(4)
        if kind == "failure":
            if mode == "random":
                smooth = 0.7 * smooth + 0.3 * rng.normal(scale=0.8, size=3)
                a[:3] = smooth
            elif mode == "away":
                a[:3] = -towards(x, goal, speed, gain=100.0) + rng.normal(scale=noise, size=3)
            else:
                a[:3] = rng.normal(scale=0.03, size=3)
        elif kind == "reach_leave" and t >= leave_at:
            a[:3] = towards(x, leave_to, speed) + rng.normal(scale=noise * speed, size=3)
        elif t >= delay:
            a[:3] = towards(x, aim, speed) + rng.normal(scale=noise * speed, size=3)
        else:
            a[:3] = rng.normal(scale=0.05, size=3)
        a[3] = rng.uniform(-1, 1)
        return np.clip(a, -1, 1)

    return act


HARD_NEGATIVE_KINDS = ("table", "decoy", "hover")


def hard_negative_policy(kind: str, rng: np.random.Generator, goal: np.ndarray, start: np.ndarray):
    """A closure obs -> action that ends away from ``goal``: ``table`` (pressed down), ``decoy`` (stopped
    elsewhere) or ``hover`` (stopped above / below it)."""
    speed = rng.uniform(0.15, 0.4)
    noise = rng.uniform(0.0, 0.15)
    for _ in range(1000):  # a point in the reachable box around the start, far enough from the target
        aim = start + rng.uniform(-0.15, 0.15, size=3)
        if kind == "table":
            aim[2] = rng.uniform(0.38, 0.41)  # at / into the table top (~0.42): the gripper rests on it
            if np.linalg.norm((aim - goal)[:2]) >= 0.12:
                break
        elif kind == "hover":
            aim = goal + np.r_[rng.uniform(-0.03, 0.03, size=2), rng.choice([-1.0, 1.0]) * rng.uniform(0.07, 0.15)]
            aim[2] = max(aim[2], 0.43)  # above the table top (~0.42)
            if np.linalg.norm(aim - goal) >= 0.07:
                break
        elif np.linalg.norm(aim - goal) >= 0.12 and np.linalg.norm(aim - goal) <= 0.25:
            break
    else:
        raise RuntimeError(f"no {kind} aim point found away from the target {goal}")
    stop_at = int(rng.integers(25, 45))  # decoy: stops moving after this step
    state = {"t": 0}

    def act(obs: dict) -> np.ndarray:
        t = state["t"]
        state["t"] += 1
        a = np.zeros(4)
        if kind in ("decoy", "hover") and t >= stop_at:
            a[:3] = rng.normal(scale=0.02, size=3)
        else:
            a[:3] = towards(obs["achieved_goal"], aim, speed) + rng.normal(scale=noise * speed, size=3)
        a[3] = rng.uniform(-1, 1)
        return np.clip(a, -1, 1)

    return act


def collect_hard_negatives(env, out: Path, kind: str, count: int, seed0: int, steps: int, bar) -> int:
    """Write ``count`` FetchReach hard-negative failures of ``kind`` (table/decoy/hover); returns seeds used."""
    if kind not in HARD_NEGATIVE_KINDS:
        raise ValueError(f"hard-negative kind must be one of {HARD_NEGATIVE_KINDS}, got {kind!r}")
    written, seed = 0, seed0
    while written < count:
        seed += 1
        rng = np.random.default_rng(seed)
        frames, dists, succ = run_episode(
            env, lambda o, rng=rng: hard_negative_policy(kind, rng, o["desired_goal"], o["achieved_goal"]), seed, steps
        )
        if succ.any():
            continue  # passed through the target: not a failure
        task = REACH_PHRASINGS[0] if rng.random() < 0.6 else REACH_PHRASINGS[int(rng.integers(len(REACH_PHRASINGS)))]
        write_trajectory(
            Trajectory(frames, task, "failure", progress_curve(dists, succ), succ, task_id="fetch_reach",
                       episode_id=f"reach_{kind}_{seed:08d}", source=f"rlrm/FetchReach-v0 scripted hard negative ({kind})",
                       extra={"seed": seed, "final_distance": float(dists[-1]), "hard_negative": kind}),
            out,
        )
        written += 1
        bar.update(1)
    return seed - seed0


def link_episodes(src: Path, dst: Path) -> int:
    """Symlink every trajectory folder of ``src`` into ``dst`` (absolute links); returns how many."""
    folders = sorted(p.parent for p in src.glob("*/meta.json"))
    if not folders:
        raise FileNotFoundError(f"no trajectories (*/meta.json) under {src} to link")
    dst.mkdir(parents=True, exist_ok=True)
    for f in folders:
        link = dst / f.name
        if not link.exists():
            link.symlink_to(f.resolve(), target_is_directory=True)
    return len(folders)


def main_hard_negatives(args: argparse.Namespace) -> None:
    """Hard-negative splits (``train``, ``heldout_hard``) plus links to the ``--link`` episodes."""
    out = Path(args.out)
    plan = {"train": (20_000_000, {"table": 60, "decoy": 40, "hover": 60}),
            "heldout_hard": (30_000_000, {"table": 8, "decoy": 7, "hover": 10})}
    reach = make_env("FetchReach")
    for split, (seed0, counts) in plan.items():
        counts = {k: max(1, round(v * args.scale)) for k, v in counts.items()}
        with tqdm(total=sum(counts.values()), desc=f"hard negatives {split}") as bar:
            offset = seed0
            for kind, n in counts.items():
                offset += collect_hard_negatives(reach, out / split, kind, n, offset, args.steps, bar) + 1
    reach[0].close()
    # heldout = original held-out episodes + the hard held-out ones; train = original train + hard train
    link_episodes(out / "heldout_hard", out / "heldout")
    if args.link:
        for split in ("train", "heldout"):
            n = link_episodes(Path(args.link) / split, out / split)
            log.info("linked %d %s episodes from %s", n, split, args.link)
        shutil.copy(Path(args.link) / "instructions.json", out / "instructions.json")


def random_push_policy(rng: np.random.Generator):
    """A closure obs -> action for FetchPush: a smoothed random walk of the gripper."""
    smooth = np.zeros(3)

    def act(obs: dict) -> np.ndarray:
        nonlocal smooth
        smooth = 0.7 * smooth + 0.3 * rng.normal(scale=0.8, size=3)
        return np.clip(np.r_[smooth, -1.0], -1, 1)

    return act


def make_env(task: str = "FetchReach") -> tuple[gym.Env, FrameSource]:
    """The env and frame source RL uses with the demo reward: success ball, ``CAMERAS`` tiled."""
    env = gym.make(f"rlrm/{task}-v0", goal_marker=GOAL_MARKER, image_size=IMAGE_SIZE)
    return env, FrameSource(env, list(CAMERAS))


def run_episode(env, policy_factory, seed: int, steps: int):
    """Roll one episode; returns frames (T,H,W,3), distances (T,), success (T,)."""
    env, source = env
    obs, info = env.reset(seed=seed)
    policy = policy_factory(obs)
    frames, dists, succ = [source.read(obs)], [np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"])], [
        info["is_success"]
    ]
    for _ in range(steps):
        obs, _, _, _, info = env.step(policy(obs))
        frames.append(source.read(obs).copy())
        dists.append(np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"]))
        succ.append(info["is_success"])
    return np.stack(frames), np.asarray(dists), np.asarray(succ, np.float32)


def collect_reach(env, out: Path, kind: str, count: int, seed0: int, steps: int, bar) -> int:
    """Write ``count`` FetchReach episodes of quality ``kind``; returns how many seeds it used."""
    written, seed = 0, seed0
    while written < count:
        seed += 1
        rng = np.random.default_rng(seed)
        obs, _ = env[0].reset(seed=seed)
        if np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"]) < 0.08:
            continue  # too close to start: no visible progress to learn from
        frames, dists, succ = run_episode(
            env, lambda o, rng=rng: reach_policy(kind, rng, o["desired_goal"], o["achieved_goal"]), seed, steps
        )
        if kind == "reach_leave":
            if not succ.any() or succ[-1]:
                continue  # must have been inside the ball and left it
        elif (kind == "success") != bool(succ[-1]) or (kind != "success" and succ.any()):
            continue  # the label must match what happened
        task = REACH_PHRASINGS[int(rng.integers(len(REACH_PHRASINGS)))]
        write_trajectory(
            Trajectory(frames, task, "suboptimal" if kind == "reach_leave" else kind, progress_curve(dists, succ),
                       succ, task_id="fetch_reach",
                       episode_id=f"reach_{kind}_{seed:06d}", source="rlrm/FetchReach-v0 scripted",
                       extra={"seed": seed, "final_distance": float(dists[-1])}),
            out,
        )
        written += 1
        bar.update(1)
    return seed - seed0


def collect_push(env, out: Path, count: int, seed0: int, steps: int, bar) -> None:
    """Write ``count`` random FetchPush episodes that never succeed (quality ``failure``)."""
    written, seed = 0, seed0
    while written < count:
        seed += 1
        rng = np.random.default_rng(seed)
        frames, dists, succ = run_episode(env, lambda o, rng=rng: random_push_policy(rng), seed, steps)
        if succ.any():
            continue
        task = PUSH_PHRASINGS[int(rng.integers(len(PUSH_PHRASINGS)))]
        write_trajectory(
            Trajectory(frames, task, "failure", progress_curve(dists, succ), succ, task_id="fetch_push",
                       episode_id=f"push_failure_{seed:06d}", source="rlrm/FetchPush-v0 random",
                       extra={"seed": seed, "final_distance": float(dists[-1])}),
            out,
        )
        written += 1
        bar.update(1)


def main() -> None:
    """Collect the train and held-out splits."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="outputs/demo_model/data")
    ap.add_argument("--steps", type=int, default=50, help="env steps per episode (frames = steps + 1)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every episode count")
    ap.add_argument("--hard-negatives", action="store_true",
                    help="collect only the hard-negative failures (table, decoy, hover) into train/ and heldout_hard/")
    ap.add_argument("--link", default=None,
                    help="with --hard-negatives: symlink this data folder's train/ and heldout/ episodes in too")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    if args.hard_negatives:
        main_hard_negatives(args)
        return
    plan = {  # split -> seed offset, reach episodes per kind, hard negatives per kind, random push episodes
        "train": (0, {"success": 200, "reach_leave": 50, "suboptimal": 60, "failure": 50},
                  {"hover": 60, "table": 35, "decoy": 35}, 20),
        "heldout": (10_000_000, {"success": 30, "reach_leave": 8, "suboptimal": 12, "failure": 10},
                    {"hover": 10, "table": 8, "decoy": 8}, 5),
    }
    reach, push = make_env("FetchReach"), make_env("FetchPush")
    for split, (seed0, counts, hard, n_push) in plan.items():
        out = Path(args.out) / split
        counts = {k: max(1, round(v * args.scale)) for k, v in counts.items()}
        hard = {k: max(1, round(v * args.scale)) for k, v in hard.items()}
        n_push = max(1, round(n_push * args.scale))
        total = sum(counts.values()) + sum(hard.values()) + n_push
        with tqdm(total=total, desc=f"collect {split}") as bar:
            offset = seed0
            for kind, n in counts.items():
                offset += collect_reach(reach, out, kind, n, offset, args.steps, bar) + 1
            offset = seed0 + 500_000
            for kind, n in hard.items():
                offset += collect_hard_negatives(reach, out, kind, n, offset, args.steps, bar) + 1
            collect_push(push, out, n_push, seed0 + 700_000, args.steps, bar)
    (Path(args.out) / "instructions.json").write_text(
        json.dumps({"fetch_reach": REACH_PHRASINGS, "fetch_push": PUSH_PHRASINGS, "distractors": DISTRACTORS}, indent=1)
    )
    reach[0].close()
    push[0].close()


if __name__ == "__main__":
    main()
