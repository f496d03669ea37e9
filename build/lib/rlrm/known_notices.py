"""Known third-party notices that say nothing about an rlrm run, silenced by the entry points.

* :data:`QUIET_RAY_WORKERS` - the Ray ``runtime_env`` that does the same in every Ray worker process
  (env runners import gymnasium-robotics there, each printing the Adroit notice into the driver's log).
* :func:`silence_known_notices` - drop exactly these, before the libraries are imported:

  - gymnasium-robotics 1.2.1-1.4.2 prints that the Adroit hand envs' rewards changed (rlrm uses no Adroit env);
  - PyOpenGL logs "No OpenGL_accelerate module loaded" at INFO (the optional C speed-up; MuJoCo renders without it);
  - robosuite (LIBERO) warns three times that it has no private macro file (its defaults are what LIBERO uses).

``run_rl.py`` and ``rlrm`` (``rlrm/cli.py``) call it first thing, and a distributed run started by them
passes :data:`QUIET_RAY_WORKERS` to ``ray.init``; library code never does, so an application importing rlrm
keeps every message it would otherwise see. Other warnings still show.
"""

from __future__ import annotations

import logging

__all__ = ["silence_known_notices", "KNOWN_LOG_NOTICES", "QUIET_RAY_WORKERS"]

QUIET_RAY_WORKERS: dict[str, str] = {"worker_process_setup_hook": "rlrm.known_notices.silence_known_notices"}
"""``ray.init(runtime_env=...)`` that runs :func:`silence_known_notices` first in each Ray worker process."""

KNOWN_LOG_NOTICES: dict[str, tuple[str, ...]] = {
    "OpenGL.acceleratesupport": ("No OpenGL_accelerate module loaded",),
    "robosuite_logs": ("No private macro file found", "It is recommended to use a private macro file",
                       "setup_macros.py"),
}
"""Logger name -> message fragments of the records dropped from it."""


class _DropNotices(logging.Filter):
    """Drops log records whose message contains one of ``fragments``."""

    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def silence_known_notices() -> None:
    """Install the filters above (idempotent); call before gymnasium-robotics, PyOpenGL or robosuite is imported.

    >>> silence_known_notices()
    >>> logging.getLogger("OpenGL.acceleratesupport").filter(
    ...     logging.makeLogRecord({"msg": "No OpenGL_accelerate module loaded: No module named 'x'"}))
    False
    """
    for name, fragments in KNOWN_LOG_NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotices) for f in logger.filters):
            logger.addFilter(_DropNotices(fragments))
    try:  # gymnasium-robotics prints its notice from farama_notifications at import: remove the Adroit one only
        from farama_notifications import notifications
    except ImportError:
        return
    robotics = notifications.get("gymnasium_robotics") or {}
    for version in [v for v, text in robotics.items() if "Adroit" in text]:
        del robotics[version]
