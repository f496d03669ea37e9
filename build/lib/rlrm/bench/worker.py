"""``rlrm bench worker``: what serving the reward model through a worker costs, measured in one run.

* ``add_arguments`` / ``run`` - the benchmark command (prints a table, writes JSON).
* :func:`throughput` - requests/s and latency percentiles of N concurrent clients in a closed loop,
  plus the batch sizes the worker formed.
* :func:`in_process_rps` - the model called directly on the batches a worker formed (replayed).
* :func:`transport_overhead` - round trip minus the worker's own model time, raw and JPEG frames.
* :func:`stream_bytes` - bytes a client sends per step of a dense-reward episode, streamed vs resent.
* :func:`vision_cache_speedup` - ms per query of the same dense queries without / with cached vision features.

Two real worker subprocesses serve the same model: continuous batching (``--max-batch``,
``--max-wait-ms``) and ``max_batch=1`` (one request at a time, a server without batching); they
are measured alternately, in rounds, for each client count, so load from other processes drifts
over both alike. Each client is its own :class:`~rlrm.transport.RewardClient` on its own thread.
Figures are ratios against baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rlrm.sampling import sample_indices
from rlrm.transport import RewardClient, spawn_worker
from rlrm.types import RewardQuery

__all__ = [
    "add_arguments",
    "run",
    "throughput",
    "in_process_rps",
    "transport_overhead",
    "stream_bytes",
    "vision_cache_speedup",
]

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


def _dense_episode(steps: int, size: int, max_frames: int = 8) -> list[RewardQuery]:
    """The dense reward's query at every step of a ``steps``-step episode (default prefix sampling)."""
    frames = _frames(steps + 1, size, seed=7)
    return [
        RewardQuery(frames[idx], "push the block to the goal", episode_id="bench-episode", frame_index=idx)
        for t in range(1, steps + 1)
        for idx in [sample_indices(t + 1, max_frames)]
    ]


def _client_queries(clients: int, frames: int, size: int) -> list[RewardQuery]:
    return [RewardQuery(_frames(frames, size, seed=c), f"push the block {c}") for c in range(clients)]


def throughput(url: str, clients: int, requests: int, frames: int, size: int, timeout_ms: float) -> dict[str, Any]:
    """``clients`` threads, each with its own client, send ``requests`` queries in total, one at a time each.

    Returns ``rps`` (requests/s over the wall time), latencies (``latencies_ms``, ``p50_ms``,
    ``p99_ms``) and the worker's batch sizes over the run (``batch_sizes``: items -> batches).
    """
    per_client = max(1, -(-requests // clients))
    latencies: list[float] = []
    lock = threading.Lock()
    conns = [RewardClient(url, timeout_ms=timeout_ms, retries=0) for _ in range(clients)]
    queries = _client_queries(clients, frames, size)
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
    sizes = Counter({int(k): v for k, v in after["batch_sizes"].items()})
    sizes.subtract({int(k): v for k, v in before["batch_sizes"].items()})
    return {
        "rps": len(latencies) / wall,
        "wall_s": wall,
        "requests": len(latencies),
        "latencies_ms": latencies,
        "batch_sizes": {b: n for b, n in sorted(sizes.items()) if n > 0},
    }


def in_process_rps(model: Any, queries: list[RewardQuery], batch_sizes: dict[int, int], threads: int = 0) -> dict:
    """Requests/s of ``model.score`` called directly on the batches a worker formed (``batch_sizes``: items -> count).

    Every batch is replayed once (with the first queries of ``queries``, cycled when the batch is
    larger), so the model runs as long as it ran inside the worker and sees the same load; on a
    background thread like the worker's batcher, with ``threads`` torch threads (0: torch's default).
    """
    from concurrent.futures import ThreadPoolExecutor

    def use_threads() -> None:
        # OpenMP's thread count is per thread: a new thread starts from the default, not from the
        # main thread's torch.set_num_threads (the worker sets OMP_NUM_THREADS for all of its threads)
        if threads:
            import torch

            torch.set_num_threads(threads)

    def replay() -> dict[int, list[float]]:
        times: dict[int, list[float]] = {}
        for b in batch_sizes:
            model.score([queries[i % len(queries)] for i in range(b)])  # warm-up for this shape
        for b, n in batch_sizes.items():
            batch = [queries[i % len(queries)] for i in range(b)]
            for _ in range(n):
                t0 = time.perf_counter()
                model.score(batch)
                times.setdefault(b, []).append(time.perf_counter() - t0)
        return times

    with ThreadPoolExecutor(1, initializer=use_threads) as pool:
        times = pool.submit(replay).result()
    total_s = sum(sum(t) for t in times.values())
    requests = sum(n * b for b, n in batch_sizes.items())
    return {
        "rps": requests / total_s,
        "requests": requests,
        "seconds": total_s,
        "ms_per_batch": {b: 1000 * float(np.median(t)) for b, t in times.items()},
    }


def transport_overhead(url: str, repeats: int, frames: int, size: int, timeout_ms: float) -> dict[str, Any]:
    """Round trip through the worker at ``url`` minus the model time the worker reports for that very request.

    Raw and JPEG clients alternate call by call; ``overhead_ms_p50`` is the median over calls of
    (round trip - ``infer_ms``): encoding, sending, decoding, queueing and replying.
    """
    query = RewardQuery(_frames(frames, size, seed=123), "open the top drawer")
    out: dict[str, Any] = {}
    clients = {enc: RewardClient(url, timeout_ms=timeout_ms, retries=0, enc=enc) for enc in ("raw", "jpeg")}
    samples: dict[str, list[tuple[float, float]]] = {enc: [] for enc in clients}
    try:
        for client in clients.values():
            client.score([query])  # warm-up
        for _ in range(repeats):
            for enc, client in clients.items():
                t0 = time.perf_counter()
                _, timing = client.score_timed([query])
                samples[enc].append(((time.perf_counter() - t0) * 1000, float(timing["infer_ms"])))
    finally:
        for client in clients.values():
            client.close()
    for enc, pairs in samples.items():
        rtt = np.array([r for r, _ in pairs])
        infer = np.array([i for _, i in pairs])
        out[enc] = {
            "overhead_ms_p50": float(np.percentile(rtt - infer, 50)),
            "overhead_ms_p90": float(np.percentile(rtt - infer, 90)),
            "roundtrip_ms_p50": float(np.percentile(rtt, 50)),
            "worker_infer_ms_p50": float(np.percentile(infer, 50)),
        }
    return out


def stream_bytes(url: str, steps: int, size: int, timeout_ms: float) -> dict[str, Any]:
    """Bytes sent per step of one ``steps``-step dense-reward episode: each frame uploaded once vs resent each query."""
    queries = _dense_episode(steps, size)
    out: dict[str, Any] = {}
    for mode, stream in (("streamed", True), ("resent", False)):
        with RewardClient(url, timeout_ms=timeout_ms, retries=0, stream=stream) as client:
            for q in queries:
                client.score([q])
            sent = client.transfer_stats()
        out[f"{mode}_bytes_per_step"] = sent["bytes_sent"] / steps
        out[f"{mode}_frames_uploaded"] = sent["frames_uploaded"]
    out["ratio"] = out["streamed_bytes_per_step"] / out["resent_bytes_per_step"]
    return out


def vision_cache_speedup(model: Any, steps: int, size: int) -> dict[str, Any]:
    """ms per query of one dense episode's queries scored alone, without and with per-frame cached vision features.

    With the cache every frame goes through the vision tower once (when it is first the newest
    frame), as in a worker serving a streamed episode; the two variants alternate query by query.
    """
    queries = _dense_episode(steps, size)
    plain, cached = [], []
    episode = f"bench-cache-{time.monotonic_ns()}"
    keys = [[(episode, int(i)) for i in q.frame_index] for q in queries]
    model.score(queries[:1])  # warm-up
    for q, k in zip(queries, keys, strict=True):
        t0 = time.perf_counter()
        model.score([q])
        plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        model.score([q], feature_keys=[k])
        cached.append(time.perf_counter() - t0)
    model.forget_features([x for ks in keys for x in ks])
    plain_ms, cached_ms = 1000 * float(np.mean(plain)), 1000 * float(np.mean(cached))
    return {"uncached_ms_per_query": plain_ms, "cached_ms_per_query": cached_ms, "speedup": plain_ms / cached_ms}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rlrm bench worker``."""
    parser.add_argument("--model", default="tiny", help="model spec served by the workers")
    parser.add_argument("--clients", default="1,4,16", help="comma-separated concurrent client counts")
    parser.add_argument("--requests", type=int, default=320,
                        help="timed requests per client count and mode (at least 4 per client per round)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="alternations of the two workers per client count (requests are split over them)")
    parser.add_argument("--frames", type=int, default=8, help="frames per query")
    parser.add_argument("--size", type=int, default=64, help="frame side (px) of the throughput queries")
    parser.add_argument("--max-batch", type=int, default=16, help="max_batch of the batching worker")
    parser.add_argument("--max-wait-ms", type=float, default=0.0, help="max_wait_ms of the batching worker")
    parser.add_argument("--overhead-size", type=int, default=224,
                        help="frame side (px) of the overhead, streaming and vision-cache measurements")
    parser.add_argument("--overhead-repeats", type=int, default=60, help="round trips per encoding")
    parser.add_argument("--episode-steps", type=int, default=50, help="steps of the streamed / cached episode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads of the model, in the workers and in-process alike (0 = torch default)")
    parser.add_argument("--timeout-ms", type=float, default=300000, help="client timeout per request")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the results here (and OUT.png)")


def _table(res: dict[str, Any]) -> str:
    lines = [
        f"worker benchmark: model={res['model']}  {res['frames']} frames of {res['size']}px per query, "
        f"{res['threads'] or 'default'} model thread(s), continuous batching max_batch={res['max_batch']} "
        f"max_wait_ms={res['max_wait_ms']:g}",
        f"{'clients':>7} | {'batched req/s':>13} | {'unbatched req/s':>15} | {'b/u':>5} | {'in-process req/s':>16} | "
        f"{'b/in-proc':>9} | {'p50 ms':>7} | {'p99 ms':>7} | {'mean batch':>10}",
    ]
    for row in res["per_clients"]:
        lines.append(
            f"{row['clients']:>7} | {row['batched_rps']:>13.1f} | {row['unbatched_rps']:>15.1f} | "
            f"{row['batched_over_unbatched']:>5.2f} | {row['in_process_rps']:>16.1f} | "
            f"{row['batched_over_in_process']:>9.2f} | {row['p50_ms']:>7.1f} | {row['p99_ms']:>7.1f} | "
            f"{row['mean_batch_size']:>10.2f}"
        )
    o, s, v = res["overhead"], res["stream"], res["vision_cache"]
    lines += [
        f"transport overhead ({res['frames']} frames of {res['overhead_size']}px, round trip minus the worker's "
        f"model time, p50): raw {res['overhead_ms_p50']:.2f} ms, jpeg {res['overhead_jpeg_ms_p50']:.2f} ms "
        f"(round trips {o['raw']['roundtrip_ms_p50']:.1f} / {o['jpeg']['roundtrip_ms_p50']:.1f} ms)",
        f"streaming, {res['episode_steps']}-step episode of {res['overhead_size']}px frames: "
        f"{s['streamed_bytes_per_step'] / 1024:.0f} KiB/step vs {s['resent_bytes_per_step'] / 1024:.0f} KiB/step "
        f"resent: ratio {res['stream_bytes_ratio']:.3f}",
        f"vision feature cache, same queries: {v['uncached_ms_per_query']:.1f} -> {v['cached_ms_per_query']:.1f} "
        f"ms/query: speedup {res['vision_cache_speedup']:.2f}x",
    ]
    return "\n".join(lines)


def _plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["per_clients"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = np.arange(len(rows))
    ax.bar(x - 0.27, [r["batched_rps"] for r in rows], 0.27, label=f"continuous batching (max_batch={res['max_batch']})")
    ax.bar(x, [r["unbatched_rps"] for r in rows], 0.27, label="max_batch=1")
    ax.bar(x + 0.27, [r["in_process_rps"] for r in rows], 0.27, label="model in-process, same batches")
    ax.set_xticks(x, [str(r["clients"]) for r in rows])
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("requests / s")
    ax.set_title(f"reward worker throughput ({res['model']}, {res['frames']}x{res['size']}px)")
    top = max(max(r["batched_rps"], r["unbatched_rps"], r["in_process_rps"]) for r in rows)
    ax.set_ylim(0, 1.35 * top)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Measure everything, print the table, write JSON (and a PNG next to it)."""
    client_counts = [int(c) for c in str(args.clients).split(",") if c.strip()]
    if not client_counts or min(client_counts) < 1:
        raise ValueError(f"--clients must be positive integers like 1,4,16, got {args.clients!r}")
    if args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {args.rounds}")
    common = {"seed": args.seed, "device": args.device}
    threads = {"threads": args.threads} if args.threads else {}
    modes = {"batched": {"max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms}, "unbatched": {"max_batch": 1}}
    if args.threads:
        import os
        import sys

        if "torch" not in sys.modules:  # as `rlrm worker --threads` does: every thread's OpenMP/MKL default
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    from rlrm.models.base import make_reward_model

    model = make_reward_model(args.model, **common)
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(client_counts) * args.rounds * 2 + 3, desc="bench worker", unit="run")
    with contextlib.ExitStack() as stack:
        urls = {}
        for mode, worker_args in modes.items():
            bar.set_postfix_str(f"starting {mode} worker")
            urls[mode] = stack.enter_context(spawn_worker(args.model, **common, **threads, **worker_args)).url
        for c in client_counts:
            runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in [*modes, "in_process"]}
            queries = _client_queries(c, args.frames, args.size)
            for r in range(args.rounds):
                # short runs, alternating (and the order flipping) so both workers see the same load
                for mode in list(urls)[:: 1 if r % 2 == 0 else -1]:
                    bar.set_postfix_str(f"{mode}, {c} clients")
                    n = max(4 * c, args.requests // args.rounds)
                    runs[mode].append(throughput(urls[mode], c, n, args.frames, args.size, args.timeout_ms))
                    bar.update()
                # right after, so the same load drifts over it: the model alone on this round's batches
                runs["in_process"].append(
                    in_process_rps(model, queries, runs["batched"][-1]["batch_sizes"], threads=args.threads)
                )
            rows.append(_row(c, runs))
        bar.set_postfix_str("transport overhead")
        overhead = transport_overhead(urls["batched"], args.overhead_repeats, args.frames, args.overhead_size,
                                      args.timeout_ms)
        bar.update()
        bar.set_postfix_str("streaming")
        stream = stream_bytes(urls["batched"], args.episode_steps, args.overhead_size, args.timeout_ms)
        bar.update()
    bar.set_postfix_str("vision cache")
    cache = vision_cache_speedup(model, args.episode_steps, args.overhead_size)
    bar.update()
    bar.close()
    res = {
        "model": args.model,
        "frames": args.frames,
        "size": args.size,
        "overhead_size": args.overhead_size,
        "episode_steps": args.episode_steps,
        "requests": args.requests,
        "rounds": args.rounds,
        "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms,
        "threads": args.threads,
        "per_clients": rows,
        "overhead_ms_p50": overhead["raw"]["overhead_ms_p50"],
        "overhead_jpeg_ms_p50": overhead["jpeg"]["overhead_ms_p50"],
        "stream_bytes_ratio": stream["ratio"],
        "vision_cache_speedup": cache["speedup"],
        "overhead": overhead,
        "stream": stream,
        "vision_cache": cache,
    }
    print(_table(res))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        _plot(res, out.with_suffix(".png"))
        log.info("wrote %s and %s", out, out.with_suffix(".png"))
    return 0


def _row(clients: int, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One client count's figures from its rounds: rates over the summed times, pooled latencies."""

    def rate(mode: str) -> float:
        return sum(r["requests"] for r in runs[mode]) / sum(r["wall_s"] for r in runs[mode])

    latencies = {mode: [x for r in runs[mode] for x in r["latencies_ms"]] for mode in ("batched", "unbatched")}
    sizes: Counter = Counter()
    for r in runs["batched"]:
        sizes.update(r["batch_sizes"])
    in_proc_rps = sum(r["requests"] for r in runs["in_process"]) / sum(r["seconds"] for r in runs["in_process"])
    ms_per_batch: dict[int, list[float]] = {}
    for r in runs["in_process"]:
        for b, ms in r["ms_per_batch"].items():
            ms_per_batch.setdefault(b, []).append(ms)
    batched, unbatched = rate("batched"), rate("unbatched")
    items = sum(b * n for b, n in sizes.items())
    return {
        "clients": clients,
        "batched_rps": batched,
        "unbatched_rps": unbatched,
        "in_process_rps": in_proc_rps,
        "p50_ms": float(np.percentile(latencies["batched"], 50)),
        "p99_ms": float(np.percentile(latencies["batched"], 99)),
        "unbatched_p50_ms": float(np.percentile(latencies["unbatched"], 50)),
        "unbatched_p99_ms": float(np.percentile(latencies["unbatched"], 99)),
        "batched_over_unbatched": batched / unbatched,
        "batched_over_in_process": batched / in_proc_rps,
        "mean_batch_size": items / sum(sizes.values()) if sizes else 0.0,
        "batch_sizes": {str(b): n for b, n in sorted(sizes.items())},
        "in_process_ms_per_batch": {str(b): float(np.median(v)) for b, v in sorted(ms_per_batch.items())},
    }
