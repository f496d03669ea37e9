"""Where an experiment script writes: ``outputs/`` by default, ``experiments/results/`` only when asked.

* :func:`add_output_arguments` - the ``--out`` and ``--results`` options every script shares.
* :func:`output_path` - the path they resolve to.

``experiments/results/`` holds the tracked numbers the README and docs quote; a rerun replaces
them only with ``--results`` (or an explicit ``--out``), so trying a script never rewrites them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
OUTPUTS = ROOT / "outputs" / "experiments"


def add_output_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """Add ``--out`` (default ``outputs/experiments/<name>``) and ``--results`` (write ``experiments/results/<name>``)."""
    parser.add_argument("--out", default=None,
                        help=f"output path (default {OUTPUTS.relative_to(ROOT) / name}; with --results "
                             f"{RESULTS.relative_to(ROOT) / name})")
    parser.add_argument("--results", action="store_true",
                        help="write into experiments/results/, replacing the tracked numbers the docs quote")


def output_path(args: argparse.Namespace, name: str) -> Path:
    """``--out`` if given, else ``experiments/results/<name>`` with ``--results``, else ``outputs/experiments/<name>``."""
    if args.out:
        return Path(args.out)
    return (RESULTS if args.results else OUTPUTS) / name
