"""Crash-safe checkpoints of a run: the policy, the replay buffer and the step counter.

* :func:`save_checkpoint` - write ``checkpoints/step_<N>/`` (model.zip, replay_buffer.pkl,
  state.json) atomically and keep the newest few.
* :func:`latest_checkpoint` - the newest complete checkpoint folder of a run.
* :func:`write_heartbeat` / :func:`read_heartbeat` - the last env step a run reached (cheap,
  written often), so a resumed run can say how many steps a SIGKILL cost.
* :class:`ResumePoint` / :func:`resume_point` - where a resumed run continues and what was lost.

A checkpoint folder is written under a temporary name and renamed when complete, so a run
killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CHECKPOINT_DIR",
    "save_checkpoint",
    "latest_checkpoint",
    "write_heartbeat",
    "read_heartbeat",
    "ResumePoint",
    "resume_point",
]

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
_HEARTBEAT = "heartbeat.json"


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


def save_checkpoint(model: Any, run_dir: str | os.PathLike, keep: int = 2, extra: dict | None = None) -> Path:
    """Save ``model`` (an SB3 algorithm) and its replay buffer under ``run_dir/checkpoints/step_<N>``.

    A relabelling buffer is flushed first (waits for pending rewards), so no transition is
    saved unlabelled. Returns the checkpoint folder.
    """
    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    steps = int(model.num_timesteps)
    final = root / f"step_{steps:09d}"
    tmp = root / f".partial_step_{steps:09d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    t0 = time.perf_counter()
    model.save(tmp / "model.zip")
    vec_normalize = model.get_vec_normalize_env() if hasattr(model, "get_vec_normalize_env") else None
    if vec_normalize is not None:
        vec_normalize.save(str(tmp / "vecnormalize.pkl"))  # observation statistics the policy was trained on
    buffer = getattr(model, "replay_buffer", None)
    if buffer is not None:
        if hasattr(buffer, "flush"):
            buffer.flush()
        model.save_replay_buffer(tmp / "replay_buffer.pkl")
    state = {"env_steps": steps, "saved_at": time.time(), "buffer_size": int(buffer.size()) if buffer else None,
             **(extra or {})}
    _write_json(tmp / "state.json", state)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint at %d env steps -> %s (%.1f s)", steps, final, time.perf_counter() - t0)
    return final


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete ``checkpoints/step_<N>`` folder of ``run_dir``, or None."""
    root = Path(run_dir) / CHECKPOINT_DIR
    done = sorted(p for p in root.glob("step_*") if (p / "state.json").exists())
    return done[-1] if done else None


def write_heartbeat(run_dir: str | os.PathLike, env_steps: int) -> None:
    """Record that the run reached ``env_steps`` (atomic replace; cheap enough to call every few steps)."""
    _write_json(Path(run_dir) / _HEARTBEAT, {"env_steps": int(env_steps), "time": time.time()})


def read_heartbeat(run_dir: str | os.PathLike) -> int | None:
    """The last env step recorded by :func:`write_heartbeat`, or None."""
    path = Path(run_dir) / _HEARTBEAT
    if not path.exists():
        return None
    return int(json.loads(path.read_text())["env_steps"])


@dataclass
class ResumePoint:
    """Where a resumed run continues.

    Args:
        checkpoint: the checkpoint folder to load.
        env_steps: env steps stored in it.
        reached_steps: the last env step the interrupted run recorded (>= env_steps).
    """

    checkpoint: Path
    env_steps: int
    reached_steps: int

    @property
    def lost_steps(self) -> int:
        """Env steps taken after the checkpoint, which the resumed run repeats."""
        return max(0, self.reached_steps - self.env_steps)

    def describe(self) -> str:
        """One line for the log: what is restored and what was lost."""
        msg = f"resuming from {self.checkpoint} at {self.env_steps} env steps"
        if self.lost_steps:
            return msg + (f"; the run had reached {self.reached_steps} steps, so {self.lost_steps} steps since "
                          "that checkpoint were lost and will be redone")
        return msg + "; no steps lost"


def resume_point(run_dir: str | os.PathLike) -> ResumePoint:
    """The newest checkpoint of ``run_dir`` and how many steps were lost after it.

    Raises:
        FileNotFoundError: if ``run_dir`` has no complete checkpoint.
    """
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(
            f"no complete checkpoint in {Path(run_dir) / CHECKPOINT_DIR}; a run writes one every "
            "checkpoint_every steps (set checkpoint_every>0)"
        )
    steps = int(json.loads((ckpt / "state.json").read_text())["env_steps"])
    reached = read_heartbeat(run_dir)
    return ResumePoint(ckpt, steps, max(steps, reached if reached is not None else steps))
