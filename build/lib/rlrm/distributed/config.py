"""The ``distributed:`` block of a run config, and the checks that run before any actor starts.

* :class:`DistributedConfig` - runners, cluster address, weight sync period, batch size,
  backpressure, restarts and the Ray resources of runners and learner.
* :func:`distributed_config` - read and check the block of a resolved run config (every problem at once).
* :class:`DistributedConfigError` - what a bad block, an unreachable cluster or a resource no node
  has raises (a :class:`~rlrm.rl.run_config.RunConfigError`, so ``run_rl.py`` prints it alone).
* :func:`ray_cluster` - context manager: join the cluster at ``address`` (after a reachability check
  within seconds, ``auto`` resolved first) or start a local one, and shut down only what it started.
* :func:`resolve_auto_address` - the address ``auto`` means and where it was read from.
* :func:`check_cluster` - the runners' and learner's resources exist on the cluster's nodes, and a
  loopback reward worker is not asked to serve runners on other machines.
* :func:`actor_options` - Ray actor options (``num_cpus``, ``num_gpus``, ``resources``) from a resource dict.

Ray is imported inside the functions that talk to a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
from collections.abc import Iterator, Mapping
from dataclasses import fields
from typing import Any
from urllib.parse import urlparse

from rlrm.config import DistributedConfig  # the typed block and its defaults (one source)
from rlrm.rl.run_config import RunConfigError

__all__ = ["DistributedConfig", "DistributedConfigError", "distributed_config", "ray_cluster", "check_cluster",
           "actor_options", "resolve_auto_address", "DISTRIBUTED_ALGORITHMS", "RAY_NAMESPACE"]

log = logging.getLogger(__name__)

DISTRIBUTED_ALGORITHMS = ("sac", "residual_sac")
"""Algorithms a distributed run can train (off-policy: runners' transitions go to a replay buffer)."""
RAY_NAMESPACE = "rlrm"
"""Ray namespace of the clusters this module starts or joins (named runner and reward actors live here)."""
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_REACH_TIMEOUT_S = 5.0


class DistributedConfigError(RunConfigError):
    """The ``distributed:`` block is invalid, the cluster is unreachable, or it lacks a requested resource."""


def _int_field(errors: list[str], name: str, value: Any, low: int, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        errors.append(f"distributed.{name} must be an integer >= {low} ({meaning}), got {value!r}")


def _check_resources(errors: list[str], name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        errors.append(f"distributed.{name} must be a mapping of Ray resource name -> amount, e.g. "
                      f"{{robot_franka: 1}} or {{GPU: 1}}, got {value!r}")
        return
    for key, amount in value.items():
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount < 0:
            errors.append(f"distributed.{name}.{key} must be a number >= 0, got {amount!r}")


def _check_address(errors: list[str], address: Any) -> None:
    if address is None or address == "auto":
        return
    if not isinstance(address, str) or not address.strip():
        errors.append(f"distributed.address must be null (a local cluster), 'auto', 'ray://HOST:PORT' or "
                      f"'HOST:PORT', got {address!r}")
        return
    host, port = _host_port(address)
    if not host or port is None:
        errors.append(f"distributed.address {address!r} is not null, 'auto', 'ray://HOST:PORT' or 'HOST:PORT'")


def _host_port(address: str) -> tuple[str | None, int | None]:
    parsed = urlparse(address if "://" in address else f"gcs://{address}")
    try:
        return parsed.hostname, parsed.port
    except ValueError:
        return parsed.hostname, None


def distributed_config(cfg: Mapping[str, Any]) -> DistributedConfig:
    """The checked ``distributed`` block of the resolved run config ``cfg``.

    Raises :class:`DistributedConfigError` listing every bad value with the allowed ones, and the
    run-level conflicts (an on-policy algorithm; ``runners`` below 1 when a distributed run was asked for).

    >>> distributed_config({"distributed": {"runners": 2}, "algo": {"name": "sac"}}).runners
    2
    """
    block = cfg.get("distributed") or {}
    errors: list[str] = []
    if not isinstance(block, Mapping):
        raise DistributedConfigError(f"invalid distributed config:\n  - distributed must be a mapping, got {block!r}")
    known = {f.name for f in fields(DistributedConfig)}
    unknown = sorted(set(block) - known)
    if unknown:
        errors.append(f"unknown distributed keys {unknown}; expected some of {sorted(known)}")
    values = {k: v for k, v in block.items() if k in known}
    merged = {**DistributedConfig().__dict__, **values}
    for name in ("runner_resources", "learner_resources"):
        merged[name] = {} if merged[name] is None else merged[name]  # null: reserve nothing
    _int_field(errors, "runners", merged["runners"], 1, "env-runner actors; 0 means one process, without Ray")
    _check_address(errors, merged["address"])
    _int_field(errors, "sync_every", merged["sync_every"], 1, "gradient steps between weight publications")
    _int_field(errors, "rollout_steps", merged["rollout_steps"], 1, "env steps per batch a runner sends")
    _int_field(errors, "max_pending_batches", merged["max_pending_batches"], 1,
               "untrained batches per runner before it waits")
    _int_field(errors, "max_restarts", merged["max_restarts"], 0, "Ray restarts of a runner that died")
    _check_resources(errors, "runner_resources", merged["runner_resources"])
    _check_resources(errors, "learner_resources", merged["learner_resources"])
    algo = (cfg.get("algo") or {}).get("name")
    if algo not in DISTRIBUTED_ALGORITHMS:
        errors.append(f"a distributed run trains an off-policy algorithm {list(DISTRIBUTED_ALGORITHMS)}, got "
                      f"algo={algo!r}; use distributed.runners=0 for {algo!r}")
    if errors:
        raise DistributedConfigError("invalid distributed config:\n  - " + "\n  - ".join(errors))
    merged["runner_resources"] = {str(k): float(v) for k, v in merged["runner_resources"].items()}
    merged["learner_resources"] = {str(k): float(v) for k, v in merged["learner_resources"].items()}
    return DistributedConfig(**merged)


def actor_options(resources: Mapping[str, float]) -> dict[str, Any]:
    """Ray actor options for a resource dict: ``CPU``/``GPU`` -> ``num_cpus``/``num_gpus`` (0 unless given), rest custom.

    >>> actor_options({"GPU": 1, "robot_franka": 1})
    {'num_cpus': 0.0, 'num_gpus': 1.0, 'resources': {'robot_franka': 1.0}}
    """
    custom = {k: float(v) for k, v in resources.items() if k not in ("CPU", "GPU")}
    options: dict[str, Any] = {"num_cpus": float(resources.get("CPU", 0)), "num_gpus": float(resources.get("GPU", 0))}
    if custom:
        options["resources"] = custom
    return options


def _check_reachable(address: str, origin: str | None = None) -> None:
    """A TCP connect to the address's host:port within seconds, so a wrong address fails now, not in minutes.

    ``origin`` names where an ``auto`` address came from (the ``RAY_ADDRESS`` variable or Ray's
    ``ray_current_cluster`` file), so a stale one can be found and removed.
    """
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=_REACH_TIMEOUT_S):
            pass
    except OSError as e:
        if origin is not None:
            raise DistributedConfigError(
                f"distributed.address='auto' resolved to {address!r} (read from {origin}), which is unreachable "
                f"within {_REACH_TIMEOUT_S:g} s ({e}): the cluster that wrote it is gone. Start one with "
                f"`ray start --head`, remove the stale {origin}, or pass distributed.address=null for a local cluster"
            ) from None
        raise DistributedConfigError(
            f"distributed.address={address!r} is unreachable ({e}); start the head with `ray start --head` "
            "there and pass its address ('ray://HOST:10001' for Ray client, 'HOST:6379' from a cluster node), "
            "'auto' for a cluster started on this machine, or null for a local cluster"
        ) from None


def _address_file() -> str:
    """Ray's ``ray_current_cluster`` file, where ``ray start`` records the cluster's address."""
    from ray._common.utils import get_ray_address_file

    return get_ray_address_file(None)


def resolve_auto_address() -> tuple[str, str] | None:
    """Where ``ray.init(address="auto")`` would connect: ``(address, origin)`` from ``RAY_ADDRESS`` or the
    ``ray_current_cluster`` file ``ray start`` writes (under ``RAY_TMPDIR``/``TMPDIR``, else /tmp/ray); None if neither.
    """
    import os

    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and env != "auto":
        return env, "the RAY_ADDRESS environment variable"
    path = _address_file()
    try:
        with open(path) as f:
            address = f.read().strip()
    except OSError:
        return None
    return (address, path) if address else None


@contextlib.contextmanager
def ray_cluster(address: str | None, **init_kwargs: Any) -> Iterator[bool]:
    """Join the Ray cluster at ``address`` (None: start a local one, or use the one this process already runs).

    Yields whether this call started or joined the runtime (then it also shuts it down on exit).
    ``init_kwargs`` go to ``ray.init`` (``num_cpus``, ``log_to_driver``, ...) when it is called.
    """
    try:
        import ray
    except ModuleNotFoundError as e:
        raise ImportError("distributed runs need Ray: pip install 'rlrm[ray]'") from e
    if ray.is_initialized():
        log.info("using the Ray runtime this process already runs")
        yield False
        return
    target = address
    if address == "auto":
        resolved = resolve_auto_address()
        if resolved is None:  # Ray would join any cluster some other process started here
            raise DistributedConfigError(
                f"cannot join a Ray cluster at distributed.address='auto': no RAY_ADDRESS and no "
                f"{_address_file()} (what `ray start --head` writes); run `ray start --head` first, "
                "or pass distributed.address=null for a local cluster")
        _check_reachable(*resolved)  # a stale file would have Ray retry a dead GCS for minutes
        target = resolved[0]  # the address just checked, not whatever Ray finds next
    elif address is not None:
        _check_reachable(address)
    try:
        ray.init(address=target, namespace=RAY_NAMESPACE, include_dashboard=False, **init_kwargs)
    except ConnectionError as e:
        raise DistributedConfigError(
            f"cannot join a Ray cluster at distributed.address={address!r}: {e}; run `ray start --head` first, "
            "or pass distributed.address=null for a local cluster"
        ) from None
    log.info("Ray cluster: %s", "local, started here" if address is None else address)
    try:
        yield True
    finally:
        ray.shutdown()


def _fits(nodes: list[dict[str, float]], request: Mapping[str, float], count: int) -> bool:
    """Whether ``count`` actors asking ``request`` each fit on the nodes' total resources."""
    wanted = {k: v for k, v in request.items() if v > 0}
    if not wanted:
        return True
    copies = 0
    for node in nodes:
        copies += min(int(node.get(k, 0.0) // v) for k, v in wanted.items())
    return copies >= count


def _ray_request(resources: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in resources.items()}


def check_cluster(dcfg: DistributedConfig, cfg: Mapping[str, Any]) -> list[dict[str, float]]:
    """Check the connected cluster can hold the run; returns the alive nodes' resources.

    Raises :class:`DistributedConfigError` naming the request and every node's resources when
    ``runners`` x ``runner_resources`` or ``learner_resources`` fit nowhere, or when a reward worker
    this run would start on loopback must serve runners on a multi-node cluster.
    """
    import ray

    nodes = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    shown = [{k: v for k, v in n.items() if not k.startswith(("node:", "object_store_memory", "memory"))}
             for n in nodes]
    errors = []
    if not _fits(nodes, _ray_request(dcfg.runner_resources), dcfg.runners):
        errors.append(f"{dcfg.runners} runner(s) with distributed.runner_resources={dcfg.runner_resources} do not fit "
                      f"on the cluster's nodes {shown}")
    if not _fits(nodes, _ray_request(dcfg.learner_resources), 1):
        errors.append(f"the learner's distributed.learner_resources={dcfg.learner_resources} fit on none of the "
                      f"cluster's nodes {shown}")
    reward, transport = cfg.get("reward") or {}, cfg.get("transport") or {}
    spawns_worker = reward.get("kind") == "robometer" and not reward.get("source") and transport.get("name") == "worker"
    if spawns_worker and len(nodes) > 1:
        host, _ = _host_port(str(transport.get("bind", "tcp://127.0.0.1:0")).replace("tcp://", ""))
        if host in _LOOPBACK_HOSTS:
            errors.append(f"transport=worker binds {transport.get('bind')!r} on this machine, which runners on the "
                          f"other {len(nodes) - 1} node(s) cannot reach; use transport=ray (a shared Ray reward "
                          "actor) or run `rlrm worker --bind tcp://0.0.0.0:5555 --curve-keys DIR` and pass "
                          "reward.source=tcp://HOST:5555 reward.curve_server_key=DIR/server.key")
    if errors:
        raise DistributedConfigError(
            "the Ray cluster cannot run this config (start nodes with the resource, e.g. "
            "`ray start --address HEAD:6379 --resources='{\"robot_franka\": 1}'`):\n  - " + "\n  - ".join(errors))
    return nodes
