"""Collect the MetaWorld episodes the multi-task ``demo_mw`` reward model is trained on.

Scripted episodes of ``rlrm/MetaWorld-v0`` tasks (push, pick-place, drawer-open) rendered exactly as RL
renders them (``configs/env/metaworld_<task>.yaml``: the goal drawn as a translucent ball of the success
radius, the ``front`` and ``side`` views tiled into one 128x256 frame), written in the rlrm trajectory format (:mod:`rlrm.train.data`). Kinds per task:

* ``success``  - MetaWorld's scripted expert with action noise, run to the end of the episode: the
  object stays in the success state for many steps (the *hold* the reward must keep scoring high);
* ``clip``     - a success episode cut short before success (temporal clipping: partial progress);
* ``near``     - the expert stops (holds still) once the object is 5-10 cm outside the success region
  (near misses);
* ``failure``  - the expert until a random step, then a random walk or a freeze; or noise only;
* ``counterfactual`` - a successful video of one task under another task's sentence (RoboReward's
  counterfactual relabelling): progress 0, success 0.

Hard negatives (``--hard-negatives``, added for the third model after the second one's reward-hacking audit
found residual SAC parking the gripper, not the puck, in the goal ball):

* ``decoy``    - the gripper goes into the goal ball and stays there, the object left where it is, or first
  nudged by the expert for a few steps (the hack, labelled from the state: not a success);
* ``base``     - rollouts of the task's shipped BC base policy with action noise (the states residual RL
  starts from, successes and failures both, labelled from the state).

Labels are absolute functions of the state, so every frame's label can be read off that frame: 1 in
MetaWorld's success state, else ``0.25 * (0.3 * reach + 0.7 * move)`` with ``reach = 1 - |hand - object| /
0.15`` and ``move = 1 - (|object - goal| - radius) / 0.25`` (both clipped to [0, 1]): a dense ramp that
stays below 0.25 until the task is done, so a near miss can never look like a success.

    python experiments/metaworld_demo/collect.py --out outputs/demo_mw/data   # all tasks, then counterfactuals
    # or in parallel, one process per task, then the counterfactual episodes from what they wrote:
    python experiments/metaworld_demo/collect.py --tasks push-v3 --no-counterfactual &  # ... one per task
    python experiments/metaworld_demo/collect.py --counterfactual-only
    # the hard negatives of the third model, added to a copy of the data above:
    python experiments/metaworld_demo/collect.py --tasks push-v3 --hard-negatives 30 30 15 --out DIR
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
from tqdm import tqdm  # noqa: E402

import envs  # noqa: E402,F401  (registers rlrm/MetaWorld-v0)
from envs.metaworld import METAWORLD_TASKS  # noqa: E402
from envs.metaworld_experts import TASK_SPECS, expert_policy, task_state  # noqa: E402
from rlrm.train.data import Trajectory, write_trajectory  # noqa: E402
from rlrm.views import tile_views  # noqa: E402

log = logging.getLogger("collect")

TASKS = ("push-v3", "pick-place-v3", "drawer-open-v3")
CAMERAS = ("front", "side")
IMAGE_SIZE = 128
EPISODE_STEPS = 150       # configs/env/metaworld_*.yaml max_episode_steps
FRAME_STRIDE = 3          # keep every 3rd frame on disk (the reward samples 8 frames of an episode)
PHRASINGS = {
    "push-v3": [METAWORLD_TASKS["push-v3"], "push the red puck onto the green goal"],
    "pick-place-v3": [METAWORLD_TASKS["pick-place-v3"], "grasp the red puck and lift it to the blue goal"],
    "drawer-open-v3": [METAWORLD_TASKS["drawer-open-v3"], "pull the green drawer open"],
}
PROGRESS_CAP = 0.25


def progress_label(task_name: str, state: dict[str, float]) -> float:
    """Absolute progress of one frame (see the module docstring)."""
    if state["success"]:
        return 1.0
    spec = TASK_SPECS[task_name]
    reach = np.clip(1.0 - state["hand_to_obj"] / 0.15, 0.0, 1.0)
    move = np.clip(1.0 - max(state["obj_to_goal"] - spec.radius, 0.0) / spec.move_scale, 0.0, 1.0)
    return float(PROGRESS_CAP * (0.3 * reach + 0.7 * move))


_BASES: dict[str, object] = {}


def _base_policy(task_name: str):
    """The task's shipped BC base policy (configs/env/metaworld_<task>.yaml ``base_policy.path``)."""
    if task_name not in _BASES:
        from rlrm.rl.bc import BCPolicy

        root = Path(__file__).resolve().parents[2]
        _BASES[task_name] = BCPolicy.load(root / "envs" / "assets" / "bases" /
                                          f"metaworld_{task_name.removesuffix('-v3').replace('-', '_')}_bc.pt")
    return _BASES[task_name]


def render(env: gym.Env) -> np.ndarray:
    """The tiled front|side frame the reward model sees in RL."""
    base = env.unwrapped
    return tile_views([base.render_camera(name) for name in CAMERAS])


def run_episode(env: gym.Env, task_name: str, kind: str, rng: np.random.Generator, seed: int) -> dict:
    """One scripted episode of ``kind``; returns frames, per-frame labels and the final success."""
    obs, _ = env.reset(seed=seed)
    expert = expert_policy(task_name)
    noise = rng.uniform(0.0, 0.3)
    stop_at = int(rng.integers(5, 70))          # failure: expert until here
    near_margin = rng.uniform(0.05, 0.10)       # near: stop this far outside the success region
    failure_mode = rng.choice(["walk", "freeze", "noise"], p=[0.45, 0.3, 0.25])
    frozen = None
    walk = np.zeros(4)
    nudge_until = int(rng.integers(0, 40)) if rng.random() < 0.5 else 0   # decoy: expert steps first
    base = _base_policy(task_name) if kind == "base" else None
    base_noise = rng.uniform(0.0, 0.2)
    frames, progress, success = [], [], []
    for t in range(EPISODE_STEPS + 1):
        state = task_state(env, task_name)
        if t % FRAME_STRIDE == 0 or t == EPISODE_STEPS:
            frames.append(render(env))
            progress.append(progress_label(task_name, state))
            success.append(float(state["success"]))
        if t == EPISODE_STEPS:
            break
        action = np.asarray(expert(obs), np.float64)
        if kind == "near":
            if frozen is None and state["obj_to_goal"] < TASK_SPECS[task_name].radius + near_margin:
                frozen = np.r_[np.zeros(3), action[3]]
            if frozen is not None:
                action = frozen
        elif kind == "decoy" and t >= nudge_until:
            hand, goal = np.asarray(obs[0:3]), np.asarray(obs[36:39])
            action = np.r_[np.clip(10.0 * (goal - hand), -1.0, 1.0), -1.0] + rng.normal(0, 0.1, size=4)
        elif kind == "base":
            action = base.act(obs) + rng.normal(0, base_noise, size=4)
        elif kind == "failure":
            if failure_mode == "noise":
                action = rng.uniform(-1, 1, size=4)
            elif t >= stop_at:
                if failure_mode == "freeze":
                    action = np.r_[np.zeros(3), -1.0]
                else:
                    walk = 0.8 * walk + 0.2 * rng.normal(0, 1.0, size=4)
                    action = walk
        action = action + rng.normal(0, noise, size=4) * (kind in ("success", "near"))
        obs, _, _, _, _ = env.step(np.clip(action, -1, 1))
    return {
        "frames": np.stack(frames),
        "progress": np.asarray(progress, np.float32),
        "success": np.asarray(success, np.float32),
    }


def quality_of(kind: str, final_success: bool) -> str:
    """Trajectory quality label from the kind and the final frame's success."""
    if final_success:
        return "success"
    return "suboptimal" if kind in ("near", "clip", "base") else "failure"


def collect_task(out: Path, split: str, task_name: str, counts: dict[str, int], seed: int,
                 id_prefix: str = "") -> list[dict]:
    """Collect one task's episodes of one split: ``counts[kind]`` of each kind (and clips of the successes)."""
    rng = np.random.default_rng(seed)
    written: list[dict] = []
    root = out / split
    env = gym.make("rlrm/MetaWorld-v0", task_name=task_name, image_size=IMAGE_SIZE, goal_marker="success_ball",
                   max_episode_steps=EPISODE_STEPS + 10)
    jobs = [(kind, i) for kind in ("success", "near", "failure", "decoy", "base") for i in range(counts.get(kind, 0))]
    for kind, i in tqdm(jobs, desc=f"{split} {task_name}", mininterval=10):
        ep = run_episode(env, task_name, kind, rng, seed=int(rng.integers(1 << 30)))
        final = bool(ep["success"][-1] > 0.5)
        if kind == "success" and not final:
            kind_written = "failure"  # a noisy expert that missed: still a useful failure
        elif kind in ("near", "decoy") and final:
            kind_written = "success"
        else:
            kind_written = kind
        text = PHRASINGS[task_name][int(rng.random() < 0.3)]
        eid = f"{id_prefix}{split}_{task_name}_{kind}_{i:03d}"  # the kind as run (a decoy that succeeded keeps it)
        traj = Trajectory(ep["frames"], text, quality_of(kind_written, final), progress=ep["progress"],
                          success=ep["success"], task_id=task_name, episode_id=eid,
                          source="metaworld_scripted", extra={"kind": kind_written})
        write_trajectory(traj, root)
        written.append({"episode_id": eid, "task": task_name, "kind": kind_written,
                        "final_progress": float(ep["progress"][-1]), "final_success": final})
        if final and kind == "success" and rng.random() < counts["clip_frac"]:
            first = int(np.argmax(ep["success"] > 0.5))
            if first >= 6:
                cut = int(rng.integers(3, first))
                cid = f"{split}_{task_name}_clip_{i:03d}"
                clip = Trajectory(ep["frames"][:cut], text, "suboptimal", progress=ep["progress"][:cut],
                                  success=ep["success"][:cut], task_id=task_name, episode_id=cid,
                                  source="metaworld_scripted", extra={"kind": "clip"})
                write_trajectory(clip, root)
                written.append({"episode_id": cid, "task": task_name, "kind": "clip",
                                "final_progress": float(ep["progress"][cut - 1]), "final_success": False})
    env.close()
    return written


def collect_counterfactuals(out: Path, split: str, count: int, seed: int) -> list[dict]:
    """Another task's successes (read back from ``out/split``) under each task's sentence: progress 0."""
    from rlrm.train.data import TrajectoryDataset

    rng = np.random.default_rng(seed)
    root = out / split
    dataset = TrajectoryDataset(root)
    successes = {t: [i for i, m in enumerate(dataset.metas)
                     if m.get("task_id") == t and (m.get("extra") or {}).get("kind") == "success"] for t in TASKS}
    written: list[dict] = []
    for task_name in TASKS:
        others = [i for t in TASKS if t != task_name for i in successes[t]]
        for i in range(min(count, len(others))):
            ep = dataset[others[int(rng.integers(len(others)))]]
            text = PHRASINGS[task_name][int(rng.random() < 0.3)]
            eid = f"{split}_{task_name}_counterfactual_{i:03d}"
            n = ep.num_frames
            traj = Trajectory(ep.frames, text, "failure", progress=np.zeros(n, np.float32),
                              success=np.zeros(n, np.float32), task_id=task_name, episode_id=eid,
                              source="metaworld_counterfactual", extra={"kind": "counterfactual", "from": ep.episode_id})
            write_trajectory(traj, root)
            written.append({"episode_id": eid, "task": task_name, "kind": "counterfactual",
                            "final_progress": 0.0, "final_success": False})
    return written


def main(argv: list[str] | None = None) -> None:
    """Command line: collect train and held-out splits."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo_mw/data"))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--train", type=int, nargs=4, default=[35, 20, 30, 25],
                        metavar=("SUCCESS", "NEAR", "FAILURE", "COUNTERFACTUAL"), help="train episodes per task")
    parser.add_argument("--heldout", type=int, nargs=4, default=[8, 6, 6, 6],
                        metavar=("SUCCESS", "NEAR", "FAILURE", "COUNTERFACTUAL"), help="held-out episodes per task")
    parser.add_argument("--hard-negatives", type=int, nargs=3, default=None, metavar=("DECOY", "BASE", "NEAR"),
                        help="only these episodes per task (train; a quarter as many held out), added to --out")
    parser.add_argument("--no-counterfactual", action="store_true", help="skip the counterfactual stage")
    parser.add_argument("--counterfactual-only", action="store_true", help="only the counterfactual stage")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.hard_negatives:
        decoy, base, near = args.hard_negatives
        for split, scale, seed0 in (("train", 1.0, 2), ("heldout", 0.25, 3)):
            counts = {"decoy": round(decoy * scale), "base": round(base * scale), "near": round(near * scale),
                      "clip_frac": 0.0}
            written = []
            for task_name in args.tasks:
                written += collect_task(args.out, split, task_name, counts, seed=1000 * seed0 + TASKS.index(task_name),
                                        id_prefix="hn_")
            kinds: dict[str, int] = {}
            for ep in written:
                kinds[f"{ep['task']}/{ep['kind']}"] = kinds.get(f"{ep['task']}/{ep['kind']}", 0) + 1
            log.info("%s: %d hard-negative episodes written %s", split, len(written), json.dumps(kinds, sort_keys=True))
        return
    for split, numbers, seed0 in (("train", args.train, 0), ("heldout", args.heldout, 1)):
        counts = dict(zip(("success", "near", "failure", "counterfactual"), numbers, strict=True))
        counts["clip_frac"] = 0.5
        written: list[dict] = []
        if not args.counterfactual_only:
            for task_name in args.tasks:
                written += collect_task(args.out, split, task_name, counts,
                                        seed=1000 * seed0 + TASKS.index(task_name))
        if not args.no_counterfactual:
            written += collect_counterfactuals(args.out, split, counts["counterfactual"], seed=1000 * seed0 + 99)
        kinds: dict[str, int] = {}
        for ep in written:
            kinds[f"{ep['task']}/{ep['kind']}"] = kinds.get(f"{ep['task']}/{ep['kind']}", 0) + 1
        log.info("%s: %d episodes written %s", split, len(written), json.dumps(kinds, sort_keys=True))


if __name__ == "__main__":
    main()
