"""Crash-safe checkpoints of a run: the policy, the replay buffer and the step counter.

* :func:`save_checkpoint` - write ``checkpoints/step_<N>/`` (model.zip, vecnormalize.pkl,
  replay_buffer/, state.json) atomically and keep the newest few.
* :func:`save_replay_buffer` / :func:`load_replay_buffer` - only the filled rows of an SB3 replay
  buffer, one ``.npy`` per array (camera images as uint8, also from a VecNormalize'd float32 buffer;
  a next observation only where it is not the following row's observation, i.e. at episode ends),
  read back memory-mapped into a buffer of any capacity; ``replay_buffer.pkl`` of older runs still loads.
* :func:`saved_rows` - one saved array, every row, as the buffer held it (inspection, tests).
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
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CHECKPOINT_DIR",
    "BUFFER_DIR",
    "save_checkpoint",
    "save_replay_buffer",
    "load_replay_buffer",
    "saved_rows",
    "latest_checkpoint",
    "write_heartbeat",
    "read_heartbeat",
    "ResumePoint",
    "resume_point",
]

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
BUFFER_DIR = "replay_buffer"
"""Folder of a checkpoint holding its replay buffer (:func:`save_replay_buffer`)."""
_BUFFER_META = "buffer.json"
_LEGACY_BUFFER = "replay_buffer.pkl"  # SB3's pickle of the whole preallocated buffer (runs before issue 17)
_CHUNK_BYTES = 64 * 1024**2  # rows are cast and written in chunks of about this size
_HEARTBEAT = "heartbeat.json"


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


def save_checkpoint(model: Any, run_dir: str | os.PathLike, keep: int = 2, extra: dict | None = None) -> Path:
    """Save ``model`` (an SB3 algorithm) and its replay buffer under ``run_dir/checkpoints/step_<N>``.

    A relabelling buffer is flushed first (waits for pending rewards), so no transition is
    saved unlabelled. Only the buffer's filled rows are written (:func:`save_replay_buffer`).
    Returns the checkpoint folder.
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
        save_replay_buffer(buffer, tmp / BUFFER_DIR)
    state = {"env_steps": steps, "saved_at": time.time(), "buffer_size": int(buffer.size()) if buffer else None,
             **(extra or {})}
    _write_json(tmp / "state.json", state)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    size_mb = sum(f.stat().st_size for f in final.rglob("*") if f.is_file()) / 1e6
    log.info("checkpoint at %d env steps -> %s (%.1f MB, %.1f s)", steps, final, size_mb, time.perf_counter() - t0)
    return final


def _nested_buffers(buffer: Any, name: str = "buffer") -> Iterator[tuple[str, Any]]:
    """(dotted name, buffer) for ``buffer`` and every SB3 buffer it holds (an intervention buffer's takeover copy)."""
    from stable_baselines3.common.buffers import BaseBuffer

    yield name, buffer
    for attr, value in vars(buffer).items():
        if isinstance(value, BaseBuffer):
            yield from _nested_buffers(value, f"{name}.{attr}")


def _row_arrays(buffer: Any) -> dict[str, np.ndarray]:
    """The per-transition arrays of one SB3 buffer (first axis ``buffer_size``); dict observations as ``observations/<key>``."""
    def is_rows(value: Any) -> bool:
        return isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == buffer.buffer_size

    rows: dict[str, np.ndarray] = {}
    for attr, value in vars(buffer).items():
        if is_rows(value):
            rows[attr] = value
        elif isinstance(value, dict) and value and all(is_rows(v) for v in value.values()):
            rows.update({f"{attr}/{key}": v for key, v in value.items()})
    return rows


def _segments(buffer: Any) -> list[tuple[int, int]]:
    """Row ranges of the filled part, oldest first (a full ring buffer's oldest row is at ``pos``)."""
    if buffer.full:
        return [(buffer.pos, buffer.buffer_size), (0, buffer.pos)]
    return [(0, buffer.pos)]


def _chunks(array: np.ndarray, segments: list[tuple[int, int]]) -> Iterator[np.ndarray]:
    """The rows of ``segments`` of ``array`` in pieces of about :data:`_CHUNK_BYTES`."""
    step = max(1, _CHUNK_BYTES // max(1, array[:1].nbytes))
    for start, stop in segments:
        for i in range(start, stop, step):
            yield array[i:min(i + step, stop)]


def _storage_dtype(name: str, array: np.ndarray, segments: list[tuple[int, int]]) -> np.dtype:
    """uint8 for a float observation array whose filled values are all integers in [0, 255], else its own dtype.

    SB3 keeps the env's original observations in arrays of the space the policy sees, and VecNormalize
    makes an image key's space float32: its uint8 pixels would take 4 bytes each. The cast is checked
    exact, so loading restores the same values.
    """
    if not name.split("/")[0].endswith("observations") or not np.issubdtype(array.dtype, np.floating):
        return array.dtype
    for chunk in _chunks(array, segments):
        if not np.array_equal(chunk.astype(np.uint8), chunk):
            return array.dtype
    return np.dtype(np.uint8)


def _ordered_rows(segments: list[tuple[int, int]]) -> np.ndarray:
    """Physical row of each saved row, oldest first."""
    return np.concatenate([np.arange(start, stop) for start, stop in segments]) if segments else np.zeros(0, int)


def _next_rows_to_store(next_obs: np.ndarray, obs: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Saved-row indices whose next observation differs from the next row's observation (and the last row).

    SB3 stores each transition's next observation beside its observation, so an image buffer holds every
    frame twice; inside an episode ``next_observations[t]`` is ``observations[t + 1]``. Only the others (an
    episode's terminal observation, the newest row) need to be written.
    """
    rows = len(order)
    if rows == 0:
        return np.zeros(0, np.int64)
    differs = [np.array([rows - 1])]
    step = max(1, _CHUNK_BYTES // max(1, next_obs[:1].nbytes))
    for start in range(0, rows - 1, step):
        t = np.arange(start, min(start + step, rows - 1))
        a, b = next_obs[order[t]], obs[order[t + 1]]
        same = np.all((a == b).reshape(len(t), -1), axis=1)
        differs.append(t[~same])
    return np.unique(np.concatenate(differs)).astype(np.int64)


def save_replay_buffer(buffer: Any, directory: str | os.PathLike) -> int:
    """Write the filled rows of ``buffer`` (an SB3 replay buffer) to ``directory``; returns the bytes written.

    One ``.npy`` per array (``observations/<key>``, ``actions``, ``rewards``, ``dones``, ``timeouts``,
    the relabelling ``labelled`` mask, ...; the takeover buffer of an intervention buffer too), rows oldest
    first, plus ``buffer.json`` (capacity, rows, counters, which file holds which array). Nothing of the
    empty preallocated rows is written, and nothing is pickled. Camera images are stored as uint8 even
    when the buffer holds them as float32 (:func:`_storage_dtype`). A ``next_observations`` array keeps only
    the rows that are not the next row's observation (:func:`_next_rows_to_store`), with their indices;
    loading rebuilds the rest, so the restored buffer is identical and an image buffer's files are about half.

    Args:
        buffer: an SB3 ``ReplayBuffer`` / ``DictReplayBuffer`` or a subclass (not ``optimize_memory_usage``).
        directory: created if missing.

    >>> import tempfile
    >>> from gymnasium import spaces
    >>> from stable_baselines3.common.buffers import ReplayBuffer
    >>> buf = ReplayBuffer(1000, spaces.Box(0, 255, (4,), np.uint8), spaces.Box(-1, 1, (1,)), device="cpu")
    >>> o = np.full((1, 4), 7, np.uint8)
    >>> buf.add(o, o, np.zeros((1, 1)), np.ones(1), np.zeros(1), [{}])
    >>> save_replay_buffer(buf, tempfile.mkdtemp()) < 2000  # one row written, not 1000
    True
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"format": 2, "buffers": {}}
    written = 0
    for b, (name, buf) in enumerate(_nested_buffers(buffer)):
        if getattr(buf, "optimize_memory_usage", False):
            raise ValueError(f"{name} ({type(buf).__name__}) uses optimize_memory_usage=True, whose next observations "
                             "share rows with the observations; checkpoints need optimize_memory_usage=False")
        pending = getattr(buf, "_slot_of_ticket", None)
        if pending:
            log.warning("saving %s with %d unlabelled transitions; they will never be sampled (flush() it first)",
                        name, len(pending))
        segments = _segments(buf)
        rows = sum(stop - start for start, stop in segments)
        counters = {k: v for k, v in vars(buf).items() if k.startswith("num_") and type(v) is int}
        entry: dict[str, Any] = {"class": type(buf).__name__, "buffer_size": int(buf.buffer_size),
                                 "n_envs": int(buf.n_envs), "rows": int(rows), "counters": counters, "arrays": {}}
        arrays = _row_arrays(buf)
        order = _ordered_rows(segments)
        for i, (array_name, array) in enumerate(arrays.items()):
            dtype = _storage_dtype(array_name, array, segments)
            file = f"{b}_{i:02d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', array_name)}.npy"
            spec: dict[str, Any] = {"file": file, "dtype": str(dtype), "buffer_dtype": str(array.dtype)}
            follows = "observations" + array_name[len("next_observations"):]
            if array_name.startswith("next_observations") and follows in arrays:
                stored = _next_rows_to_store(array, arrays[follows], order)
                rows_file = file[:-4] + "_rows.npy"
                np.save(directory / rows_file, stored)
                written += (directory / rows_file).stat().st_size
                spec.update(follows=follows, rows_file=rows_file)
                pieces: Iterator[np.ndarray] = (array[order[stored[j:j + 256]]] for j in range(0, len(stored), 256))
                shape = (len(stored), *array.shape[1:])
            else:
                pieces, shape = _chunks(array, segments), (rows, *array.shape[1:])
            with open(directory / file, "wb") as f:
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_2_0(f, header)
                for chunk in pieces:
                    np.ascontiguousarray(chunk, dtype=dtype).tofile(f)
            written += (directory / file).stat().st_size
            entry["arrays"][array_name] = spec
        meta["buffers"][name] = entry
    _write_json(directory / _BUFFER_META, meta)
    return written


def load_replay_buffer(model: Any, checkpoint: str | os.PathLike, buffer_size: int | None = None) -> int | None:
    """Fill ``model.replay_buffer`` from a checkpoint folder; returns the transitions restored (None: none saved).

    Reads :func:`save_replay_buffer`'s folder memory-mapped (or an older checkpoint's ``replay_buffer.pkl``).
    ``buffer_size``: the capacity to restore into, e.g. a resumed run's larger budget (default: the
    model's); every saved row is kept when it fits, else the newest ``buffer_size`` rows.

    Raises:
        ValueError: if the saved arrays do not fit this model's buffer (other spaces or buffer class).
    """
    checkpoint = Path(checkpoint)
    meta_path = checkpoint / BUFFER_DIR / _BUFFER_META
    if not meta_path.exists():
        if not (checkpoint / _LEGACY_BUFFER).exists():
            return None
        model.load_replay_buffer(str(checkpoint / _LEGACY_BUFFER))  # its own capacity, pickled
        return int(model.replay_buffer.size())
    if buffer_size is not None and int(buffer_size) != model.replay_buffer.buffer_size:
        _reallocate_buffer(model, int(buffer_size))
    meta = json.loads(meta_path.read_text())
    buffers = dict(_nested_buffers(model.replay_buffer))
    for name, entry in meta["buffers"].items():
        if name not in buffers:
            raise ValueError(f"{checkpoint} holds replay buffer part {name!r} ({entry['class']}); this run's "
                             f"{type(model.replay_buffer).__name__} has {sorted(buffers)}: resume with the same algo")
        _fill_buffer(buffers[name], name, entry, checkpoint / BUFFER_DIR)
    return int(model.replay_buffer.size())


def saved_rows(checkpoint: str | os.PathLike, array_name: str, buffer: str = "buffer") -> np.ndarray:
    """Every saved row of one replay-buffer array of ``checkpoint``, oldest first, as the buffer held it.

    ``array_name`` as in ``buffer.json`` (``"observations/front"``, ``"next_observations/front"``, ``"rewards"``);
    next observations stored only where they differ are rebuilt from the observations (for inspection and tests).
    """
    directory = Path(checkpoint) / BUFFER_DIR
    entry = json.loads((directory / _BUFFER_META).read_text())["buffers"][buffer]
    spec = entry["arrays"][array_name]
    saved = np.load(directory / spec["file"])
    if "follows" not in spec:
        return saved
    full = np.empty((int(entry["rows"]), *saved.shape[1:]), saved.dtype)
    full[:-1] = saved_rows(checkpoint, spec["follows"], buffer)[1:]
    full[np.load(directory / spec["rows_file"])] = saved
    return full


def _reallocate_buffer(model: Any, buffer_size: int) -> None:
    """Give ``model`` an empty replay buffer of capacity ``buffer_size`` (same class and arguments)."""
    model.buffer_size = buffer_size
    model.replay_buffer = model.replay_buffer_class(
        buffer_size, model.observation_space, model.action_space, device=model.device, n_envs=model.n_envs,
        optimize_memory_usage=model.optimize_memory_usage, **(model.replay_buffer_kwargs or {}),
    )


def _fill_buffer(buf: Any, name: str, entry: dict[str, Any], directory: Path) -> None:
    """Copy the saved rows of one buffer into ``buf``: oldest at row 0, the newest ``buf.buffer_size`` if fewer fit."""
    if entry["n_envs"] != buf.n_envs:
        raise ValueError(f"{name} was saved with n_envs={entry['n_envs']}, this run's has n_envs={buf.n_envs}")
    rows, capacity = int(entry["rows"]), int(buf.buffer_size)
    keep = min(rows, capacity)
    targets = _row_arrays(buf)
    # observations first: a next-observation array saved as "follows" is rebuilt from them
    for array_name, spec in sorted(entry["arrays"].items(), key=lambda item: "follows" in item[1]):
        target = targets.get(array_name)
        if target is None:
            raise ValueError(f"{name} was saved with an array {array_name!r} this run's {type(buf).__name__} "
                             f"lacks (it has {sorted(targets)}): resume with the same algo and observations")
        if keep == 0:
            continue
        saved = np.load(directory / spec["file"], mmap_mode="r")
        if saved.shape[1:] != target.shape[1:]:
            raise ValueError(f"{name} {array_name}: saved rows have shape {saved.shape[1:]}, this run's buffer "
                             f"expects {target.shape[1:]}: resume with the same env, cameras and policy_obs")
        if "follows" in spec:
            first = rows - keep  # saved row that lands in target row 0
            target[:keep - 1] = targets[spec["follows"]][1:keep]
            stored = np.load(directory / spec["rows_file"])
            kept = stored >= first
            target[stored[kept] - first] = saved[kept]
        else:
            target[:keep] = saved[rows - keep:]
    buf.pos, buf.full = keep % capacity, keep == capacity
    for counter, value in entry.get("counters", {}).items():
        setattr(buf, counter, value)


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
