"""The reward trainer that learns from labels during RL and publishes numbered model versions.

* :class:`LabelInbox` - the run's side: each labelled episode written (atomically) as a trajectory folder
  into ``<folder>/inbox/``.
* :class:`OnlineRewardTrainer` - the trainer's side: reads new labelled episodes, fine-tunes the model with
  the Robometer objective of ``rlrm train`` (:class:`rlrm.train.trainer.Trainer`: success on the labelled
  frames, progress anchored at a success's ends, preferences between successes and failures of the same task
  and against rewound copies), mixes in replay of the model's original data, and publishes each result as
  the next version into ``<folder>/versions/`` (:func:`rlrm.transport.versions.publish_version`).
* :class:`RewardTrainerProcess` - runs :class:`OnlineRewardTrainer` in its own process (multiprocessing
  ``spawn``), never on the control loop; a crash of it leaves the served version in place.
* :func:`trainable_mode` - ``reward.trainer.mode`` resolved for a model (``auto``: full below 50 M parameters).
* :class:`StopFile` - the stop request of the trainer process (``<folder>/STOP``).
* :func:`read_trainer_log` - the lines of ``trainer_log.jsonl``.

How versions travel: files. The trainer writes ``<folder>/versions/v000001/`` (a checkpoint folder, renamed
into place when complete); the reward worker (``rlrm worker --watch <folder>/versions``) or the in-process
scorer polls the folder, loads the newest version on its own thread and swaps it in between batches. A
folder works across processes and, on a shared disk, across machines, and survives either side restarting.

Layout of ``<folder>`` (``reward.trainer.folder``, default ``<run folder>/reward_adapt``)::

    inbox/<episode>/          labelled episodes (rlrm trajectory format, rlrm.train.data)
    versions/v000001/         published versions
    trainer_log.jsonl         one line per version: labels used, losses, seconds
    trainer.log               the trainer process's log
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from rlrm.config import RewardTrainerConfig
from rlrm.train.data import Trajectory, read_trajectory, write_trajectory
from rlrm.transport.versions import latest_version, publish_version

__all__ = ["INBOX", "VERSIONS", "TRAINER_LOG", "LabelInbox", "OnlineRewardTrainer", "RewardTrainerProcess",
           "trainable_mode", "read_trainer_log", "StopFile"]

log = logging.getLogger(__name__)

INBOX = "inbox"
VERSIONS = "versions"
TRAINER_LOG = "trainer_log.jsonl"
LORA_ABOVE_PARAMETERS = 50_000_000
"""``mode=auto`` fine-tunes models up to this size fully, larger ones (the 4B Robometer) with LoRA."""


class LabelInbox:
    """Writes labelled episodes into ``<folder>/inbox`` for the reward trainer (the run's side).

    Each episode becomes a trajectory folder (``rlrm.train.data`` format, quality ``success``/``failure``),
    written under a temporary name and renamed, so the trainer never reads half an episode.

    >>> inbox = LabelInbox("runs/x/reward_adapt")                  # doctest: +SKIP
    >>> oracle = OracleLabeller(inbox.write, budget=30)             # doctest: +SKIP
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.root = Path(folder) / INBOX
        self.root.mkdir(parents=True, exist_ok=True)
        self.written = 0

    def write(self, labelled: Any) -> Path:
        """Write one :class:`~rlrm.rl.labels.LabelledEpisode`; returns its folder."""
        name = f"ep{int(labelled.episode):06d}_{labelled.source}"
        traj = Trajectory(frames=labelled.frames, task=labelled.task, quality=labelled.label, episode_id=name,
                          source=f"rlrm-{labelled.source}-label",
                          extra={"episode": int(labelled.episode), "true_label": labelled.true_label})
        tmp_root = self.root / ".tmp"
        tmp = write_trajectory(traj, tmp_root)
        final = self.root / name
        if final.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(f"episode {name} is labelled already at {final}")
        os.rename(tmp, final)
        self.written += 1
        return final


def trainable_mode(mode: str, num_parameters: int) -> str:
    """``mode`` with ``auto`` resolved: ``full`` up to :data:`LORA_ABOVE_PARAMETERS` parameters, else ``lora``.

    >>> trainable_mode("auto", 460_000), trainable_mode("auto", 4_000_000_000), trainable_mode("heads", 10)
    ('full', 'lora', 'heads')
    """
    modes = ("auto", "full", "heads", "lora")
    if mode not in modes:
        raise ValueError(f"reward.trainer.mode must be one of {modes}, got {mode!r}")
    if mode != "auto":
        return mode
    return "full" if num_parameters <= LORA_ABOVE_PARAMETERS else "lora"


def read_trainer_log(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The lines of ``<folder>/trainer_log.jsonl`` (one per published version; empty when none)."""
    path = Path(folder) / TRAINER_LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class OnlineRewardTrainer:
    """Fine-tunes a reward model on labelled episodes and publishes versions (the trainer's side).

    Args:
        model_spec: the model the run started with (``demo``, a checkpoint folder, a hub id): version 0.
        folder: the adaptation folder (``inbox/``, ``versions/``, ``trainer_log.jsonl``).
        cfg: :class:`~rlrm.config.RewardTrainerConfig` (or its dict).
        model: the model itself instead of loading ``model_spec`` (tests).

    One round (:meth:`train_round`) runs when ``min_labels`` new labelled episodes have arrived and at least
    one labelled success is known (success and preference targets need one): ``steps`` optimizer steps on
    the labelled episodes plus replay, then the next version is published. Rounds continue from the same
    weights and optimizer.
    """

    def __init__(self, model_spec: str, folder: str | os.PathLike, cfg: RewardTrainerConfig | Mapping[str, Any],
                 model: Any = None) -> None:
        import torch

        self.cfg = cfg if isinstance(cfg, RewardTrainerConfig) else RewardTrainerConfig(**dict(cfg))
        self.folder = Path(folder)
        self.inbox = self.folder / INBOX
        self.versions = self.folder / VERSIONS
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.versions.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(int(self.cfg.threads))
        torch.manual_seed(int(self.cfg.seed))
        if model is None:
            from rlrm.models import make_reward_model

            model = make_reward_model(model_spec, device="cpu", dtype="float32")
        if not callable(getattr(model, "forward_heads", None)):
            raise TypeError(f"reward.adapt fine-tunes Robometer models (progress/success heads); {model_spec!r} "
                            f"is a {type(model).__name__} without forward_heads")
        self.model = model
        self.mode = trainable_mode(self.cfg.mode, sum(p.numel() for p in model.parameters()))
        self.labelled: list[Trajectory] = []
        self._read: set[str] = set()
        self._new_since_round = 0
        self.version = latest_version(self.versions)
        self.replay = None
        if self.cfg.replay:
            from rlrm.train.data import load_dataset

            self.replay = load_dataset(self.cfg.replay)
        self.rng = np.random.default_rng(self.cfg.seed)
        self._trainer: Any = None

    # ------------------------------------------------------------------ labels

    def poll_inbox(self) -> int:
        """Read labelled episodes that arrived since the last call; returns how many."""
        count = 0
        for entry in sorted(self.inbox.iterdir()):
            if entry.name.startswith(".") or entry.name in self._read or not entry.is_dir():
                continue
            self.labelled.append(read_trajectory(entry))
            self._read.add(entry.name)
            count += 1
        self._new_since_round += count
        return count

    def ready(self) -> bool:
        """True when a round should run: ``min_labels`` new episodes and at least one success among all."""
        return (self._new_since_round >= self.cfg.min_labels
                and any(t.quality == "success" for t in self.labelled))

    # ------------------------------------------------------------------ training

    def _dataset(self) -> list[Trajectory]:
        dataset = list(self.labelled)
        if self.replay is not None and len(self.replay) and self.cfg.replay_fraction > 0:
            n = int(round(len(dataset) * self.cfg.replay_fraction / (1.0 - self.cfg.replay_fraction)))
            picks = self.rng.choice(len(self.replay), size=min(max(n, 1), len(self.replay)), replace=False)
            dataset += [self.replay[int(i)] for i in picks]
        return dataset

    def _make_trainer(self, dataset: list[Trajectory]) -> Any:
        from rlrm.train.lora import HEAD_PREFIXES, LoraSettings
        from rlrm.train.trainer import TrainConfig, Trainer

        if self.mode == "heads":
            for name, p in self.model.named_parameters():
                p.requires_grad_(name.startswith(HEAD_PREFIXES))
        cfg = TrainConfig(
            data="", output_dir=str(self.folder / "trainer"), model="(online)", seed=self.cfg.seed,
            steps=10**9, batch_size=self.cfg.batch_size, pair_batch_size=self.cfg.pair_batch_size, lr=self.cfg.lr,
            warmup_steps=0, min_lr_ratio=1.0, max_frames=int(self.model.info().max_frames),
            lora=LoraSettings() if self.mode == "lora" else None, threads=self.cfg.threads, resume=False,
            progress_ratios={"forward": 0.8, "rewind": 0.2, "different_instruction": 0.0},
            pair_ratios={"suboptimal": 1.0, "rewind": 0.5, "different_task": 0.5},
        )
        return Trainer(cfg, dataset=dataset, model=self.model)

    def train_round(self) -> int:
        """Fine-tune for ``steps`` steps on what is labelled now and publish the next version; returns it."""
        from rlrm.train.pairs import SampleMixer

        t0 = time.monotonic()
        dataset = self._dataset()
        if self._trainer is None:
            self._trainer = self._make_trainer(dataset)
        else:  # same weights and optimizer, the data of now
            old = self._trainer.mixer
            self._trainer.mixer = SampleMixer(dataset, max_frames=old.max_frames, progress_ratios=old.progress_ratios,
                                              pair_ratios=self._trainer.cfg.pair_ratios, seed=int(self.rng.integers(2**31)))
        losses: dict[str, float] = {}
        for _ in range(self.cfg.steps):
            loss = self._trainer.train_step(*self._trainer.sample_batch())
            parts = loss.as_floats()
            losses = {k: 0.9 * losses.get(k, v) + 0.1 * v for k, v in parts.items()}
        self.model.eval()
        version = self.version + 1
        publish_version(self.versions, version, self._save)
        self.version = version
        self._new_since_round = 0
        record = {
            "version": version, "time": time.time(), "seconds": round(time.monotonic() - t0, 2),
            "labels": len(self.labelled),
            "labels_success": sum(t.quality == "success" for t in self.labelled),
            "replay_trajectories": len(dataset) - len(self.labelled), "steps": self.cfg.steps, "mode": self.mode,
            "loss": {k: round(v, 5) for k, v in losses.items()},
        }
        with (self.folder / TRAINER_LOG).open("a") as f:
            f.write(json.dumps(record) + "\n")
        log.info("published reward model version %d (%d labels, %.0f s, loss %s)", version, len(self.labelled),
                 record["seconds"], record["loss"])
        return version

    def _save(self, directory: Path) -> None:
        if self.mode == "lora":
            from rlrm.train.trainer import _merged_copy

            _merged_copy(self.model).save_pretrained(directory, layout="upstream")
        else:
            self.model.save_pretrained(directory, layout="upstream")

    def run(self, stop: Any, poll_s: float = 1.0, parent_pid: int | None = None) -> None:
        """Poll the inbox and train rounds until ``stop`` (a :class:`StopFile` or an Event) is set or the parent
        process is gone."""
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("the run (pid %d) is gone; the reward trainer stops", parent_pid)
                return
            self.poll_inbox()
            if self.ready():
                self.train_round()
            else:
                stop.wait(poll_s)


class StopFile:
    """A stop request both processes see: the file ``path`` exists. (A ``multiprocessing.Event`` cannot be set
    any more once a process waiting on it was killed; a file has no such state.)"""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def is_set(self) -> bool:
        """True once :meth:`set` was called."""
        return self.path.exists()

    def set(self) -> None:
        """Request the stop."""
        self.path.touch()

    def clear(self) -> None:
        """Withdraw a stop request (a fresh start)."""
        self.path.unlink(missing_ok=True)

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s`` (in short naps), returning early once set; returns :meth:`is_set`."""
        deadline = time.monotonic() + timeout_s
        while not self.is_set() and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        return self.is_set()


def _trainer_main(model_spec: str, folder: str, cfg: dict[str, Any], stop_path: str, parent_pid: int) -> None:
    """Entry point of the trainer process: log to ``<folder>/trainer.log``, lower priority, train until stopped."""
    logging.basicConfig(filename=str(Path(folder) / "trainer.log"), level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if cfg.get("nice"):
        os.nice(int(cfg["nice"]))
    try:
        OnlineRewardTrainer(model_spec, folder, cfg).run(StopFile(stop_path), parent_pid=parent_pid)
    except BaseException:
        logging.getLogger(__name__).exception("the reward trainer failed")
        raise


class RewardTrainerProcess:
    """:class:`OnlineRewardTrainer` in its own process (``spawn``: a fresh interpreter, its own torch threads).

    Args:
        model_spec: the model the run serves as version 0.
        folder: the adaptation folder.
        cfg: :class:`~rlrm.config.RewardTrainerConfig` (or its dict).

    :meth:`check` tells whether it still runs; a crash is logged once and the run goes on with the last
    published version (the reward source never depends on the trainer being alive).

    >>> with RewardTrainerProcess("demo", "runs/x/reward_adapt", RewardTrainerConfig()) as trainer:  # doctest: +SKIP
    ...     ...
    """

    def __init__(self, model_spec: str, folder: str | os.PathLike, cfg: RewardTrainerConfig | Mapping[str, Any]):
        self.model_spec = model_spec
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cfg = asdict(cfg) if isinstance(cfg, RewardTrainerConfig) else dict(cfg)
        ctx = mp.get_context("spawn")
        self._stop = StopFile(self.folder / "STOP")
        self._stop.clear()
        self.process = ctx.Process(target=_trainer_main, name="rlrm-reward-trainer", daemon=True,
                                   args=(model_spec, str(self.folder), self.cfg, str(self._stop.path), os.getpid()))
        self.crashed: int | None = None  # the exit code of a trainer that died on its own

    def start(self) -> RewardTrainerProcess:
        """Start the process."""
        env = {"OMP_NUM_THREADS": str(self.cfg.get("threads", 1)), "MKL_NUM_THREADS": str(self.cfg.get("threads", 1))}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # a spawned interpreter reads them as torch loads
        try:
            self.process.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        log.info("reward trainer pid %d: learns from labels in %s", self.process.pid, self.folder)
        return self

    @property
    def pid(self) -> int | None:
        """The trainer's process id."""
        return self.process.pid

    def check(self) -> bool:
        """True while the trainer runs; after a crash logs once (with its log's tail) and returns False."""
        if self.process.is_alive():
            return True
        code = self.process.exitcode
        if self.crashed is None and not self._stop.is_set():
            self.crashed = code if code is not None else -1
            tail = ""
            log_file = self.folder / "trainer.log"
            if log_file.exists():
                tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
            log.error("the reward trainer (pid %s) exited with code %s; RL goes on with reward model version %d. "
                      "Its log (%s) ends with:\n%s", self.process.pid, code, latest_version(self.folder / VERSIONS),
                      log_file, tail)
        return False

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask the trainer to stop after its round in progress; kill it after ``timeout_s``."""
        self.check()
        self._stop.set()
        if self.process.is_alive():
            self.process.join(timeout_s)
            if self.process.is_alive():
                log.warning("the reward trainer did not stop within %.0f s; killing it", timeout_s)
                self.process.kill()
                self.process.join(5.0)

    def __enter__(self) -> RewardTrainerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
