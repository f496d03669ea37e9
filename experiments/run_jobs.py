"""Run several ``python run_rl.py`` jobs side by side, for the experiment scripts.

* :func:`run_parallel` - start each job's run (``parallel`` at a time), wait, read each finished run folder.
* :func:`read_run` - a finished run folder's final evaluation and learning curve.

A job whose folder already holds a ``summary.json`` is read, not run again, so an interrupted study resumes.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("run_jobs")


def read_run(run_dir: Path) -> dict[str, Any]:
    """``summary.json``'s final evaluation (success, return, episodes, env steps, wall time) and the learning curve."""
    summary = json.loads((run_dir / "summary.json").read_text())
    run = {k: summary[k] for k in ("eval_success_rate", "eval_return", "env_steps", "wall_s")}
    run["eval_episodes"] = len(summary["eval_episodes"])
    curve = run_dir / "learning_curve.json"
    run["curve"] = json.loads(curve.read_text())["points"] if curve.exists() else []
    return run


def run_parallel(jobs: dict[Hashable, tuple[Path, list[str]]], parallel: int,
                 read: Callable[[Path], Any] = read_run, strict: bool = True) -> dict[Hashable, Any]:
    """Run ``run_rl.py <overrides> hydra.run.dir=<run_dir>`` for every ``key: (run_dir, overrides)``.

    Returns ``{key: read(run_dir)}`` for the runs that finished; a failed run raises (``strict``) or is
    logged and left out.
    """
    waiting, running, done = list(jobs.items()), {}, {}
    while waiting or running:
        while waiting and len(running) < parallel:
            key, (run_dir, overrides) = waiting.pop(0)
            if (run_dir / "summary.json").exists():
                done[key] = read(run_dir)
                continue
            run_dir.mkdir(parents=True, exist_ok=True)
            log_file = open(run_dir / "stdout.log", "w")  # noqa: SIM115 (closed when the run ends)
            proc = subprocess.Popen([sys.executable, str(ROOT / "run_rl.py"), *overrides, f"hydra.run.dir={run_dir}"],
                                    stdout=log_file, stderr=subprocess.STDOUT)
            running[key] = (proc, log_file, run_dir, time.perf_counter())
            log.info("started %s (pid %d) -> %s", key, proc.pid, run_dir)
        time.sleep(2)
        for key, (proc, log_file, run_dir, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            log_file.close()
            del running[key]
            if proc.returncode != 0:
                message = f"run {key} failed (exit {proc.returncode}); see {run_dir / 'stdout.log'}"
                if strict:
                    raise RuntimeError(message)
                log.error(message)
                continue
            done[key] = read(run_dir)
            log.info("%s finished in %.0f s", key, time.perf_counter() - t0)
    return done
