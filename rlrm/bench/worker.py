"""``rlrm bench worker``: what the reward worker costs and what dynamic batching buys.

* ``add_arguments`` / ``run`` - the benchmark command.
* :func:`throughput` - requests/s and latency percentiles of N concurrent clients in a closed loop.
* :func:`transport_overhead` - round trip through a worker minus the model's in-process time,
  for raw and JPEG frames.

Two real worker subprocesses serve the same model: dynamic batching (``--max-batch``,
``--max-wait-ms``) and ``max_batch=1`` (one request at a time, as a server without batching);
they are measured alternately for each client count. Each client is its own :class:`~rlrm.transport.RewardClient` on its own
thread. Figures are reported as ratios against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rlrm.transport import LocalScorer, RewardClient, spawn_worker
from rlrm.types import RewardQuery

__all__ = ["add_arguments", "run", "throughput", "transport_overhead"]

log = logging.getLogger(__name__)


def _frames(t: int, size: int, seed: int) -> np.ndarray:
    """Smooth frames with a moving square: realistic for JPEG, distinct per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x * 255 / size, y * 255 / size, np.full_like(x, rng.integers(0, 255))], axis=-1)
    frames = np.repeat(base[None], t, axis=0).astype(np.uint8)
    side = max(4, size // 8)
    for i in range(t):
        r = (i * side // 2 + seed) % (size - side)
        frames[i, r : r + side, r : r + side] = rng.integers(0, 255, 3)
    return frames


def _percentiles(latencies_ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(latencies_ms, 50)), float(np.percentile(latencies_ms, 99))


def throughput(url: str, clients: int, requests: int, frames: int, size: int, timeout_ms: float) -> dict[str, Any]:
    """``clients`` threads, each with its own client, send ``requests`` queries in total, one at a time each.

    Returns ``rps`` (requests/s over the wall time), ``p50_ms``/``p99_ms`` latency, and the
    worker's batch statistics over the run.
    """
    per_client = max(1, -(-requests // clients))
    latencies: list[float] = []
    lock = threading.Lock()
    conns = [RewardClient(url, timeout_ms=timeout_ms, retries=0) for _ in range(clients)]
    queries = [RewardQuery(_frames(frames, size, seed=c), f"push the block {c}") for c in range(clients)]
    errors: list[BaseException] = []
    warmed = threading.Barrier(clients + 1)
    go = threading.Event()

    def loop(c: int) -> None:
        try:
            conns[c].score([queries[c]])  # warm-up: connection and first-call costs
            warmed.wait()
            go.wait()
            mine = []
            for _ in range(per_client):
                t0 = time.perf_counter()
                conns[c].score([queries[c]])
                mine.append((time.perf_counter() - t0) * 1000)
            with lock:
                latencies.extend(mine)
        except BaseException as e:  # re-raised on the main thread below
            errors.append(e)
            warmed.abort()

    threads = [threading.Thread(target=loop, args=(c,), name=f"bench-client-{c}") for c in range(clients)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a failed client: raised below
        warmed.wait()
    before = conns[0].stats()
    t0 = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    after = conns[0].stats()
    for conn in conns:
        conn.close()
    batches = after["batches"] - before["batches"]
    items = after["items"] - before["items"]
    p50, p99 = _percentiles(latencies)
    return {
        "rps": len(latencies) / wall,
        "p50_ms": p50,
        "p99_ms": p99,
        "requests": len(latencies),
        "mean_batch_size": items / batches if batches else 0.0,
    }


def transport_overhead(url: str, model: Any, repeats: int, frames: int, size: int, timeout_ms: float) -> dict[str, Any]:
    """Round trip through the worker at ``url`` (raw and JPEG) against a :class:`LocalScorer` in this process.

    The three are interleaved call by call so that load from other processes on the machine
    hits them alike. ``overhead_ms_p50`` is the round-trip p50 minus the in-process p50;
    ``overhead_vs_worker_infer_ms_mean`` subtracts the model time the worker itself reports.
    """
    query = RewardQuery(_frames(frames, size, seed=123), "open the top drawer")
    clients = {enc: RewardClient(url, timeout_ms=timeout_ms, retries=0, enc=enc) for enc in ("raw", "jpeg")}
    # the in-process baseline runs on a background thread like the worker's batcher: torch's
    # intra-op threading differs between the main thread and others, and that is not transport
    local = LocalScorer(model)
    times: dict[str, list[float]] = {"inprocess": [], "raw": [], "jpeg": []}
    infer: dict[str, float] = {}
    try:
        local.score_async([query]).result()  # warm-up
        for client in clients.values():
            client.score([query])
        for _ in range(repeats):
            t0 = time.perf_counter()
            local.score_async([query]).result()
            times["inprocess"].append((time.perf_counter() - t0) * 1000)
            for enc, client in clients.items():
                before = client.stats()
                t0 = time.perf_counter()
                client.score([query])
                times[enc].append((time.perf_counter() - t0) * 1000)
                infer[enc] = infer.get(enc, 0.0) + client.stats()["infer_ms_total"] - before["infer_ms_total"]
    finally:
        local.close()
        for client in clients.values():
            client.close()
    base = float(np.percentile(times["inprocess"], 50))
    out: dict[str, Any] = {"inprocess_ms_p50": base}
    for enc in ("raw", "jpeg"):
        p50 = float(np.percentile(times[enc], 50))
        out[enc] = {
            "roundtrip_ms_p50": p50,
            "overhead_ms_p50": p50 - base,
            "roundtrip_over_inprocess": p50 / base,
            "overhead_vs_worker_infer_ms_mean": float(np.mean(times[enc])) - infer[enc] / repeats,
            "worker_infer_ms_mean": infer[enc] / repeats,
        }
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rlrm bench worker``."""
    parser.add_argument("--model", default="tiny", help="model spec served by the workers")
    parser.add_argument("--clients", default="1,4,16", help="comma-separated concurrent client counts")
    parser.add_argument("--requests", type=int, default=32, help="timed requests per client count (all clients)")
    parser.add_argument("--frames", type=int, default=8, help="frames per query")
    parser.add_argument("--size", type=int, default=64, help="frame side (px) of the throughput queries")
    parser.add_argument("--max-batch", type=int, default=16, help="max_batch of the batching worker")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="max_wait_ms of the batching worker")
    parser.add_argument("--overhead-size", type=int, default=224, help="frame side (px) for the overhead test")
    parser.add_argument("--overhead-repeats", type=int, default=10, help="round trips per encoding")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads of the model, in the workers and in-process alike (0 = torch default)")
    parser.add_argument("--timeout-ms", type=float, default=300000, help="client timeout per request")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the results here (and OUT.png)")


def _table(res: dict[str, Any]) -> str:
    lines = [
        f"worker benchmark: model={res['model']}  {res['frames']} frames of {res['size']}px per query, "
        f"{res['threads'] or 'default'} model thread(s)",
        f"{'clients':>7} | {'batched req/s':>13} | {'unbatched req/s':>15} | {'speedup':>7} | "
        f"{'p50 ms (b/u)':>15} | {'p99 ms (b/u)':>15} | {'mean batch':>10}",
    ]
    for i, c in enumerate(res["clients"]):
        lines.append(
            f"{c:>7} | {res['batched_rps'][i]:>13.2f} | {res['unbatched_rps'][i]:>15.2f} | "
            f"{res['batching_speedup'][i]:>6.2f}x | "
            f"{res['p50_ms']['batched'][i]:>7.0f}/{res['p50_ms']['unbatched'][i]:<7.0f} | "
            f"{res['p99_ms']['batched'][i]:>7.0f}/{res['p99_ms']['unbatched'][i]:<7.0f} | "
            f"{res['mean_batch_size'][i]:>10.2f}"
        )
    o = res["overhead"]
    lines.append(
        f"transport overhead, {res['frames']} frames of {res['overhead_size']}px: in-process model "
        f"{o['inprocess_ms_p50']:.1f} ms p50; round trip raw {o['raw']['roundtrip_ms_p50']:.1f} ms "
        f"(+{res['overhead_ms_p50']['raw']:.1f} ms), jpeg {o['jpeg']['roundtrip_ms_p50']:.1f} ms "
        f"(+{res['overhead_ms_p50']['jpeg']:.1f} ms)\n"
        f"  round trip minus the worker's own model time (mean): raw "
        f"{o['raw']['overhead_vs_worker_infer_ms_mean']:.1f} ms, jpeg {o['jpeg']['overhead_vs_worker_infer_ms_mean']:.1f} ms"
    )
    return "\n".join(lines)


def _plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(len(res["clients"]))
    ax.bar(x - 0.2, res["batched_rps"], 0.4, label=f"dynamic batching (max_batch={res['max_batch']})")
    ax.bar(x + 0.2, res["unbatched_rps"], 0.4, label="max_batch=1")
    ax.set_xticks(x, [str(c) for c in res["clients"]])
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("requests / s")
    ax.set_title(f"reward worker throughput ({res['model']}, {res['frames']}x{res['size']}px)")
    ax.set_ylim(0, 1.3 * max(res["batched_rps"] + res["unbatched_rps"]))
    ax.legend(loc="upper center", ncol=2, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Measure both workers, print the table, write JSON (and a PNG next to it)."""
    client_counts = [int(c) for c in str(args.clients).split(",") if c.strip()]
    if not client_counts or min(client_counts) < 1:
        raise ValueError(f"--clients must be positive integers like 1,4,16, got {args.clients!r}")
    common = {"seed": args.seed, "device": args.device}
    threads = {"threads": args.threads} if args.threads else {}
    modes = {"batched": {"max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms}, "unbatched": {"max_batch": 1}}
    measured: dict[str, list[dict[str, Any]]] = {}
    overhead: dict[str, Any] = {}
    bar = tqdm(total=2 * len(client_counts) + 1, desc="bench worker", unit="run")
    # both workers stay up and the modes alternate per client count, so load from other
    # processes on the machine drifts over both alike
    with contextlib.ExitStack() as stack:
        urls = {}
        for mode, worker_args in modes.items():
            bar.set_postfix_str(f"starting {mode} worker")
            urls[mode] = stack.enter_context(spawn_worker(args.model, **common, **threads, **worker_args)).url
            measured[mode] = []
        for c in client_counts:
            for mode, url in urls.items():
                bar.set_postfix_str(f"{mode}, {c} clients")
                measured[mode].append(throughput(url, c, args.requests, args.frames, args.size, args.timeout_ms))
                bar.update()
        from rlrm.models.base import make_reward_model

        # through the max_batch=1 worker: one request at a time, no batching wait, the pure transport cost
        bar.set_postfix_str("transport overhead")
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        model = make_reward_model(args.model, **common)
        overhead = transport_overhead(
            urls["unbatched"], model, args.overhead_repeats, args.frames, args.overhead_size, args.timeout_ms
        )
        bar.update()
    bar.close()
    b, u = measured["batched"], measured["unbatched"]
    res = {
        "model": args.model,
        "frames": args.frames,
        "size": args.size,
        "overhead_size": args.overhead_size,
        "requests": args.requests,
        "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms,
        "threads": args.threads,
        "clients": client_counts,
        "batched_rps": [m["rps"] for m in b],
        "unbatched_rps": [m["rps"] for m in u],
        "batching_speedup": [mb["rps"] / mu["rps"] for mb, mu in zip(b, u, strict=True)],
        "p50_ms": {"batched": [m["p50_ms"] for m in b], "unbatched": [m["p50_ms"] for m in u]},
        "p99_ms": {"batched": [m["p99_ms"] for m in b], "unbatched": [m["p99_ms"] for m in u]},
        "mean_batch_size": [m["mean_batch_size"] for m in b],
        "overhead_ms_p50": {enc: overhead[enc]["overhead_ms_p50"] for enc in ("raw", "jpeg")},
        "overhead": overhead,
    }
    print(_table(res))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        _plot(res, out.with_suffix(".png"))
        log.info("wrote %s and %s", out, out.with_suffix(".png"))
    return 0
