"""Numbered reward-model versions in a folder: published atomically by a trainer, picked up by a server.

* :func:`version_dir` - ``<root>/v000003``, the folder of version 3.
* :func:`publish_version` - write a version through a ``save(folder)`` callable, then make it visible in
  one ``rename``: a reader never sees a half-written version.
* :func:`published_versions` / :func:`latest_version` - the complete versions in a folder, newest last.
* :class:`VersionWatcher` - a thread that polls a folder and hands each newer version to a callback
  (the reward worker loads it and swaps it in between batches).

Layout of a versions folder (written by :mod:`rlrm.train.online`, read by ``rlrm worker --watch``)::

    <root>/v000001/          a model checkpoint folder (``make_reward_model(path)`` loads it)
    <root>/v000001/VERSION   the version number, written last inside the temporary folder
    <root>/.tmp-v000002-*/   a version being written (ignored by readers; left behind by a crash)

Version 0 is the model a server starts with; published versions count up from 1. A version that does
not load (a crash left it broken, the disk filled) is logged and skipped: the server keeps serving the
one it has. Nothing here imports torch: the caller saves and loads.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["VERSION_FILE", "version_dir", "publish_version", "published_versions", "latest_version",
           "VersionWatcher"]

log = logging.getLogger(__name__)

VERSION_FILE = "VERSION"
"""The file inside a version folder holding its number (written last: a complete version has it)."""
_NAME = re.compile(r"^v(\d{6,})$")


def version_dir(root: str | os.PathLike, version: int) -> Path:
    """The folder of ``version`` under ``root`` (``<root>/v000003``)."""
    return Path(root) / f"v{int(version):06d}"


def publish_version(root: str | os.PathLike, version: int, save: Callable[[Path], Any]) -> Path:
    """Write version ``version`` with ``save(tmp_folder)`` and rename it into place; returns its folder.

    Raises ``ValueError`` for a version < 1 and ``FileExistsError`` if that version exists already
    (versions are immutable: a server may be reading it).

    >>> import tempfile; root = tempfile.mkdtemp()
    >>> _ = publish_version(root, 1, lambda d: (d / "weights.bin").write_bytes(b"w"))
    >>> latest_version(root)
    1
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be an int >= 1 (0 is the model a server starts with), got {version!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = version_dir(root, version)
    if final.exists():
        raise FileExistsError(f"version {version} already exists at {final}; publish the next number")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    try:
        save(tmp)
        (tmp / VERSION_FILE).write_text(f"{version}\n")
        os.rename(tmp, final)  # atomic on one filesystem: readers see all of it or nothing
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def published_versions(root: str | os.PathLike) -> list[int]:
    """The complete versions in ``root`` (folders ``vNNNNNN`` holding ``VERSION``), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        m = _NAME.match(entry.name)
        if m and (entry / VERSION_FILE).is_file():
            found.append(int(m.group(1)))
    return sorted(found)


def latest_version(root: str | os.PathLike) -> int:
    """The newest complete version in ``root``; 0 when none is published yet."""
    versions = published_versions(root)
    return versions[-1] if versions else 0


class VersionWatcher:
    """Polls a versions folder and calls ``on_version(version, folder)`` for each version newer than the last.

    Only the newest version is handed over (a server that was busy skips the ones in between). If
    ``on_version`` raises, the error is logged with the version and that version is not retried: the
    caller keeps what it had.

    Args:
        root: the versions folder (created if missing).
        on_version: called on the watcher thread with ``(version, folder)``.
        start_after: versions up to this one are taken as known (the server's current version).
        poll_s: seconds between looks at the folder.

    >>> watcher = VersionWatcher("runs/versions", lambda v, d: print(v, d)).start()   # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike, on_version: Callable[[int, Path], Any], start_after: int = 0,
                 poll_s: float = 0.5) -> None:
        if poll_s <= 0:
            raise ValueError(f"poll_s must be > 0 seconds, got {poll_s!r}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.on_version = on_version
        self.seen = int(start_after)
        self.poll_s = float(poll_s)
        self.failed: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> int | None:
        """Look once; hand over the newest unseen version. Returns it (None: nothing new)."""
        newest = latest_version(self.root)
        if newest <= self.seen:
            return None
        self.seen = newest
        try:
            self.on_version(newest, version_dir(self.root, newest))
        except Exception:
            log.exception("reward model version %d at %s did not load; keeping the current one",
                          newest, version_dir(self.root, newest))
            self.failed.append(newest)
            return None
        return newest

    def start(self) -> VersionWatcher:
        """Start polling on a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("version watcher already started")
        self._thread = threading.Thread(target=self._loop, name="rlrm-version-watch", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.check()

    def stop(self) -> None:
        """Stop polling (waits for a load in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60.0)
