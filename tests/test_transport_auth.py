"""CurveZMQ: `rlrm keys`, workers that only answer key holders, and the loopback-only default."""

import subprocess
import sys

import numpy as np
import pytest

from rlrm.cli import main
from rlrm.transport import RewardClient, RewardWorker
from rlrm.transport.keys import generate_keys, load_server_keys, load_server_public_key
from rlrm.transport.server import is_loopback
from rlrm.types import RewardQuery

QUERY = RewardQuery(np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8), "fold the towel")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    key_dir = tmp_path_factory.mktemp("keys")
    assert main(["keys", str(key_dir)]) == 0
    return key_dir


def test_keys_command_writes_a_pair_and_refuses_to_overwrite(keys, tmp_path):
    assert (keys / "server.key").is_file() and (keys / "server.key_secret").is_file()
    assert (keys / "server.key_secret").stat().st_mode & 0o077 == 0
    public, secret = load_server_keys(keys)
    assert load_server_public_key(keys) == public == load_server_public_key(keys / "server.key")
    assert load_server_public_key(public.decode()) == public
    assert main(["keys", str(keys)]) == 1  # exists: keep the old pair
    assert load_server_keys(keys) == (public, secret)
    assert main(["keys", str(keys), "--force"]) == 0
    assert load_server_keys(keys) != (public, secret)
    with pytest.raises(FileNotFoundError, match="rlrm keys"):
        load_server_keys(tmp_path)


def test_only_clients_with_the_server_key_get_answers(tiny_model, keys, tmp_path):
    other_public, _ = generate_keys(tmp_path / "other")
    with RewardWorker(tiny_model, bind="tcp://127.0.0.1:0", curve_keys=keys) as worker:
        with RewardClient(worker.url, timeout_ms=60000, retries=0, curve_server_key=keys) as trusted:
            (got,) = trusted.score([QUERY])
        (expected,) = tiny_model.score([QUERY])
        np.testing.assert_allclose(got.progress, expected.progress, atol=1e-6)
        for key in (None, other_public):
            with RewardClient(worker.url, timeout_ms=300, retries=0, curve_server_key=key) as stranger:
                with pytest.raises(TimeoutError, match=worker.url):
                    stranger.ping()
                with pytest.raises(TimeoutError):
                    stranger.score([QUERY])
        assert worker.stats()["requests"]["score"] == 1


def test_non_loopback_bind_needs_keys(tiny_model, keys):
    for bind in ("tcp://0.0.0.0:0", "tcp://*:0", "tcp://eth0:0"):
        with pytest.raises(ValueError, match="rlrm keys"):
            RewardWorker(tiny_model, bind=bind)
    with RewardWorker(tiny_model, bind="tcp://0.0.0.0:0", curve_keys=keys) as worker:
        port = worker.url.rsplit(":", 1)[1]
        with RewardClient(f"tcp://127.0.0.1:{port}", timeout_ms=5000, retries=0, curve_server_key=keys) as client:
            assert client.info().name == tiny_model.info().name


def test_worker_cli_refuses_a_public_bind_without_keys():
    proc = subprocess.run(
        [sys.executable, "-m", "rlrm", "worker", "--model", "tiny", "--bind", "tcp://0.0.0.0:5599"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "--curve-keys" in proc.stderr and "0.0.0.0:5599" in proc.stderr


@pytest.mark.parametrize(
    ("bind", "loopback"),
    [("tcp://127.0.0.1:5555", True), ("tcp://127.0.0.7:1", True), ("tcp://localhost:5555", True),
     ("tcp://[::1]:5555", True), ("ipc:///tmp/rlrm.sock", True), ("tcp://0.0.0.0:5555", False),
     ("tcp://*:5555", False), ("tcp://10.0.0.3:5555", False), ("tcp://eth0:5555", False)],
)
def test_is_loopback(bind, loopback):
    assert is_loopback(bind) is loopback
