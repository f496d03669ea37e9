"""``rlrm run [overrides]``: ``run_rl.py`` for an installed package (no source checkout needed).

* :func:`main` - compose the run config from the package's configs (:data:`rlrm.config.CONFIG_DIR`) and
  the Hydra ``overrides``, then run it with :func:`rlrm.run.main` (the same driver ``run_rl.py`` calls).
* ``add_arguments`` / ``run`` - the ``rlrm run`` subcommand (everything after ``run`` is passed to Hydra).

    rlrm run                                        # the default job: FetchReach, SAC, the demo reward model
    rlrm run algo=ppo total_steps=10000 transport=local
    rlrm run --cfg job                              # print the composed config (any Hydra flag works)
    python -m rlrm.run total_steps=2000             # the same without the console script
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "add_arguments", "run"]


def main(overrides: list[str] | None = None) -> int:
    """Run one job with Hydra ``overrides`` (``key=value``, ``group=option``, Hydra flags); returns 0."""
    import hydra

    from rlrm.config import CONFIG_DIR, register_configs
    from rlrm.known_notices import silence_known_notices

    silence_known_notices()
    register_configs()

    @hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=None)
    def _hydra_main(cfg) -> None:  # noqa: ANN001 - a DictConfig
        from rlrm.run import main as run_main

        run_main(cfg)

    argv = sys.argv
    sys.argv = ["rlrm run", *(sys.argv[1:] if overrides is None else overrides)]
    try:
        _hydra_main()
    finally:
        sys.argv = argv
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rlrm run``: Hydra overrides, exactly as ``python run_rl.py`` takes them."""
    parser.add_argument("overrides", nargs=argparse.REMAINDER,
                        help="Hydra overrides, e.g. total_steps=2000 algo=ppo transport=local reward.model=tiny")


def run(args: argparse.Namespace) -> int:
    """Run the job (``rlrm run``)."""
    return main(list(args.overrides))


if __name__ == "__main__":
    raise SystemExit(main())
