"""``run_rl.py distributed.runners=N``: env runners and a learner on Ray, driven from this process.

* :func:`train_distributed` - what :func:`rlrm.run.train` runs for ``distributed.runners >= 1``: the
  same run folder, outputs and summary as a single-process run (:mod:`rlrm.run` writes them), plus
  the distributed keys in the summary (``runners``, ``policy_lag_p50``, ``env_steps_per_s`` ...).
* :func:`run_distributed` - :func:`rlrm.run.train` for a config that must run distributed.

What runs where::

    driver (this process)            runner actors (CPU, placed by runner_resources)
    ─────────────────────            ───────────────────────────────────────────────
    checks config + cluster          env + reward wrapper + policy (weights version v)
    hands out batches of steps  ───► collect(rollout_steps, v) ─► RolloutBatch
    passes batch refs on        ◄─── (observations stay in the object store)
            │                        learner actor (GPU if learner_resources asks)
            └──────────────────────► ingest(batch): replay buffer, owed gradient steps,
    latest weights ref          ◄─── PolicyWeights every sync_every steps, checkpoints, TensorBoard

The driver never deserialises a batch or the weights: it only passes object references on.
A runner is handed its next batch once the learner holds fewer than ``max_pending_batches`` of
its batches untrained, which keeps single-process SAC's update-to-data ratio. A runner that dies
(SIGKILL, or an env exception, after which the driver kills it) is restarted by Ray up to
``max_restarts`` times; the steps it owed are handed out again and the log says how many were lost.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from rlrm.distributed.config import (
    DistributedConfig,
    actor_options,
    check_cluster,
    distributed_config,
    ray_cluster,
)
from rlrm.distributed.learner import Learner
from rlrm.distributed.runner import EnvRunner
from rlrm.distributed.shared_reward import RewardEndpoint, open_shared_reward
from rlrm.known_notices import QUIET_RAY_WORKERS
from rlrm.rl.run_folder import EVAL_SEED_OFFSET, RunOutcome, RunStart, keep_final_frames, video_episodes

__all__ = ["train_distributed", "run_distributed"]

log = logging.getLogger(__name__)

_RETRY_S = 0.5  # between liveness probes of a restarting runner
_RECOVERY_TIMEOUT_S = 300.0
_PROGRESS_EVERY_S = 10.0
_SB3_LEARNING_STARTS = 100  # SAC's default when algo sets none


class _Slot:
    """The driver's view of one runner: what it is doing and what it owes the learner."""

    def __init__(self, index: int, actor: Any) -> None:
        self.index = index
        self.actor = actor
        self.state = "idle"  # idle | collecting | flushing | waiting | recovering | done | dead
        self.meta_ref: Any = None
        self.batch_ref: Any = None
        self.ready_ref: Any = None
        self.retry_at = 0.0
        self.recovering_since = 0.0
        self.owed = 0  # steps handed to this runner that have not reached the learner yet
        self.queued = 0  # batches of this runner the learner has not trained on yet
        self.flushed = False
        self.versions: list[int] = []
        self.pid: int | None = None  # of the process running it now
        self.dead_pid: int | None = None  # of the process that failed (a probe it answers is not a restart)


class _Driver:
    """Start the actors, hand out work, react to failures, collect the numbers for the summary."""

    def __init__(self, cfg: dict[str, Any], dcfg: DistributedConfig, run_dir: Path, endpoint: RewardEndpoint,
                 run_id: str, resume_checkpoint: Path | None) -> None:
        import ray

        self.ray = ray
        self.cfg, self.dcfg, self.run_dir, self.endpoint = cfg, dcfg, run_dir, endpoint
        self.run_id = run_id
        self.resume_checkpoint = resume_checkpoint
        self.slots: list[_Slot] = []
        self.learner: Any = None
        self.learner_queue: deque[tuple[Any, Any, _Slot]] = deque()
        self.failures = 0
        self.lost_steps = 0
        self.stats: dict[str, Any] = {}
        self.train_s = 0.0

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        """Create the runners (each builds its env), then the learner on the runners' spaces."""
        ray, dcfg = self.ray, self.dcfg
        runner_cls = _remote_runner_class(ray)
        for i in range(dcfg.runners):
            actor = runner_cls.options(
                name=f"rlrm-runner-{self.run_id}-{i}", max_restarts=dcfg.max_restarts, max_task_retries=0,
                **actor_options(dcfg.runner_resources),
            ).remote(self.cfg, i, self.endpoint)
            self.slots.append(_Slot(i, actor))
        placed = ray.get([s.actor.ready.remote() for s in self.slots])
        for slot, where in zip(self.slots, placed, strict=True):
            slot.pid = where["pid"]
            log.info("runner %d: pid %d on %s", where["runner"], where["pid"], where["host"])
        spaces = ray.get([s.actor.spaces.remote() for s in self.slots])[0]  # builds every env; errors show here
        learner_cls = ray.remote(Learner).options(name=f"rlrm-learner-{self.run_id}", max_restarts=0,
                                                  **actor_options(dcfg.learner_resources))
        self.learner = learner_cls.remote(self.cfg, str(self.run_dir), *spaces, sync_every=dcfg.sync_every,
                                          resume_checkpoint=str(self.resume_checkpoint) if self.resume_checkpoint else None)
        self.stats = ray.get(self.learner.stats.remote())
        self.start_steps = int(self.stats["env_steps"])
        self.version = int(self.stats["version"])
        self.weights_ref = self.learner.weights.remote()  # a return value: owned by this driver, not by an actor

    # ------------------------------------------------------------------ the loop
    def train(self) -> None:
        """Hand out batches until the learner received ``total_steps`` transitions, then finish the learner."""
        ray = self.ray
        self.total = int(self.cfg["total_steps"])
        self.assigned = self.start_steps
        self.learning_starts = int(self.cfg["algo"].get("learning_starts", _SB3_LEARNING_STARTS))
        t0 = last_log = time.perf_counter()
        while True:
            for slot in self.slots:
                if slot.state == "idle":
                    self._submit(slot)
            waits: dict[Any, tuple[str, _Slot | None]] = {}
            for slot in self.slots:
                if slot.state in ("collecting", "flushing"):
                    waits[slot.meta_ref] = ("meta", slot)
                elif slot.state == "recovering" and slot.ready_ref is not None:
                    waits[slot.ready_ref] = ("ready", slot)
            if self.learner_queue:
                waits[self.learner_queue[0][0]] = ("learner", None)  # the learner answers in order
            recovering = [s for s in self.slots if s.state == "recovering"]
            if not waits and not recovering:
                break
            if not any(s.state not in ("dead",) for s in self.slots):
                raise RuntimeError(f"all {len(self.slots)} runners died (max_restarts={self.dcfg.max_restarts} "
                                   "each); see the errors above")
            ready, _ = ray.wait(list(waits), num_returns=1, timeout=_RETRY_S) if waits else ([], [])
            for ref in ready:
                kind, slot = waits[ref]
                if kind == "meta":
                    self._on_batch(slot)
                elif kind == "ready":
                    self._on_ready(slot)
                else:
                    self._on_learner()
            self._probe_recovering()
            if time.perf_counter() - last_log > _PROGRESS_EVERY_S:
                last_log = time.perf_counter()
                self._log_progress()
        self.train_s = time.perf_counter() - t0  # collection and learning; the final checkpoint is not training
        self.stats = ray.get(self.learner.finish.remote())
        self._log_progress()

    def _submit(self, slot: _Slot) -> None:
        if slot.queued >= self.dcfg.max_pending_batches:
            slot.state = "waiting"  # the learner is behind on this runner's data
            return
        remaining = self.total - self.assigned
        if remaining <= 0:
            if slot.flushed:
                slot.state = "done"
                return
            n, flush = 0, True  # last call: ship transitions still waiting for their reward
        else:
            n, flush = min(self.dcfg.rollout_steps, remaining), False
            slot.flushed = False  # new steps may leave transitions waiting for labels again
        random_actions = self.assigned < self.learning_starts
        self.assigned += n
        slot.owed += n
        slot.meta_ref, slot.batch_ref = slot.actor.collect.options(num_returns=2).remote(
            n, self.version, [self.weights_ref], random_actions, flush)
        slot.state = "flushing" if flush else "collecting"

    def _on_batch(self, slot: _Slot) -> None:
        ray = self.ray
        try:
            meta = ray.get(slot.meta_ref)
        except ray.exceptions.RayActorError as e:
            self._runner_lost(slot, f"{type(e).__name__} (process died)", slot.owed, exact=False)
            return
        if meta["shipped"]:
            stats_ref, weights_ref = self.learner.ingest.options(num_returns=2).remote(slot.batch_ref)
            self.learner_queue.append((stats_ref, weights_ref, slot))
            slot.queued += 1
            slot.owed -= meta["shipped"]
        slot.versions.append(int(meta["version"]))
        slot.pid = meta["pid"]
        if meta["error"]:
            self._runner_lost(slot, meta["error"], meta["lost_steps"], exact=True)
            ray.kill(slot.actor, no_restart=False)  # a fresh process and env; Ray restarts it
            return
        if slot.state == "flushing":
            slot.flushed = True
        slot.state = "idle"

    def _runner_lost(self, slot: _Slot, reason: str, lost: int, exact: bool) -> None:
        self.failures += 1
        self.lost_steps += int(lost)
        self.assigned -= slot.owed  # whatever it owed is handed out again
        log.warning(
            "runner %d failed (%s): its in-flight episode is lost, %s%d env step(s) never reached the learner; "
            "the %d step(s) it owed are handed out again. Ray restarts it (max_restarts=%d)", slot.index, reason,
            "" if exact else "at most ", lost, slot.owed, self.dcfg.max_restarts)
        slot.owed = 0
        slot.flushed = False
        slot.dead_pid = slot.pid
        for other in self.slots:  # runners that finished their share take over what this one owed
            if other.state == "done":
                other.state = "idle"
        slot.state = "recovering"
        slot.ready_ref = None
        slot.retry_at = time.perf_counter()
        slot.recovering_since = time.perf_counter()

    def _probe_recovering(self) -> None:
        now = time.perf_counter()
        for slot in self.slots:
            if slot.state != "recovering" or slot.ready_ref is not None or now < slot.retry_at:
                continue
            if now - slot.recovering_since > _RECOVERY_TIMEOUT_S:
                log.error("runner %d did not come back within %.0f s; continuing without it", slot.index,
                          _RECOVERY_TIMEOUT_S)
                slot.state = "dead"
                continue
            slot.ready_ref = slot.actor.ready.remote()

    def _on_ready(self, slot: _Slot) -> None:
        ray = self.ray
        try:
            where = ray.get(slot.ready_ref)
        except ray.exceptions.ActorDiedError as e:  # restarts used up (a restarting actor is "unavailable")
            log.error("runner %d is gone for good (max_restarts=%d used up): %s; continuing with the others",
                      slot.index, self.dcfg.max_restarts, str(e).splitlines()[0])
            slot.state = "dead"
            return
        except ray.exceptions.RayActorError:  # still restarting
            slot.ready_ref, slot.retry_at = None, time.perf_counter() + _RETRY_S
            return
        if where["pid"] == slot.dead_pid:  # the failed process answered before its kill took effect
            slot.ready_ref, slot.retry_at = None, time.perf_counter() + _RETRY_S
            return
        slot.pid = where["pid"]
        log.warning("runner %d is back (pid %d on %s) and resumes with weights version %d", slot.index,
                    where["pid"], where["host"], self.version)
        slot.state = "idle"

    def _on_learner(self) -> None:
        stats_ref, weights_ref, slot = self.learner_queue.popleft()
        self.stats = self.ray.get(stats_ref)  # a learner error ends the run: it holds the buffer
        slot.queued -= 1
        if slot.state == "waiting":
            slot.state = "idle"
        if self.stats["version"] > self.version:
            self.version = int(self.stats["version"])
            self.weights_ref = weights_ref

    def _log_progress(self) -> None:
        s = self.stats
        log.info("learner: %d/%d transitions (per runner %s), %d updates, weights v%d, policy lag p50 %s; "
                 "%d runner failures", s.get("env_steps", 0), self.total, s.get("runner_steps"), s.get("updates", 0),
                 s.get("version", 0), s.get("policy_lag_p50"), self.failures)

    # ------------------------------------------------------------------ evaluation and shutdown
    def evaluate(self) -> dict[str, Any]:
        """Evaluation episodes on the first live runner with the final weights, as a single-process run does."""
        from rlrm.rl.evaluation import evaluation_episodes

        # on a robot: no more episodes than the run trained (and a person is asked at a terminal)
        episodes = evaluation_episodes(self.cfg, int(self.stats["env_steps"]) - self.start_steps)
        live = [s for s in self.slots if s.state != "dead"]
        if not live:
            raise RuntimeError("no live runner left to evaluate the policy on")
        final = self.learner.weights.remote()
        return self.ray.get(live[0].actor.evaluate.remote(
            None, [final], episodes, EVAL_SEED_OFFSET + int(self.cfg["seed"]), str(self.run_dir / "videos"),
            video_episodes(self.cfg), keep_final_frames(self.cfg)))

    def shutdown(self, interrupted: bool) -> None:
        """Stop (robots halt now) and close every runner, then the learner; kill the actors."""
        ray = self.ray
        if interrupted:
            log.warning("run interrupted or failed: stopping %d runners and the learner", len(self.slots))
            for slot in self.slots:
                slot.actor.stop.remote()  # on the runner's control thread: a robot halts mid-collect
        closing = [s.actor.close.remote() for s in self.slots]
        if self.learner is not None:
            closing.append(self.learner.close.remote())
        done, late = ray.wait(closing, num_returns=len(closing), timeout=30)
        for ref in done:
            try:
                ray.get(ref)
            except Exception as e:  # shutting down anyway; say which close failed (a robot may need a look)
                log.warning("closing an actor failed: %s", str(e).splitlines()[0])
        if late:
            log.warning("%d actor(s) did not close within 30 s; killing them", len(late))
        for actor in [s.actor for s in self.slots] + ([self.learner] if self.learner is not None else []):
            ray.kill(actor, no_restart=True)


def _remote_runner_class(ray: Any) -> Any:
    """:class:`EnvRunner` as a Ray actor class: env calls on one thread, ``ready``/``stop`` on a second one."""

    class RemoteEnvRunner(EnvRunner):
        """An :class:`EnvRunner` whose liveness probe and stop answer while ``collect`` runs.

        Env methods stay in Ray's default concurrency group (one thread): GL contexts and robot SDKs
        belong to the thread that made them.
        """

        @ray.method(concurrency_group="control")
        def ready(self) -> dict[str, Any]:
            """See :meth:`EnvRunner.ready`."""
            return EnvRunner.ready(self)

        @ray.method(concurrency_group="control")
        def stop(self) -> None:
            """See :meth:`EnvRunner.stop`."""
            EnvRunner.stop(self)

    return ray.remote(concurrency_groups={"control": 1})(RemoteEnvRunner)


def train_distributed(start: RunStart) -> RunOutcome:
    """Train with ``distributed.runners`` env runners and a learner on Ray; what :func:`rlrm.run.train` summarises.

    The config was checked by :func:`rlrm.run.start_run`; the cluster is checked here (address
    reachable, the requested resources on some node) before any env, worker or actor starts.
    """
    dcfg = distributed_config(start.cfg)
    cfg, run_dir, resume = start.cfg, start.run_dir, start.resume
    run_id = uuid.uuid4().hex[:8]
    with ray_cluster(dcfg.address, runtime_env=QUIET_RAY_WORKERS):  # no Adroit notice from each runner
        check_cluster(dcfg, cfg)
        with open_shared_reward(cfg, f"rlrm-reward-{run_id}") as endpoint:
            driver = _Driver(cfg, dcfg, run_dir, endpoint, run_id, resume.checkpoint if resume else None)
            interrupted = True
            try:
                driver.start()
                driver.train()
                metrics = driver.evaluate()
                interrupted = False
            finally:
                driver.shutdown(interrupted)
    stats = driver.stats
    trained = int(stats["env_steps"]) - driver.start_steps
    extra = {
        "runners": dcfg.runners,
        "env_steps_per_s": trained / driver.train_s if driver.train_s > 0 else None,
        "policy_lag_p50": stats["policy_lag_p50"],
        "policy_lag_p90": stats["policy_lag_p90"],
        "learner_updates": stats["updates"],
        "learner_updates_per_s": stats["updates_per_s"],
        "weights_version": stats["version"],
        "runner_env_steps": {str(k): v for k, v in sorted(stats["runner_steps"].items())},
        "runner_weight_versions": {str(s.index): _distinct(s.versions) for s in driver.slots},
        "runner_failures": driver.failures,
        "runner_lost_steps": driver.lost_steps,
        "intervention_steps": stats["takeover_steps"],
    }
    log.info("%d runners: %d env steps at %.1f steps/s, policy lag p50 %s, %d runner failures", dcfg.runners,
             int(stats["env_steps"]), extra["env_steps_per_s"] or 0.0, extra["policy_lag_p50"], driver.failures)
    dataset = (cfg.get("record") or {}).get("dataset")  # each runner records into DIR/runner-<i> on its host
    recorded = {"dataset": str(dataset), "parts": [f"runner-{i}" for i in range(int(cfg["distributed"]["runners"]))]
                } if dataset else None
    return RunOutcome(metrics, env_steps=int(stats["env_steps"]), trained_steps=trained, train_s=driver.train_s,
                      videos=metrics.pop("videos", []), reward_model=endpoint.model, extra=extra, recorded=recorded)


def run_distributed(cfg: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """:func:`rlrm.run.train` for a config that asks for ``distributed.runners >= 1`` (checked first).

    >>> run_distributed(compose("config", ["distributed.runners=2"]), "outputs/run")   # doctest: +SKIP
    """
    from rlrm.run import train

    distributed_config(cfg)  # runners=0 is refused here, not silently run in one process
    return train(cfg, run_dir)


def _distinct(versions: list[int]) -> list[int]:
    """``versions`` without consecutive repeats (the weights versions a runner moved through, in order)."""
    out: list[int] = []
    for v in versions:
        if not out or out[-1] != v:
            out.append(v)
    return out
