"""Every episode of a run as a LeRobot v3 dataset, written with pyarrow (LeRobot itself is not needed).

* :class:`LeRobotDatasetWriter` - appends finished episodes to a LeRobot v3 dataset folder from a
  background thread: one ``data/chunk-XXX/file-YYY.parquet`` per episode (images PNG-encoded inside, as
  LeRobot stores ``image`` features), then ``meta/tasks.parquet``, ``meta/episodes/...parquet``,
  ``meta/stats.json`` and ``meta/info.json``, each replaced atomically. A killed run leaves a dataset of
  its finished episodes; reopening the folder appends (and drops a data file a kill left without meta).
* :class:`RecordEpisodes` - gymnasium wrapper (outermost) that hands every episode of an env to a writer:
  reward cameras, policy observation, executed action, shaped reward, model progress / success
  probability / version, env success, intervention flag, human label, task, evaluation flag.
* :func:`read_lerobot_episodes` - a LeRobot v3 dataset with image features back as numpy, per episode.
* :func:`open_recording` - the writer for a run's ``record`` config (None when recording is off);
  :func:`record_episodes`, :func:`closing_recording`, :func:`recording_summary` - the run's small hooks.

Frame ``t`` follows LeRobot's convention: ``observation.*`` before the step, ``action`` executed at the
step, ``next.*`` what the step returned (reward, progress, success probability, done).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["LeRobotDatasetWriter", "RecordEpisodes", "read_lerobot_episodes", "open_recording",
           "record_episodes", "closing_recording", "recording_summary", "CODEBASE_VERSION", "LABELS"]

log = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk folder, as LeRobot
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"
WRITER_NICENESS = 10
"""Niceness of the writer thread (where the OS allows it): encoding yields to the control loop."""
LABELS = {"success": 1, "failure": 0}
"""Human label of an episode -> the ``label`` column (-1: no label)."""
STATE_KEYS = ("observation", "state")
"""Dict observation keys recorded as LeRobot's ``observation.state`` (other keys as ``observation.<key>``)."""
_DEFAULT_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError("recording and reading LeRobot datasets needs pyarrow: pip install 'rlrm[lerobot]' "
                          "(or pip install pyarrow)") from e
    return pa, pq


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write_table(table: Any, path: Path) -> None:
    """A pyarrow table as parquet at ``path``, atomically."""
    _, pq = _pyarrow()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _feature_of(value: Any, is_image: bool) -> dict[str, Any]:
    """LeRobot's ``info.json`` entry for one frame value."""
    if is_image:
        return {"dtype": "image", "shape": list(value.shape), "names": ["height", "width", "channels"]}
    arr = np.asarray(value)
    dtype = "bool" if arr.dtype == np.bool_ else str(arr.dtype)
    return {"dtype": dtype, "shape": list(arr.shape) or [1], "names": None}


def _hf_feature(feature: dict[str, Any]) -> dict[str, Any]:
    """The Hugging Face ``datasets`` feature JSON for one LeRobot feature (the parquet schema metadata)."""
    if feature["dtype"] in ("image", "video"):
        return {"_type": "Image"}
    shape = feature["shape"]
    if shape == [1]:
        return {"dtype": feature["dtype"], "_type": "Value"}
    if len(shape) == 1:
        return {"feature": {"dtype": feature["dtype"], "_type": "Value"}, "length": shape[0], "_type": "List"}
    raise ValueError(f"feature of shape {shape} is not supported for recording; expected an image or a vector")


class _RunningStats:
    """count / sum / sum of squares / min / max of one feature, for ``meta/stats.json``."""

    def __init__(self) -> None:
        self.count = 0
        self.sum = self.sumsq = self.min = self.max = None

    def add(self, x: np.ndarray) -> None:
        """Add samples ``x`` (N, ...) to the statistics (float64)."""
        x = np.asarray(x, dtype=np.float64)
        s, sq, lo, hi = x.sum(0), (x * x).sum(0), x.min(0), x.max(0)
        if self.sum is None:
            self.sum, self.sumsq, self.min, self.max = s, sq, lo, hi
        else:
            self.sum, self.sumsq = self.sum + s, self.sumsq + sq
            self.min, self.max = np.minimum(self.min, lo), np.maximum(self.max, hi)
        self.count += len(x)

    def to_json(self) -> dict[str, Any]:
        """min / max / mean / std / count as lists, the layout of LeRobot's ``stats.json``."""
        mean = self.sum / self.count
        std = np.sqrt(np.maximum(self.sumsq / self.count - mean * mean, 0.0))
        return {"min": self.min.tolist(), "max": self.max.tolist(), "mean": mean.tolist(), "std": std.tolist(),
                "count": [int(self.count)]}


class LeRobotDatasetWriter:
    """Append finished episodes to a LeRobot v3 dataset at ``root``, off the caller's thread.

    Args:
        root: dataset folder (created; an existing dataset written by this class is appended to).
        fps: frames per second of the recorded control loop (LeRobot's ``fps``, for ``timestamp``).
        robot_type: LeRobot's ``robot_type`` (``"so101_follower"``, ...) or None.
        max_pending: finished episodes waiting to be written before :meth:`add_episode` blocks.

    ``add_episode(frames, task)`` takes a list of frame dicts (feature name -> value; images (H, W, 3)
    uint8 under ``observation.images.*``) and returns at once; :meth:`close` writes what is pending.
    Every episode must have the features of the first one (same names, shapes and dtypes).
    """

    def __init__(self, root: str | Path, fps: int, robot_type: str | None = None, max_pending: int = 8) -> None:
        self.pa, self.pq = _pyarrow()
        self.root = Path(root)
        if int(fps) != fps or fps <= 0:
            raise ValueError(f"fps must be a positive integer, got {fps!r}")
        self.fps = int(fps)
        self.robot_type = robot_type
        self.features: dict[str, dict[str, Any]] | None = None
        self.episodes: list[dict[str, Any]] = []
        self.tasks: dict[str, int] = {}
        self.stats: dict[str, _RunningStats] = {}
        self.total_frames = 0
        self.write_seconds = 0.0  # CPU time of the writer thread encoding and writing (for benchmarks)
        self._load_existing()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(max_pending)))
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="lerobot-dataset-writer", daemon=True)
        self._thread.start()

    # ---- the caller's side -------------------------------------------------------------------------
    def add_episode(self, frames: list[dict[str, Any]], task: str, extra: Mapping[str, Any] | None = None) -> None:
        """Queue one finished episode (``frames`` in order, ``task`` its sentence); returns without writing."""
        self._raise_if_failed()
        if self._closed:
            raise RuntimeError(f"the dataset writer for {self.root} is closed")
        if not frames:
            return
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f"task must be a non-empty sentence, got {task!r}")
        self._queue.put((frames, task, dict(extra or {})))

    def flush(self) -> None:
        """Block until every queued episode is on disk."""
        self._queue.join()
        self._raise_if_failed()

    def close(self) -> None:
        """Write what is pending and stop the writer thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        self._raise_if_failed()
        log.info("LeRobot dataset %s: %d episodes, %d frames", self.root, len(self.episodes), self.total_frames)

    @property
    def num_episodes(self) -> int:
        """Episodes on disk so far."""
        return len(self.episodes)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"writing the LeRobot dataset at {self.root} failed: {self._error!r}") from self._error

    # ---- the writer thread ---------------------------------------------------------------------------
    def _work(self) -> None:
        try:  # Linux: a thread is a task with its own niceness; the control loop keeps the CPU first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICENESS)
        except (AttributeError, OSError) as e:
            log.debug("could not lower the dataset writer thread's priority: %s", e)
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    t0 = time.thread_time()
                    self._write_episode(*item)
                    self.write_seconds += time.thread_time() - t0
            except BaseException as e:  # noqa: BLE001 - kept and raised on the caller's thread
                log.exception("writing an episode to %s failed", self.root)
                self._error = e
            finally:
                self._queue.task_done()

    def _load_existing(self) -> None:
        """Continue a dataset this class wrote before (a resumed or killed run): meta is the truth."""
        info_path = self.root / "meta" / "info.json"
        episodes_path = self.root / EPISODES_FILE
        if not info_path.exists():
            if self.root.exists() and any(self.root.iterdir()):
                raise FileExistsError(f"record.dataset={self.root} exists and is not a LeRobot dataset "
                                      "(no meta/info.json); pick an empty or new folder")
            return
        info = json.loads(info_path.read_text())
        if info.get("codebase_version") != CODEBASE_VERSION or info.get("video_path"):
            raise ValueError(f"{self.root} is a LeRobot dataset of version {info.get('codebase_version')!r} "
                             f"with videos={bool(info.get('video_path'))}; this writer appends only to "
                             f"{CODEBASE_VERSION} image datasets it wrote")
        if int(info["fps"]) != self.fps:
            raise ValueError(f"{self.root} was recorded at fps={info['fps']}, this run records at fps={self.fps}")
        self.features = {k: v for k, v in info["features"].items() if k not in _DEFAULT_FEATURES}
        if episodes_path.exists():
            self.episodes = self.pq.read_table(episodes_path).to_pylist()
        tasks_path = self.root / "meta" / "tasks.parquet"
        if tasks_path.exists():
            t = self.pq.read_table(tasks_path).to_pylist()
            self.tasks = {row["__index_level_0__"]: int(row["task_index"]) for row in t}
        self.total_frames = sum(int(e["length"]) for e in self.episodes)
        stats_path = self.root / "meta" / "stats.json"
        if stats_path.exists():
            for name, s in json.loads(stats_path.read_text()).items():
                rs = _RunningStats()
                rs.count = int(s["count"][0])
                mean, std = np.asarray(s["mean"]), np.asarray(s["std"])
                rs.sum, rs.sumsq = mean * rs.count, (std * std + mean * mean) * rs.count
                rs.min, rs.max = np.asarray(s["min"], np.float64), np.asarray(s["max"], np.float64)
                self.stats[name] = rs
        known = {self.root / DATA_PATH.format(chunk_index=e["data/chunk_index"], file_index=e["data/file_index"])
                 for e in self.episodes}
        for path in sorted((self.root / "data").glob("*/*.parquet*")):
            if path not in known:
                log.warning("%s: dropping %s, written by a run killed before its episode's metadata", self.root, path)
                path.unlink()
        log.info("appending to LeRobot dataset %s (%d episodes, %d frames)", self.root, len(self.episodes),
                 self.total_frames)

    def _check_features(self, frame: dict[str, Any]) -> None:
        found = {k: _feature_of(v, k.startswith("observation.images.")) for k, v in frame.items()}
        if self.features is None:
            for feature in found.values():
                _hf_feature(feature)
            self.features = found
            return
        if found != self.features:
            diff = {k: (self.features.get(k), found.get(k)) for k in set(found) | set(self.features)
                    if self.features.get(k) != found.get(k)}
            raise ValueError(f"an episode's features differ from the dataset's (dataset, episode): {diff}")

    def _column(self, name: str, values: list[Any]) -> Any:
        pa = self.pa
        feature = self.features[name]
        if feature["dtype"] == "image":
            import cv2

            encoded = []
            for img in values:
                ok, png = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]))
                if not ok:
                    raise ValueError(f"could not PNG-encode {name} of shape {img.shape}")
                encoded.append(png.tobytes())
            return pa.StructArray.from_arrays([pa.array(encoded, pa.binary()), pa.nulls(len(encoded), pa.string())],
                                              names=["bytes", "path"])
        arr = np.stack([np.asarray(v) for v in values])
        if feature["shape"] == [1]:
            return pa.array(arr.reshape(-1))
        flat = pa.array(arr.reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, feature["shape"][0])

    def _write_episode(self, frames: list[dict[str, Any]], task: str, extra: dict[str, Any]) -> None:
        pa = self.pa
        self._check_features(frames[0])
        for frame in frames[1:]:
            if frame.keys() != frames[0].keys():
                raise ValueError(f"frames of one episode have different keys: {sorted(frame)} vs {sorted(frames[0])}")
        episode_index = len(self.episodes)
        n = len(frames)
        task_index = self.tasks.setdefault(task, len(self.tasks))
        columns = {name: self._column(name, [f[name] for f in frames]) for name in self.features}
        frame_index = np.arange(n, dtype=np.int64)
        columns["timestamp"] = pa.array((frame_index / self.fps).astype(np.float32))
        columns["frame_index"] = pa.array(frame_index)
        columns["episode_index"] = pa.array(np.full(n, episode_index, np.int64))
        columns["index"] = pa.array(self.total_frames + frame_index)
        columns["task_index"] = pa.array(np.full(n, task_index, np.int64))
        all_features = self._all_features()
        hf = {"info": {"features": {k: _hf_feature(v) for k, v in all_features.items()}}}
        table = pa.table(columns).replace_schema_metadata({"huggingface": json.dumps(hf)})
        chunk, file = divmod(episode_index, CHUNKS_SIZE)
        _atomic_write_table(table, self.root / DATA_PATH.format(chunk_index=chunk, file_index=file))

        for name, feature in self.features.items():
            values = [f[name] for f in frames]
            if feature["dtype"] == "image":  # per channel in [0, 1], on a pixel subsample, shape (3, 1, 1)
                sample = np.stack([v[::4, ::4].reshape(-1, v.shape[-1]) for v in values]).reshape(-1, values[0].shape[-1])
                data = sample.astype(np.float64) / 255.0
                self.stats.setdefault(name, _RunningStats()).add(data)
            else:
                self.stats.setdefault(name, _RunningStats()).add(np.stack([np.asarray(v, np.float64).reshape(-1)
                                                                          for v in values]))
        for name, values in (("timestamp", frame_index / self.fps), ("frame_index", frame_index),
                             ("episode_index", np.full(n, episode_index)),
                             ("index", self.total_frames + frame_index), ("task_index", np.full(n, task_index))):
            self.stats.setdefault(name, _RunningStats()).add(np.asarray(values, np.float64).reshape(-1, 1))

        self.episodes.append({
            "episode_index": episode_index, "tasks": [task], "length": n,
            "data/chunk_index": chunk, "data/file_index": file,
            "dataset_from_index": self.total_frames, "dataset_to_index": self.total_frames + n,
            "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
            **{f"rlrm/{k}": v for k, v in extra.items()},
        })
        self.total_frames += n
        self._write_meta()

    def _all_features(self) -> dict[str, dict[str, Any]]:
        defaults = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64", "index": "int64",
                    "task_index": "int64"}
        return {**self.features, **{k: {"dtype": d, "shape": [1], "names": None} for k, d in defaults.items()}}

    def _write_meta(self) -> None:
        pa = self.pa
        tasks = sorted(self.tasks, key=self.tasks.get)
        pandas_meta = {"index_columns": ["__index_level_0__"], "column_indexes": [], "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None}]}
        tasks_table = pa.table({"task_index": pa.array([self.tasks[t] for t in tasks], pa.int64()),
                                "__index_level_0__": pa.array(tasks, pa.string())})
        _atomic_write_table(tasks_table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)}),
                            self.root / "meta" / "tasks.parquet")
        _atomic_write_table(pa.Table.from_pylist(self.episodes), self.root / EPISODES_FILE)
        stats = {name: s.to_json() for name, s in self.stats.items()}
        for name, feature in self.features.items():
            if feature["dtype"] == "image":  # LeRobot keeps image statistics as (C, 1, 1)
                stats[name] = {k: ([[[x]] for x in v] if k != "count" else v) for k, v in stats[name].items()}
        _atomic_write_bytes(self.root / "meta" / "stats.json", json.dumps(stats, indent=2).encode())
        info = {
            "codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type,
            "total_episodes": len(self.episodes), "total_frames": self.total_frames, "total_tasks": len(self.tasks),
            "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
            "fps": self.fps, "splits": {"train": f"0:{len(self.episodes)}"},
            "data_path": DATA_PATH, "video_path": None, "features": self._all_features(),
        }
        _atomic_write_bytes(self.root / "meta" / "info.json", json.dumps(info, indent=4).encode())


def _find_reward_wrapper(env: gym.Env) -> Any:
    """The reward wrapper in ``env``'s chain (it holds the frame the reward model saw), or None."""
    while env is not None:
        if hasattr(env, "frame_buffer") and hasattr(env, "frame_source"):
            return env
        env = getattr(env, "env", None)
    return None


def _safe_name(key: str) -> str:
    return key.replace("/", ".")


class RecordEpisodes(gym.Wrapper):
    """Hand every episode of ``env`` to a :class:`LeRobotDatasetWriter` (wrap it outermost).

    Per frame: ``observation.images.<camera>`` (the reward cameras: the frame the reward model saw, split
    into its views; ``observation.images.render`` when there is no reward wrapper), the policy
    observation (``observation.state`` for an array and for the dict keys ``observation`` / ``state``,
    ``observation.<key>`` for other dict keys, image keys under ``observation.images.<key>``), ``action`` (executed: ``info["action"]`` when the env reports it, e.g.
    a person's during a takeover, else the residual's ``info["env_action"]``, else the action sent),
    ``next.reward`` (shaped), ``next.progress`` / ``next.success_prob`` / ``next.reward_version`` (the
    model's; NaN / -1 when not scored), ``next.success`` (the env's ``is_success``), ``next.done``,
    ``intervention``, ``label`` (the episode's human label: 1 success, 0 failure, -1 none) and
    ``evaluation`` (an evaluation episode). The task is the episode's ``info["task"]`` or the env's task.

    Args:
        env: the env, with its reward wrapper inside.
        writer: where finished episodes go.
        evaluation: mark the episodes as evaluation episodes.
        task: the task sentence when neither ``info["task"]`` nor ``env.unwrapped.task`` has one.
        cameras: without a reward wrapper, the render cameras / observation image keys to record (each as
            ``observation.images.<camera>``) instead of ``env.render()``; e.g. the reward cameras of a run
            that will score these episodes later (scripted demonstrations).
        episode_meta: per-episode values stored in the episodes' metadata as ``rlrm/<key>``, e.g.
            ``{"reward": "env:dense"}`` (what ``next.reward`` holds; :func:`rlrm.rl.demos.reward_name`).
    """

    def __init__(self, env: gym.Env, writer: LeRobotDatasetWriter, evaluation: bool = False,
                 task: str | None = None, cameras: str | list[str] | None = None,
                 episode_meta: Mapping[str, Any] | None = None) -> None:
        super().__init__(env)
        self.writer = writer
        self.evaluation = bool(evaluation)
        self.default_task = task
        self.reward_wrapper = _find_reward_wrapper(env)
        self.cameras = cameras
        self.episode_meta = dict(episode_meta or {})
        self._render_source = None
        self._frames: list[dict[str, Any]] = []
        self._obs: Any = None
        self._label = -1
        self._task: str | None = None
        self._pending_images: dict[str, np.ndarray] = {}
        self.episodes_recorded = 0

    def _camera_frames(self, obs: Any) -> dict[str, np.ndarray]:
        rw = self.reward_wrapper
        if rw is not None:
            # the buffer keeps its own copy of each frame and never changes it: views of it are safe to queue
            frame = rw.frame_buffer.last
            source = rw.frame_source
            names = source.cameras
            if names and len(names) > 1 and source.view_widths:
                edges = np.cumsum([0, *source.view_widths])
                return {f"observation.images.{_safe_name(n)}": frame[:, a:b]
                        for n, a, b in zip(names, edges[:-1], edges[1:], strict=True)}
            name = names[0] if names else "render"
            return {f"observation.images.{_safe_name(name)}": frame}
        if self._render_source is None:
            from rlrm.wrappers.frames import FrameSource

            self._render_source = FrameSource(self.env, self.cameras)
        source = self._render_source
        frame = np.array(source.read(obs), copy=True)
        if not source.cameras:
            return {"observation.images.render": frame}
        edges = np.cumsum([0, *(source.view_widths or [frame.shape[1]])])
        return {f"observation.images.{_safe_name(n)}": frame[:, a:b]
                for n, a, b in zip(source.cameras, edges[:-1], edges[1:], strict=True)}

    def _observation(self, obs: Any) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if isinstance(obs, Mapping):
            for key, value in obs.items():
                arr = np.asarray(value)
                if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[-1] in (1, 3):
                    out[f"observation.images.{_safe_name(key)}"] = arr.copy()
                elif arr.dtype.kind in "fiub":
                    name = "observation.state" if key in STATE_KEYS else f"observation.{_safe_name(key)}"
                    out[name] = arr.astype(np.float32).reshape(-1)
        else:
            out["observation.state"] = np.asarray(obs, np.float32).reshape(-1)
        return out

    def _episode_task(self, info: Mapping[str, Any]) -> str:
        task = info.get("task") or getattr(self.env.unwrapped, "task", None) or self.default_task
        if task is None and self.reward_wrapper is not None:
            task = getattr(self.reward_wrapper, "task", None)
        if not isinstance(task, str) or not task.strip():
            raise ValueError("recording needs the episode's task sentence: the env sets info['task'] or "
                             "env.unwrapped.task, or pass task= (run_rl.py: task=...)")
        return task

    def _finish(self) -> None:
        if self._frames:
            for frame in self._frames:
                frame["label"] = np.array([self._label], np.int64)
            self.writer.add_episode(self._frames, self._task or "", {**self.episode_meta, "evaluation": self.evaluation,
                                                                      "label": self._label})
            self.episodes_recorded += 1
        self._frames = []

    def reset(self, **kwargs):
        """Reset the env; an episode left unfinished is recorded as it stands."""
        self._finish()
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        self._label = -1
        self._task = self._episode_task(info)
        self._pending_images = self._camera_frames(obs)
        return obs, info

    def step(self, action):
        """Step the env and keep the frame: observation before, action executed, what came back."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        executed = info.get("action", info.get("env_action", action))
        rlrm = info.get("rlrm") or {}
        progress = rlrm.get("progress")
        success_prob = rlrm.get("success_prob")
        version = rlrm.get("version")
        label = info.get("human_label")
        if label is not None:
            if label not in LABELS:
                raise ValueError(f"info['human_label'] must be one of {list(LABELS)}, got {label!r}")
            self._label = LABELS[label]
        frame = {
            **self._pending_images,
            **self._observation(self._obs),
            "action": np.asarray(executed, np.float32).reshape(-1).copy(),
            "next.reward": np.array([reward], np.float32),
            "next.progress": np.array([np.nan if progress is None else progress], np.float32),
            "next.success_prob": np.array([np.nan if success_prob is None else success_prob], np.float32),
            "next.reward_version": np.array([-1 if version is None else int(version)], np.int64),
            "next.success": np.array([bool(info.get("is_success", False))]),
            "next.done": np.array([bool(terminated or truncated)]),
            "intervention": np.array([bool(info.get("intervention", False))]),
            "evaluation": np.array([self.evaluation]),
        }
        self._frames.append(frame)
        self._obs = obs
        self._pending_images = self._camera_frames(obs)
        if terminated or truncated:
            self._finish()
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        """Record an unfinished episode, then close the env (the writer is closed by its owner)."""
        self._finish()
        super().close()


def open_recording(record: Mapping[str, Any] | None, env: gym.Env | None = None, fps: int | None = None,
                   robot_type: str | None = None, part: str | None = None) -> LeRobotDatasetWriter | None:
    """The writer for a run's ``record`` config (``{dataset: DIR, fps: N}``), or None when ``dataset`` is unset.

    ``part`` names a sub-dataset ``DIR/<part>`` (a distributed run's ``runner-<i>``: a LeRobot dataset has
    one writer, so each runner process writes its own, on the host it runs on).

    ``fps``: the config's, else the given ``fps`` (a robot's control rate), else the env's
    ``metadata["render_fps"]`` when ``env`` is given, else 10.
    """
    record = dict(record or {})
    root = record.get("dataset")
    if not root:
        return None
    if part:
        root = str(Path(root) / part)
    fps = record.get("fps") or fps
    if not fps and env is not None:
        fps = (getattr(env, "metadata", None) or {}).get("render_fps")
    return LeRobotDatasetWriter(root, fps=int(fps or 10), robot_type=record.get("robot_type") or robot_type)


def read_lerobot_episodes(root: str | Path, episodes: list[int] | None = None,
                          columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Episodes of a LeRobot v3 dataset with image (not video) features as numpy, with pyarrow only.

    Each episode is ``{"episode_index", "task", "length", "features": {name: array (T, ...)}}``; images
    come back as (T, H, W, 3) uint8, shape-(1,) features as (T,). ``columns`` limits the features read.
    """
    _, pq = _pyarrow()
    import cv2

    root = Path(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    features = info["features"]
    videos = [k for k, f in features.items() if f["dtype"] == "video"]
    wanted_cols = [c for c in (columns or list(features)) if c not in videos]
    if columns:
        unknown = sorted(set(columns) - set(features))
        if unknown:
            raise ValueError(f"{root} has no features {unknown}; it has {sorted(features)}")
        if set(columns) & set(videos):
            raise ValueError(f"{root} stores {sorted(set(columns) & set(videos))} as video; this reader reads image "
                             "features (read video datasets with LeRobot's LeRobotDataset)")
    meta = pq.read_table(root / EPISODES_FILE).to_pylist() if (root / EPISODES_FILE).exists() else [
        row for path in sorted((root / "meta" / "episodes").glob("*/*.parquet")) for row in pq.read_table(path).to_pylist()]
    tasks_rows = pq.read_table(root / "meta" / "tasks.parquet").to_pylist()
    task_names = {int(r["task_index"]): r.get("__index_level_0__") or r.get("task") for r in tasks_rows}
    out = []
    selected = meta if episodes is None else [m for m in meta if int(m["episode_index"]) in set(episodes)]
    for ep in selected:
        path = root / info["data_path"].format(chunk_index=ep["data/chunk_index"], file_index=ep["data/file_index"])
        table = pq.read_table(path, columns=sorted(set(wanted_cols) | {"episode_index", "task_index"}))
        mask = np.asarray(table.column("episode_index").to_numpy()) == int(ep["episode_index"])
        rows = np.nonzero(mask)[0]
        data: dict[str, np.ndarray] = {}
        for name in wanted_cols:
            col = table.column(name).take(rows)
            if features[name]["dtype"] == "image":
                imgs = []
                for cell in col.to_pylist():
                    buf = np.frombuffer(cell["bytes"], np.uint8)
                    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
                    imgs.append(img[..., ::-1] if img.ndim == 3 else np.repeat(img[..., None], 3, -1))
                data[name] = np.stack(imgs) if imgs else np.zeros((0, *features[name]["shape"]), np.uint8)
            elif features[name]["shape"] == [1]:
                data[name] = col.to_numpy(zero_copy_only=False)
            else:
                data[name] = np.stack(col.to_numpy(zero_copy_only=False)) if len(col) else np.zeros((0,))
        task_index = int(table.column("task_index")[int(rows[0])].as_py()) if len(rows) else -1
        out.append({"episode_index": int(ep["episode_index"]), "length": int(ep["length"]),
                    "task": task_names.get(task_index, (ep.get("tasks") or [""])[0]), "features": data,
                    "meta": {k: v for k, v in ep.items() if k.startswith("rlrm/")}})
    return out


def record_episodes(env: gym.Env, writer: LeRobotDatasetWriter | None, evaluation: bool = False,
                    episode_meta: Mapping[str, Any] | None = None) -> gym.Env:
    """``env`` wrapped in :class:`RecordEpisodes` when ``writer`` is set, else ``env`` unchanged (the run's hook)."""
    return env if writer is None else RecordEpisodes(env, writer, evaluation=evaluation, episode_meta=episode_meta)


class closing_recording:  # noqa: N801 - used like contextlib.closing
    """Context manager that closes a writer (None: nothing) at exit, writing its pending episodes."""

    def __init__(self, writer: LeRobotDatasetWriter | None) -> None:
        self.writer = writer

    def __enter__(self) -> LeRobotDatasetWriter | None:
        return self.writer

    def __exit__(self, *exc: Any) -> None:
        if self.writer is not None:
            self.writer.close()


def recording_summary(writer: LeRobotDatasetWriter | None) -> dict[str, Any] | None:
    """``{dataset, episodes, frames}`` for ``summary.json`` (None without recording); flushes the writer first."""
    if writer is None:
        return None
    writer.flush()
    return {"dataset": str(writer.root), "episodes": writer.num_episodes, "frames": writer.total_frames}
