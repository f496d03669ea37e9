"""A bad distributed config fails before anything starts (values, address, cluster resources), and Ctrl-C
stops runners, learner and the local cluster it started."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ray = pytest.importorskip("ray", reason="distributed runs need the 'ray' extra")

from hydra.errors import ConfigCompositionException  # noqa: E402

from rlrm.distributed.config import DistributedConfigError, actor_options, distributed_config  # noqa: E402
from rlrm.distributed.run import run_distributed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["reward=env_dense", "env.max_episode_steps=10", "algo.net_arch=[16,16]", "algo.batch_size=8",
         "algo.learning_starts=20", "eval_episodes=0", "progress_bar=false"]


def compose_run(*overrides: str) -> dict:
    base = [o for o in SMALL if not o.startswith("algo.")] if "algo=ppo" in overrides else SMALL
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=[*base, *overrides]), resolve=True)


@pytest.fixture(scope="module")
def run_rl():
    spec = importlib.util.spec_from_file_location("run_rl", ROOT / "run_rl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("overrides, message", [
    (["distributed.runners=-1"], r"distributed.runners must be an integer >= 1 \(env-runner actors; 0 means one "
                                 r"process, without Ray\), got -1"),
    (["distributed.runners=2", "distributed.sync_every=0"], r"distributed.sync_every must be an integer >= 1"),
    (["distributed.runners=2", "+distributed.speed=3"], r"unknown distributed keys \['speed'\]; expected some of"),
    (["distributed.runners=2", "distributed.runner_resources={robot_franka: -1}"],
     r"distributed.runner_resources.robot_franka must be a number >= 0, got -1"),
    (["distributed.runners=2", "algo=ppo"], r"off-policy algorithm \['sac', 'residual_sac'\], got algo='ppo'"),
    (["distributed.runners=2", "distributed.address=nonsense"], r"'nonsense' is not null, 'auto', 'ray://HOST:PORT'"),
])
def test_bad_values_fail_before_ray_starts_with_the_allowed_ones(run_rl, tmp_path, overrides, message):
    assert not ray.is_initialized()
    with pytest.raises(DistributedConfigError, match=message):
        run_rl.train(compose_run(*overrides), tmp_path)
    assert not ray.is_initialized() and not (tmp_path / "config.yaml").exists()


def test_a_value_of_the_wrong_type_is_refused_when_the_config_is_composed():
    with pytest.raises(ConfigCompositionException, match="distributed.runners=two"):
        compose_run("distributed.runners=two")


def test_unreachable_or_absent_clusters_fail_within_seconds(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(DistributedConfigError, match=r"distributed.address='ray://127.0.0.1:9' is unreachable"):
        run_distributed(compose_run("distributed.runners=1", "distributed.address=ray://127.0.0.1:9"), tmp_path)
    with pytest.raises(DistributedConfigError, match=r"cannot join a Ray cluster at distributed.address='auto'"):
        run_distributed(compose_run("distributed.runners=1", "distributed.address=auto"), tmp_path)
    assert time.perf_counter() - t0 < 60 and not ray.is_initialized()


def test_auto_address_from_a_stale_cluster_file_fails_naming_the_address_and_the_file(tmp_path, monkeypatch):
    """A ``ray_current_cluster`` left by a cluster that is gone: refused after one TCP probe, before Ray retries it."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        stale = f"127.0.0.1:{s.getsockname()[1]}"
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(stale + "\n")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def no_init(*args, **kwargs):
        raise AssertionError("ray.init was called: it would retry the dead GCS for minutes")

    monkeypatch.setattr(ray, "init", no_init)
    with pytest.raises(DistributedConfigError) as info:
        run_distributed(compose_run("distributed.runners=1", "distributed.address=auto"), tmp_path / "run")
    message = str(info.value)
    assert f"resolved to {stale!r}" in message and str(tmp_path / "ray" / "ray_current_cluster") in message
    assert "unreachable" in message and not ray.is_initialized()


def test_config_defaults_and_actor_options():
    dcfg = distributed_config(compose_run("distributed.runners=3", "distributed.learner_resources={GPU: 1}"))
    assert (dcfg.runners, dcfg.address, dcfg.sync_every) == (3, None, 50)
    assert actor_options(dcfg.runner_resources) == {"num_cpus": 0.0, "num_gpus": 0.0}
    assert actor_options(dcfg.learner_resources) == {"num_cpus": 0.0, "num_gpus": 1.0}


@pytest.mark.slow  # starts its own local Ray cluster and a run
def test_ctrl_c_stops_runners_learner_and_the_local_cluster_it_started(tmp_path, caplog):
    """No Ray runtime yet: the run starts a local cluster; SIGINT mid-run must tear everything down."""
    assert not ray.is_initialized()
    cfg = compose_run("distributed.runners=1", "total_steps=100000", "distributed.rollout_steps=10")

    def interrupt_once_learning():
        deadline = time.monotonic() + 120
        while not (tmp_path / "heartbeat.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    # A shell starting pytest in the background (`pytest &` without job control) sets SIGINT to SIG_IGN, and
    # Python then never installs its Ctrl-C handler: this test simulates a terminal's Ctrl-C, so install it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt_once_learning, daemon=True).start()
    caplog.set_level(logging.INFO, logger="rlrm.distributed")
    try:
        with pytest.raises(KeyboardInterrupt):
            run_distributed(cfg, tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "run interrupted or failed: stopping 1 runners and the learner" in caplog.text
    assert not ray.is_initialized()  # the cluster this run started is shut down
    assert not (tmp_path / "summary.json").exists()


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("overrides, message", [
    (["distributed.runners=2", "distributed.runner_resources={robot_franka: 1}"],
     r"2 runner\(s\) with distributed.runner_resources=\{'robot_franka': 1.0\} do not fit on the cluster's nodes "
     r"\[\{.*'CPU': 2.0.*\}\]"),
    (["distributed.runners=3", "distributed.runner_resources={CPU: 1}"], r"3 runner\(s\) .* do not fit"),
    (["distributed.runners=1", "distributed.learner_resources={GPU: 1}"],
     r"the learner's distributed.learner_resources=\{'GPU': 1.0\} fit on none of the cluster's nodes"),
])
def test_a_resource_no_node_has_fails_before_any_actor_starts(cluster, tmp_path, overrides, message):
    with pytest.raises(DistributedConfigError, match=message):
        run_distributed(compose_run(*overrides), tmp_path)
    assert ray.util.list_named_actors(all_namespaces=True) == []
