"""Collect LIBERO-Spatial task 0 episodes for the multi-task demo reward model (rlrm trajectory format).

Scripted episodes of ``rlrm/LIBERO-v0`` ("pick up the black bowl between the plate and the ramekin and place it
on the plate") rendered exactly as RL renders them (``configs/env/libero_spatial_0.yaml``: the ``agentview``
and ``robot0_eye_in_hand`` cameras at 128 px tiled into one 128x256 frame), written in the rlrm trajectory
format (:mod:`rlrm.train.data`), the same kinds and labels as the MetaWorld episodes
(``experiments/metaworld_demo/collect.py``):

* ``success``  - the scripted expert (:mod:`envs.libero_experts`) with action noise, run to the end of the
  150-step episode: the bowl stays on the plate for many steps (the *hold*);
* ``clip``     - a success episode cut short before success (temporal clipping: partial progress);
* ``near``     - the expert puts the bowl down, or stops holding it in the air, with its centre 5-10 cm
  outside LIBERO's 3 cm success radius around the plate's centre (near misses);
* ``failure``  - the expert until a random step, then a random walk or a freeze; or noise only;
* ``counterfactual`` - a successful video under the sentence of another LIBERO-Spatial task that names a
  bowl this scene does not have (on the cookie box, in the drawer, on the stove, ...): progress 0, success 0.

Labels are absolute functions of the simulator state (:func:`envs.libero_experts.task_state`): 1 in LIBERO's
success state, else ``0.25 * (0.3 * reach + 0.7 * move)`` with ``reach = 1 - |hand - rim| / 0.15`` and
``move = 1 - (|bowl - plate|_xy - 0.03) / 0.15`` (clipped to [0, 1]): below 0.25 until the task is done.

    python experiments/libero_demo/collect.py --out outputs/libero_demo/data            # train + heldout
    python experiments/libero_demo/collect.py --splits heldout --out outputs/libero_demo/data   # one split
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import envs  # noqa: E402,F401  (registers rlrm/LIBERO-v0)
from envs.libero_experts import TASK_SPECS, expert_policy, task_state  # noqa: E402
from rlrm.train.data import Trajectory, write_trajectory  # noqa: E402
from rlrm.views import tile_views  # noqa: E402

log = logging.getLogger("collect_libero")

SUITE, TASK_ID = "libero_spatial", 0
TASK_NAME = f"{SUITE}_{TASK_ID}"
CAMERAS = ("agentview", "robot0_eye_in_hand")   # configs/env/libero_spatial_0.yaml reward_camera
IMAGE_SIZE = 128
EPISODE_STEPS = 150       # configs/env/libero_spatial_0.yaml max_episode_steps
FRAME_STRIDE = 3          # keep every 3rd frame on disk (the reward samples 8 frames of an episode)
PHRASINGS = [
    "pick up the black bowl between the plate and the ramekin and place it on the plate",
    "put the black bowl that sits between the plate and the ramekin onto the plate",
]
# Other LIBERO-Spatial sentences (tasks 3, 4, 5, 7, 9): a success of task 0 is none of them. Tasks 1, 2, 6 and 8
# ("next to the ramekin", "from table center", "next to the cookie box", "next to the plate") are left out:
# in task 0's scene its bowl could be described that way too.
OTHER_SENTENCES = [
    "pick up the black bowl on the cookie box and place it on the plate",
    "pick up the black bowl in the top drawer of the wooden cabinet and place it on the plate",
    "pick up the black bowl on the ramekin and place it on the plate",
    "pick up the black bowl on the stove and place it on the plate",
    "pick up the black bowl on the wooden cabinet and place it on the plate",
]
PROGRESS_CAP = 0.25


def progress_label(state: dict[str, float]) -> float:
    """Absolute progress of one frame (see the module docstring)."""
    if state["success"]:
        return 1.0
    spec = TASK_SPECS[(SUITE, TASK_ID)]
    reach = np.clip(1.0 - state["hand_to_bowl"] / 0.15, 0.0, 1.0)
    move = np.clip(1.0 - max(state["bowl_to_plate"] - spec.radius, 0.0) / spec.move_scale, 0.0, 1.0)
    return float(PROGRESS_CAP * (0.3 * reach + 0.7 * move))


def render(env: gym.Env) -> np.ndarray:
    """The tiled agentview|wrist frame the reward model sees in RL."""
    base = env.unwrapped
    return tile_views([base.render_camera(name) for name in CAMERAS])


def _near_offset(env: gym.Env, rng: np.random.Generator) -> np.ndarray:
    """A place 5-10 cm outside the success radius, on the side of the plate the bowl comes from (or sideways)."""
    scene = env.unwrapped._libero.env
    spec = TASK_SPECS[(SUITE, TASK_ID)]
    bowl = np.asarray(scene.sim.data.body_xpos[scene.obj_body_id[spec.obj]][:2])
    plate = np.asarray(scene.sim.data.body_xpos[scene.obj_body_id[spec.target]][:2])
    toward = (bowl - plate) / max(np.linalg.norm(bowl - plate), 1e-6)
    angle = rng.uniform(-1.2, 1.2)     # up to ~70 degrees off the line from the plate to the bowl
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (spec.radius + rng.uniform(0.05, 0.10)) * (rot @ toward)


def run_episode(env: gym.Env, kind: str, rng: np.random.Generator, seed: int) -> dict:
    """One scripted episode of ``kind``; returns frames, per-frame labels and the final success."""
    obs, info = env.reset(seed=seed)
    noise = rng.uniform(0.0, 0.3) if kind in ("success", "near") else 0.0
    offset = _near_offset(env, rng) if kind == "near" else np.zeros(2)
    expert = expert_policy(env, noise=noise, seed=int(rng.integers(1 << 30)), place_offset=offset)
    near_in_air = kind == "near" and rng.random() < 0.4      # stop while holding the bowl above the miss
    stop_at = int(rng.integers(5, 90))                          # failure: expert until here
    failure_mode = rng.choice(["walk", "freeze", "noise"], p=[0.45, 0.3, 0.25])
    walk = np.zeros(7)
    frames, progress, success = [], [], []
    for t in range(EPISODE_STEPS + 1):
        state = task_state(env)
        if t % FRAME_STRIDE == 0 or t == EPISODE_STEPS:
            frames.append(render(env))
            progress.append(progress_label(state))
            success.append(float(state["success"]))
        if t == EPISODE_STEPS:
            break
        action = np.asarray(expert(obs), np.float64)
        if near_in_air and expert.phase in ("lower", "release", "retreat"):
            action = np.r_[np.zeros(6), 1.0]                        # hold the bowl still, in the air
        elif kind == "failure":
            if failure_mode == "noise":
                action = np.r_[rng.uniform(-1, 1, size=3), np.zeros(3), rng.choice([-1.0, 1.0])]
            elif t >= stop_at:
                if failure_mode == "freeze":
                    action = np.r_[np.zeros(6), action[6]]
                else:
                    walk = 0.8 * walk + 0.2 * np.r_[rng.normal(0, 1.0, size=3), np.zeros(3), rng.normal(0, 1.0)]
                    action = walk
        obs, _, _, _, info = env.step(np.clip(action, -1, 1))
    return {
        "frames": np.stack(frames),
        "progress": np.asarray(progress, np.float32),
        "success": np.asarray(success, np.float32),
    }


def quality_of(kind: str, final_success: bool) -> str:
    """Trajectory quality label from the kind and the final frame's success."""
    if final_success:
        return "success"
    return "suboptimal" if kind in ("near", "clip") else "failure"


def collect_split(out: Path, split: str, counts: dict[str, int], seed: int) -> list[dict]:
    """Collect one split: ``counts[kind]`` episodes of each kind, clips of a fraction of the successes and
    ``counts["counterfactual"]`` relabelled successes."""
    rng = np.random.default_rng(seed)
    written: list[dict] = []
    root = out / split
    env = gym.make("rlrm/LIBERO-v0", suite=SUITE, task_id=TASK_ID, image_size=IMAGE_SIZE, terminate_on_success=False,
                   max_episode_steps=EPISODE_STEPS + 10)
    successes: list[Trajectory] = []
    jobs = [(kind, i) for kind in ("success", "near", "failure") for i in range(counts.get(kind, 0))]
    for kind, i in tqdm(jobs, desc=f"{split} {TASK_NAME}", mininterval=30):
        ep = run_episode(env, kind, rng, seed=int(rng.integers(1 << 30)))
        final = bool(ep["success"][-1] > 0.5)
        if kind == "success" and not final:
            kind_written = "failure"  # a noisy expert that missed: still a useful failure
        elif kind == "near" and final:
            kind_written = "success"
        else:
            kind_written = kind
        text = PHRASINGS[int(rng.random() < 0.3)]
        eid = f"{split}_{TASK_NAME}_{kind}_{i:03d}"
        traj = Trajectory(ep["frames"], text, quality_of(kind_written, final), progress=ep["progress"],
                          success=ep["success"], task_id=TASK_NAME, episode_id=eid, source="libero_scripted",
                          extra={"kind": kind_written})
        write_trajectory(traj, root)
        written.append({"episode_id": eid, "task": TASK_NAME, "kind": kind_written,
                        "final_progress": float(ep["progress"][-1]), "final_success": final})
        if final and kind_written == "success":
            successes.append(traj)
        if final and kind == "success" and rng.random() < counts["clip_frac"]:
            first = int(np.argmax(ep["success"] > 0.5))
            if first >= 6:
                cut = int(rng.integers(3, first))
                cid = f"{split}_{TASK_NAME}_clip_{i:03d}"
                clip = Trajectory(ep["frames"][:cut], text, "suboptimal", progress=ep["progress"][:cut],
                                  success=ep["success"][:cut], task_id=TASK_NAME, episode_id=cid,
                                  source="libero_scripted", extra={"kind": "clip"})
                write_trajectory(clip, root)
                written.append({"episode_id": cid, "task": TASK_NAME, "kind": "clip",
                                "final_progress": float(ep["progress"][cut - 1]), "final_success": False})
    env.close()
    for i in range(min(counts.get("counterfactual", 0), len(successes) * len(OTHER_SENTENCES))):
        source = successes[int(rng.integers(len(successes)))]
        sentence = OTHER_SENTENCES[int(rng.integers(len(OTHER_SENTENCES)))]
        eid = f"{split}_{TASK_NAME}_counterfactual_{i:03d}"
        n = source.num_frames
        traj = Trajectory(source.frames, sentence, "failure", progress=np.zeros(n, np.float32),
                          success=np.zeros(n, np.float32), task_id=f"{SUITE}_other", episode_id=eid,
                          source="libero_counterfactual",
                          extra={"kind": "counterfactual", "from": source.episode_id})
        write_trajectory(traj, root)
        written.append({"episode_id": eid, "task": f"{SUITE}_other", "kind": "counterfactual",
                        "final_progress": 0.0, "final_success": False})
    return written


def main(argv: list[str] | None = None) -> None:
    """Command line: collect train and held-out splits."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/libero_demo/data"))
    parser.add_argument("--splits", nargs="+", default=["train", "heldout"], choices=["train", "heldout"])
    parser.add_argument("--train", type=int, nargs=4, default=[30, 15, 20, 10],
                        metavar=("SUCCESS", "NEAR", "FAILURE", "COUNTERFACTUAL"), help="train episodes")
    parser.add_argument("--heldout", type=int, nargs=4, default=[8, 4, 5, 3],
                        metavar=("SUCCESS", "NEAR", "FAILURE", "COUNTERFACTUAL"), help="held-out episodes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for split in args.splits:
        numbers, seed = (args.train, 0) if split == "train" else (args.heldout, 1)
        counts = dict(zip(("success", "near", "failure", "counterfactual"), numbers, strict=True))
        counts["clip_frac"] = 0.5
        start = time.monotonic()
        written = collect_split(args.out, split, counts, seed=1000 * seed + 50)
        kinds: dict[str, int] = {}
        for ep in written:
            kinds[ep["kind"]] = kinds.get(ep["kind"], 0) + 1
        minutes = (time.monotonic() - start) / 60
        log.info("%s: %d episodes written in %.1f min %s", split, len(written), minutes, json.dumps(kinds, sort_keys=True))
        summary = {"split": split, "episodes": len(written), "minutes": round(minutes, 1), "kinds": kinds,
                   "cameras": list(CAMERAS), "image_size": IMAGE_SIZE, "episode_steps": EPISODE_STEPS,
                   "frame_stride": FRAME_STRIDE, "episodes_written": written}
        (args.out / split).mkdir(parents=True, exist_ok=True)
        (args.out / f"{split}_summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
