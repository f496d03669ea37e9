"""CurveZMQ keys for an authenticated reward worker, and the ``rlrm keys DIR`` command.

* :func:`generate_keys` - write ``server.key`` (public, give it to clients) and
  ``server.key_secret`` (keep it on the worker) into a directory.
* :func:`load_server_keys` - the worker's (public, secret) pair from such a directory.
* :func:`load_server_public_key` - the server public key a client needs, from a directory,
  a key file, or the 40-character z85 text itself.
* ``add_arguments`` / ``run`` - the ``rlrm keys`` subcommand.

A worker started with ``--curve-keys DIR`` encrypts all traffic and answers only clients that
know its public key (``RewardClient(url, curve_server_key=DIR)``).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

__all__ = ["generate_keys", "load_server_keys", "load_server_public_key", "add_arguments", "run"]

log = logging.getLogger(__name__)

SERVER_PUBLIC = "server.key"
SERVER_SECRET = "server.key_secret"


def generate_keys(key_dir: str | os.PathLike, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a new CurveZMQ server key pair into ``key_dir``; returns (public file, secret file).

    >>> import tempfile
    >>> pub, sec = generate_keys(tempfile.mkdtemp())
    >>> pub.name, sec.name
    ('server.key', 'server.key_secret')
    """
    if not zmq.has("curve"):
        raise RuntimeError("this libzmq was built without CURVE support; reinstall pyzmq from its wheel")
    key_dir = Path(key_dir)
    public, secret = key_dir / SERVER_PUBLIC, key_dir / SERVER_SECRET
    if not overwrite and (public.exists() or secret.exists()):
        raise FileExistsError(f"{key_dir} already holds server keys; pass overwrite=True (--force) to replace them")
    key_dir.mkdir(parents=True, exist_ok=True)
    zmq.auth.create_certificates(key_dir, "server")
    secret.chmod(0o600)
    return public, secret


def load_server_keys(source: Any) -> tuple[bytes, bytes]:
    """The worker's (public, secret) z85 key pair from a key directory, a secret key file, or a pair."""
    if isinstance(source, (tuple, list)):
        if len(source) != 2:
            raise ValueError(f"curve_keys pair must be (public, secret), got {len(source)} values")
        public, secret = (k.encode() if isinstance(k, str) else bytes(k) for k in source)
    else:
        path = _key_file(source, SERVER_SECRET, f"no CurveZMQ secret key at {{path}}: make one with `rlrm keys {source}`")
        public, secret = zmq.auth.load_certificate(path)
        if secret is None:
            raise ValueError(f"{path} holds only a public key; the worker needs {SERVER_SECRET}")
    for name, key in (("public", public), ("secret", secret)):
        if len(key) != 40:
            raise ValueError(f"curve {name} key must be 40 z85 characters, got {len(key)}")
    return public, secret


def load_server_public_key(source: Any) -> bytes:
    """The server public key (40 z85 bytes) from z85 text/bytes, a key file, or a key directory."""
    if isinstance(source, (bytes, bytearray)) or (isinstance(source, str) and len(source) == 40 and not os.path.exists(source)):
        key = source.encode() if isinstance(source, str) else bytes(source)
        if len(key) != 40:
            raise ValueError(f"curve server key must be 40 z85 characters, got {len(key)}")
        return key
    path = _key_file(source, SERVER_PUBLIC,
                     f"no CurveZMQ public key at {{path}}: copy {SERVER_PUBLIC} from the worker's key directory")
    public, _ = zmq.auth.load_certificate(path)
    return public


def _key_file(source: Any, name: str, missing: str) -> Path:
    """``source`` as a key file path (``source/name`` for a directory); FileNotFoundError(``missing``) if absent."""
    path = Path(source)
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise FileNotFoundError(missing.format(path=path))
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rlrm keys``."""
    parser.add_argument("dir", help="directory to write server.key (public) and server.key_secret into")
    parser.add_argument("--force", action="store_true", help="replace keys that already exist")


def run(args: argparse.Namespace) -> int:
    """Make the key pair and say where each half goes."""
    try:
        public, secret = generate_keys(args.dir, overwrite=args.force)
    except FileExistsError as e:
        log.error("%s", e)
        return 1
    log.info("wrote %s (give to clients) and %s (keep on the worker)", public, secret)
    print(f"public key (clients): {public}\nsecret key (worker):  {secret}")
    print(f"serve with:  rlrm worker --curve-keys {args.dir} --bind tcp://0.0.0.0:5555 ...")
    print(f"connect with: RewardClient('tcp://HOST:5555', curve_server_key='{public}')")
    return 0
