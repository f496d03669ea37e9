"""The ``rlrm`` command line: one subcommand per job, each implemented where its layer lives.

Subcommands are dispatched lazily so that ``rlrm --help`` is instant and a missing
optional dependency only affects the subcommand that needs it. Each implementing module
exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

__all__ = ["main", "SUBCOMMANDS", "BENCHMARKS"]

# name -> (module implementing it, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("rlrm.run_cli", "train a policy with Robometer rewards (run_rl.py for an installed package; Hydra overrides)"),
    "worker": ("rlrm.transport.worker_cli", "serve a reward model over ZeroMQ"),
    "keys": ("rlrm.transport.keys", "make a CurveZMQ key pair for an authenticated worker"),
    "score": ("rlrm.models.score_cli", "score a video (mp4/avi/npy) against a task"),
    "eval": ("rlrm.evaluate.cli", "evaluate a reward model on trajectory data"),
    "train": ("rlrm.train.cli", "train or LoRA fine-tune a Robometer reward model"),
}

# `rlrm bench NAME`: name -> (module, help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "model": ("rlrm.bench.model", "ms per query of a reward model at several batch sizes"),
    "worker": ("rlrm.bench.worker", "worker throughput/latency, batched vs unbatched, transport overhead"),
    "envs": ("envs.bench", "simulated env steps/s with rendering, default vs fast rendering"),
    "robots": ("robots.bench", "control-loop ms/step of each simulated robot env vs a kinematic baseline"),
}


class _Lazy:
    """Defers importing a subcommand module until its parser or runner is needed."""

    def __init__(self, module: str) -> None:
        self.module = module

    def load(self):
        """Import the implementing module."""
        return importlib.import_module(self.module)


def _build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlrm",
        description="Robometer rewards for online RL: workers, scoring, evaluation, training, benchmarks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    _add_commands(sub, SUBCOMMANDS, wanted)
    bench = sub.add_parser("bench", help="benchmarks that print a table and write JSON")
    bsub = bench.add_subparsers(dest="bench", metavar="BENCH")
    bench_wanted = None
    if wanted == "bench":
        rest = argv[argv.index("bench") + 1 :]
        bench_wanted = next((a for a in rest if not a.startswith("-")), None)
    _add_commands(bsub, BENCHMARKS, bench_wanted)
    return parser


def _add_commands(sub: Any, table: dict[str, tuple[str, str]], wanted: str | None) -> None:
    """One subparser per ``name -> (module, help)``; only the ``wanted`` one imports its module for its options."""
    for name, (module, help_) in table.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        if name == wanted:
            _Lazy(module).load().add_arguments(p)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rlrm`` console script."""
    from rlrm.known_notices import silence_known_notices

    silence_known_notices()  # before any subcommand imports gymnasium-robotics, PyOpenGL or robosuite
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    module = getattr(args, "_module", None)
    if module is None:
        parser.print_help()
        return 2
    rc = _Lazy(module).load().run(args)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
