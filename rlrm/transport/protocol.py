"""The rlrm wire format: ZeroMQ multipart messages with a msgpack header and raw frame buffers.

* :data:`PROTOCOL_VERSION` / :data:`SUPPORTED_VERSIONS` - the newest ``v`` (2) and the ones a worker serves (1, 2).
* :data:`URL_SCHEMES` / :func:`check_worker_url` - the endpoints a client reaches a worker on.
* :class:`ErrorCode` - the error codes a worker replies with.
* :class:`ProtocolError` - a request or reply that breaks the format; carries an :class:`ErrorCode`.
* :class:`Limits` - size limits a worker enforces (past them: ``too_large``).
* :class:`Item` / :class:`Request` - a parsed request and its queries (frames not decoded yet).
* :func:`encode_request` - client side: queries -> message (full frames, or v2 streamed items).
* :func:`parse_request` / :func:`decode_request` - worker side: validate a message; decode its frames too.
* :func:`decode_frames` / :func:`item_query` / :func:`request_version` - worker-side pieces of the above.
* :func:`encode_reply` / :func:`encode_error` / :func:`decode_reply` - the reply in both directions.
* :func:`results_from_reply` - the :class:`~rlrm.types.RewardResult` list of an ``ok`` score reply.
* :func:`jpeg_size` - (H, W) a JPEG declares, read before decoding it (from :mod:`rlrm.transport.codec`).

Message layout (frame 0 is the header, the rest are buffers the header refers to by index,
0 being the first buffer after the header)::

    request  {v: 1|2, id, op: "score"|"info"|"ping", items: [item...], deadline_ms?}
      item, full frames (v1, v2)
             {task, episode?, frame_index?, frames: {shape: [T,H,W,3], dtype, enc: "raw"|"jpeg", bufs: [i...]}}
      item, streamed (v2): names frames of an episode the worker stores; uploads the new ones
             {task, episode, frame_index: [T ints], upload?: {index: [n ints], shape: [n,H,W,3], dtype, enc, bufs: [n]}}
    reply    {v, id, ok: true, results: [{progress: [...], success: [...]}], timing: {queue_ms, infer_ms, ...},
              version}
             {v, id, ok: false, error: {code, message}}

Full frames: ``enc="raw"`` has one buffer holding the C-ordered (T, H, W, 3) uint8 array,
``enc="jpeg"`` one JPEG per frame (OpenCV, RGB order on both ends). Uploads have one buffer per
frame in both encodings, so a worker can keep each received frame as it is. A worker stores an
upload under (episode, index) before resolving ``frame_index``; if it holds none of the frames an
item names (restart, eviction) it answers ``unknown_episode`` and the client resends them.
A request without streamed items is sent as ``v: 1`` (readable by v1 workers); replies carry
the request's version. A score reply also names the reward-model ``version`` that scored it (an int:
0 for the model the worker started with, then each version a reward trainer published, see
:mod:`rlrm.transport.versions`); clients of either protocol version that do not read it are unaffected,
and a reply without it (an older worker) gives results with ``version=None``. Buffers are sent and received without copies; nothing is ever pickled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from rlrm.transport.codec import FrameBlock, encode_jpeg, jpeg_size
from rlrm.types import RewardQuery, RewardResult, check_results

__all__ = [
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "OPS",
    "ENCODINGS",
    "URL_SCHEMES",
    "check_worker_url",
    "ErrorCode",
    "ProtocolError",
    "Limits",
    "Item",
    "Request",
    "encode_request",
    "parse_request",
    "decode_request",
    "decode_frames",
    "item_query",
    "request_version",
    "encode_reply",
    "encode_error",
    "decode_reply",
    "encode_results",
    "results_from_reply",
    "jpeg_size",
]

PROTOCOL_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
OPS = ("score", "info", "ping")
ENCODINGS = ("raw", "jpeg")
URL_SCHEMES = ("tcp://", "ipc://")
"""ZeroMQ endpoint schemes a client reaches a worker on. Not ``inproc://``: it connects only sockets of
one ZeroMQ context, and a ``RewardClient`` and a ``RewardWorker`` each own theirs."""


def check_worker_url(url: Any, name: str = "url") -> str:
    """Return ``url`` if it is a worker endpoint (one of :data:`URL_SCHEMES`); else a ValueError naming it."""
    if isinstance(url, str) and url.startswith(URL_SCHEMES):
        return url
    hint = ""
    if isinstance(url, str) and url.startswith("inproc://"):
        hint = (
            "; inproc:// never reaches a RewardWorker (each owns its ZeroMQ context): bind the worker to "
            "tcp://127.0.0.1:0 or ipc://PATH, or score in-process with the model itself (LocalScorer)"
        )
    raise ValueError(
        f"{name} must be a ZeroMQ endpoint starting with one of {list(URL_SCHEMES)}, e.g. "
        f"'tcp://127.0.0.1:5555' or 'ipc:///tmp/rlrm.sock', got {url!r}{hint}"
    )


class ErrorCode:
    """Error codes of an ``ok: false`` reply."""

    BAD_REQUEST = "bad_request"  # malformed header, buffers, frames, task
    TOO_LARGE = "too_large"  # over the worker's Limits
    BUSY = "busy"  # the worker's queue is full; try again later
    VERSION = "version"  # protocol version the worker does not speak
    INTERNAL = "internal"  # the model raised; the message says what
    UNKNOWN_EPISODE = "unknown_episode"  # v2: the worker does not hold frames a streamed item names; resend them

    ALL = (BAD_REQUEST, TOO_LARGE, BUSY, VERSION, INTERNAL, UNKNOWN_EPISODE)


class ProtocolError(ValueError):
    """A message that breaks the wire format; ``code`` is one of :class:`ErrorCode`."""

    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class Limits:
    """Size limits a worker enforces on each request; a request over any of them gets ``too_large``.

    Args:
        max_items: queries per request.
        max_frames: frames per query (T), and frames uploaded per streamed item.
        max_pixels: H * W of one frame.
        max_bytes: total bytes of all buffers of one request (raw or JPEG as sent).
        max_header_bytes: bytes of the msgpack header.
    """

    max_items: int = 64
    max_frames: int = 64
    max_pixels: int = 1024 * 1024
    max_bytes: int = 256 * 1024 * 1024
    max_header_bytes: int = 1024 * 1024


@dataclass
class Item:
    """One query of a parsed score request; its frames are not decoded yet.

    Args:
        task: the instruction.
        episode: episode id (a streamed item's key in the worker's frame store).
        frame_index: (T,) step index of each frame; for a streamed item, the stored frames it names.
        frames: the full frames (v1 form), or None for a streamed item.
        upload: a streamed item's new frames, stored under ``upload_index`` before ``frame_index`` is resolved.
        upload_index: frame index of each uploaded frame.
    """

    task: str
    episode: str | None = None
    frame_index: list[int] | None = None
    frames: FrameBlock | None = None
    upload: FrameBlock | None = None
    upload_index: list[int] = field(default_factory=list)

    @property
    def streamed(self) -> bool:
        """True if the item names stored frames instead of carrying all of them (protocol v2)."""
        return self.frames is None


@dataclass
class Request:
    """A parsed request: ``op`` with its ``id``, its items, the deadline and the protocol version.

    ``queries`` holds the decoded queries after :func:`decode_request` (empty after :func:`parse_request`).
    """

    op: str
    id: Any
    queries: list[RewardQuery] = field(default_factory=list)
    deadline_ms: float | None = None
    items: list[Item] = field(default_factory=list)
    version: int = 1


def _packb(header: dict[str, Any]) -> bytes:
    return msgpack.packb(header, use_bin_type=True)


def encode_request(
    request_id: Any,
    op: str,
    queries: Sequence[RewardQuery] = (),
    *,
    enc: str = "raw",
    jpeg_quality: int = 90,
    deadline_ms: float | None = None,
    streamed: Sequence[tuple[str, Sequence[int]] | None] | None = None,
    jpegs: dict[tuple[int, int], bytes] | None = None,
) -> list[Any]:
    """Build the multipart message of a request: ``[header, buffer, ...]`` ready for ``send_multipart``.

    Raw frames go out as the caller's (C-contiguous) arrays without a copy; JPEG frames are
    encoded with OpenCV at ``jpeg_quality`` (0-100) unless ``jpegs`` already holds them, keyed by
    (query position, frame position).

    Args:
        streamed: per query, None (send all its frames) or ``(episode_key, upload_positions)``:
            the item names its ``frame_index`` in the worker's store of ``episode_key`` and
            carries only the frames at ``upload_positions``. Any streamed query makes the message v2.

    >>> import numpy as np
    >>> q = RewardQuery(np.zeros((2, 4, 4, 3), np.uint8), "open the drawer")
    >>> parts = encode_request(7, "score", [q])
    >>> decode_request(parts).queries[0].frames.shape
    (2, 4, 4, 3)
    """
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    if enc not in ENCODINGS:
        raise ValueError(f"enc must be one of {ENCODINGS}, got {enc!r}")
    if streamed is not None and len(streamed) != len(queries):
        raise ValueError(f"streamed needs one entry per query ({len(queries)}), got {len(streamed)}")
    jpegs = jpegs or {}
    version = 2 if streamed is not None and any(s is not None for s in streamed) else 1
    header: dict[str, Any] = {"v": version, "id": request_id, "op": op}
    if deadline_ms is not None:
        header["deadline_ms"] = float(deadline_ms)
    buffers: list[Any] = []

    def jpeg(i: int, frames: np.ndarray, positions: Sequence[int]) -> list[bytes]:
        return [jpegs.get((i, t)) or encode_jpeg(frames[t], jpeg_quality) for t in positions]

    if op == "score":
        items = []
        for i, q in enumerate(queries):
            if not isinstance(q, RewardQuery):
                raise TypeError(f"queries must be RewardQuery objects, got {type(q).__name__}")
            frames = np.ascontiguousarray(q.frames)
            stream = streamed[i] if streamed is not None else None
            item: dict[str, Any] = {"task": q.task}
            if stream is None:
                if enc == "raw":
                    bufs = [len(buffers)]
                    buffers.append(frames)
                else:
                    bufs = list(range(len(buffers), len(buffers) + frames.shape[0]))
                    buffers.extend(jpeg(i, frames, range(frames.shape[0])))
                item["frames"] = {"shape": list(frames.shape), "dtype": "uint8", "enc": enc, "bufs": bufs}
                if q.episode_id is not None:
                    item["episode"] = str(q.episode_id)
                if q.frame_index is not None:
                    item["frame_index"] = q.frame_index.tolist()
            else:
                episode, positions = stream
                if q.frame_index is None:
                    raise ValueError(f"queries[{i}] is streamed but has no frame_index to name its frames by")
                item["episode"] = episode
                item["frame_index"] = q.frame_index.tolist()
                if len(positions):
                    first = len(buffers)
                    if enc == "raw":
                        buffers.extend(frames[t] for t in positions)
                    else:
                        buffers.extend(jpeg(i, frames, positions))
                    item["upload"] = {
                        "index": [int(q.frame_index[t]) for t in positions],
                        "shape": [len(positions), *frames.shape[1:]],
                        "dtype": "uint8",
                        "enc": enc,
                        "bufs": list(range(first, len(buffers))),
                    }
            items.append(item)
        header["items"] = items
    return [_packb(header), *buffers]


def _buffer(part: Any) -> memoryview:
    # zmq.Frame (copy=False) exposes .buffer; bytes / arrays become memoryviews without copying.
    buf = getattr(part, "buffer", None)
    view = memoryview(buf if buf is not None else part)
    return view if view.ndim == 1 and view.format == "B" else view.cast("B")


def _decode_header(part: Any, limits: Limits | None) -> dict[str, Any]:
    raw = _buffer(part)
    if limits is not None and len(raw) > limits.max_header_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"header is {len(raw)} bytes, limit is {limits.max_header_bytes}"
        )
    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated types for junk input
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"header (frame 0, {len(raw)} bytes) is not valid msgpack: {e}"
        ) from e
    if not isinstance(header, dict):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"header must be a msgpack map, got {type(header).__name__}"
        )
    return header


def _check_id(header: dict[str, Any]) -> Any:
    rid = header.get("id")
    if rid is not None and not isinstance(rid, (int, str, bytes)):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"id must be an int or a string, got {type(rid).__name__}")
    return rid


def request_version(parts: Sequence[Any]) -> int:
    """The version a reply to ``parts`` should carry: the request's own if served, else 1 (readable by all)."""
    try:
        version = _decode_header(parts[0], None).get("v")
    except (ProtocolError, IndexError):
        return 1
    return version if version in SUPPORTED_VERSIONS and not isinstance(version, bool) else 1


def parse_request(parts: Sequence[Any], limits: Limits | None = None) -> Request:
    """Validate a request message (worker side) without decoding JPEGs; raises :class:`ProtocolError` with its code.

    Raw frames stay views on the received buffers; JPEG sizes are read from their headers.
    """
    limits = limits or Limits()
    if len(parts) == 0:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "empty message: expected a msgpack header frame")
    header = _decode_header(parts[0], limits)
    rid = _check_id(header)
    version = header.get("v")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            ErrorCode.VERSION,
            f"protocol version {version!r} not supported, this worker speaks v in {list(SUPPORTED_VERSIONS)}",
            rid,
        )
    op = header.get("op")
    if op not in OPS:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"unknown op {op!r}, expected one of {list(OPS)}", rid)
    deadline = header.get("deadline_ms")
    if deadline is not None and (
        isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not deadline > 0
    ):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"deadline_ms must be a positive number, got {deadline!r}", rid)
    if op != "score":
        return Request(op=op, id=rid, deadline_ms=deadline, version=version)
    buffers = [_buffer(p) for p in parts[1:]]
    total = sum(len(b) for b in buffers)
    if total > limits.max_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"request carries {total} bytes of frames, limit is {limits.max_bytes}", rid
        )
    items = header.get("items")
    if not isinstance(items, list) or not items:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"score request needs a non-empty list 'items', got {items!r:.80}", rid
        )
    if len(items) > limits.max_items:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"request has {len(items)} items, limit is {limits.max_items}", rid
        )
    used: set[int] = set()
    parsed = [_parse_item(i, item, buffers, used, limits, rid, version) for i, item in enumerate(items)]
    if len(used) != len(buffers):
        unused = sorted(set(range(len(buffers))) - used)
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"buffers {unused} are not referenced by any item ({len(buffers)} sent)", rid
        )
    return Request(op=op, id=rid, deadline_ms=deadline, items=parsed, version=version)


def decode_request(parts: Sequence[Any], limits: Limits | None = None) -> Request:
    """Parse a request and decode the frames of its items into ``queries`` (raises :class:`ProtocolError`).

    Raw frame arrays are read-only views on the received buffers (no copy). Streamed (v2) items
    name frames a worker stores, so they cannot become queries here: they raise ``bad_request``.
    """
    request = parse_request(parts, limits)
    for i, item in enumerate(request.items):
        if item.streamed:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                f"items[{i}] names stored frames of episode {item.episode!r} (protocol v2 streaming); "
                "only a worker with a frame store can resolve it",
                request.id,
            )
        request.queries.append(item_query(item, decode_frames(item.frames, request.id), request.id, i))
    return request


def decode_frames(block: FrameBlock, request_id: Any = None) -> np.ndarray:
    """All frames of ``block`` as (n, H, W, 3) uint8; a JPEG that does not decode raises ``bad_request``."""
    try:
        return block.frames()
    except ValueError as e:
        raise ProtocolError(ErrorCode.BAD_REQUEST, str(e), request_id) from e


def item_query(item: Item, frames: np.ndarray, request_id: Any = None, index: int = 0) -> RewardQuery:
    """The :class:`RewardQuery` of ``item`` given its (T, H, W, 3) frames; ``bad_request`` if they do not fit."""
    try:
        return RewardQuery(frames=frames, task=item.task, episode_id=item.episode, frame_index=item.frame_index)
    except ValueError as e:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"items[{index}]: {e}", request_id) from e


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _parse_item(
    index: int, item: Any, buffers: list[memoryview], used: set[int], limits: Limits, rid: Any, version: int
) -> Item:
    where = f"items[{index}]"

    def bad(msg: str, code: str = ErrorCode.BAD_REQUEST) -> ProtocolError:
        return ProtocolError(code, f"{where}: {msg}", rid)

    if not isinstance(item, dict):
        raise bad(f"must be a map, got {type(item).__name__}")
    task = item.get("task")
    if not isinstance(task, str) or not task.strip():
        raise bad(f"task must be a non-empty string, got {task!r:.80}")
    episode = item.get("episode")
    if episode is not None and not isinstance(episode, str):
        raise bad(f"episode must be a string, got {type(episode).__name__}")
    spec = item.get("frames")
    if version >= 2 and spec is None:
        return _parse_streamed_item(item, task, episode, buffers, used, limits, bad, where)
    if not isinstance(spec, dict):
        raise bad(f"frames must be a map {{shape, dtype, enc, bufs}}, got {spec!r:.80}")
    block = _frame_block(spec, buffers, used, limits, bad, where, one_raw_buffer=True)
    t = block.shape[0]
    frame_index = item.get("frame_index")
    if frame_index is not None and (
        not isinstance(frame_index, list) or len(frame_index) != t or not all(_is_int(i) for i in frame_index)
    ):
        raise bad(f"frame_index must be a list of {t} ints, got {frame_index!r:.80}")
    return Item(task=task, episode=episode, frame_index=frame_index, frames=block)


def _parse_streamed_item(
    item: dict, task: str, episode: Any, buffers: list[memoryview], used: set[int], limits: Limits, bad: Any,
    where: str,
) -> Item:
    if not isinstance(episode, str) or not episode:
        raise bad(f"a streamed item (no 'frames') needs a non-empty episode string, got {episode!r:.80}")
    frame_index = item.get("frame_index")
    if (
        not isinstance(frame_index, list)
        or not frame_index
        or not all(_is_int(i) and 0 <= i < 2**63 for i in frame_index)
    ):
        raise bad(f"a streamed item needs frame_index: a non-empty list of ints >= 0, got {frame_index!r:.80}")
    if len(frame_index) > limits.max_frames:
        raise bad(f"{len(frame_index)} frames, limit is {limits.max_frames}", ErrorCode.TOO_LARGE)
    spec = item.get("upload")
    if spec is None:
        return Item(task=task, episode=episode, frame_index=frame_index)
    if not isinstance(spec, dict):
        raise bad(f"upload must be a map {{index, shape, dtype, enc, bufs}}, got {spec!r:.80}")
    block = _frame_block(spec, buffers, used, limits, bad, f"{where} upload", one_raw_buffer=False)
    upload_index = spec.get("index")
    if (
        not isinstance(upload_index, list)
        or len(upload_index) != block.shape[0]
        or not all(_is_int(i) and 0 <= i < 2**63 for i in upload_index)
        or len(set(upload_index)) != len(upload_index)
    ):
        raise bad(f"upload.index must be {block.shape[0]} distinct ints >= 0, got {upload_index!r:.80}")
    return Item(task=task, episode=episode, frame_index=frame_index, upload=block, upload_index=upload_index)


def _frame_block(
    spec: dict, buffers: list[memoryview], used: set[int], limits: Limits, bad: Any, where: str, one_raw_buffer: bool
) -> FrameBlock:
    """Check a ``{shape, dtype, enc, bufs}`` spec against the buffers; raw buffers are sized, JPEG headers read."""
    shape, dtype, enc, bufs = (spec.get(k) for k in ("shape", "dtype", "enc", "bufs"))
    if not isinstance(shape, list) or len(shape) != 4 or not all(_is_int(s) for s in shape) or shape[3] != 3:
        raise bad(f"frames must be uint8 (T,H,W,3), got shape {shape!r:.80}")
    if dtype != "uint8":
        raise bad(f"frames must be uint8 (T,H,W,3), got dtype {dtype!r:.40} shape {tuple(shape)}")
    t, h, w = shape[:3]
    if t < 1 or h < 1 or w < 1:
        raise bad(f"frames must hold at least one frame with H,W >= 1, got shape {tuple(shape)}")
    if t > limits.max_frames:
        raise bad(f"{t} frames, limit is {limits.max_frames}", ErrorCode.TOO_LARGE)
    if h * w > limits.max_pixels:
        raise bad(f"frames of {h}x{w} = {h * w} pixels, limit is {limits.max_pixels}", ErrorCode.TOO_LARGE)
    if enc not in ENCODINGS:
        raise bad(f"enc must be one of {list(ENCODINGS)}, got {enc!r:.40}")
    want = 1 if enc == "raw" and one_raw_buffer else t
    if not isinstance(bufs, list) or len(bufs) != want or not all(_is_int(b) for b in bufs):
        raise bad(f"enc={enc!r} with T={t} needs bufs = a list of {want} buffer indices, got {bufs!r:.80}")
    for b in bufs:
        if not 0 <= b < len(buffers):
            raise bad(f"buffer index {b} missing: the message carries {len(buffers)} buffers after the header")
        if b in used:
            raise bad(f"buffer index {b} is already used by another item or frame")
        used.add(b)
    views = tuple(buffers[b] for b in bufs)
    if enc == "raw":
        expected = (t if want == 1 else 1) * h * w * 3
        for b, view in zip(bufs, views, strict=True):
            if len(view) != expected:
                what = f"shape {tuple(shape)}" if want == 1 else f"a {h}x{w} frame"
                raise bad(f"raw buffer {b} has {len(view)} bytes, {what} uint8 needs {expected}")
    else:
        for k, view in enumerate(views):
            size = jpeg_size(view)
            if size is None:
                raise bad(f"frame {k}: JPEG buffer of {len(view)} bytes does not decode")
            if size != (h, w):
                raise bad(f"frame {k}: JPEG decodes to {size[0]}x{size[1]}, header says {h}x{w}")
    return FrameBlock(shape=(t, h, w, 3), enc=enc, bufs=views, where=where)


def encode_reply(request_id: Any, v: int = 1, **body: Any) -> list[bytes]:
    """Build an ``ok: true`` reply (protocol version ``v``); ``body`` holds ``results``/``timing`` or ``info``/``stats`` etc."""
    return [_packb({"v": v, "id": request_id, "ok": True, **body})]


def encode_error(request_id: Any, code: str, message: str, v: int = 1) -> list[bytes]:
    """Build an ``ok: false`` reply with an error ``code`` (see :class:`ErrorCode`) and a message."""
    if code not in ErrorCode.ALL:
        raise ValueError(f"error code must be one of {ErrorCode.ALL}, got {code!r}")
    return [_packb({"v": v, "id": request_id, "ok": False, "error": {"code": code, "message": message}})]


def encode_results(results: Sequence[RewardResult]) -> list[dict[str, list[float]]]:
    """Plain-list form of results for a score reply."""
    return [{"progress": r.progress.tolist(), "success": r.success.tolist()} for r in results]


def decode_reply(parts: Sequence[Any]) -> dict[str, Any]:
    """Parse a reply message (client side) into its header map; raises :class:`ProtocolError` if malformed."""
    if len(parts) == 0:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "empty reply: expected a msgpack header frame")
    header = _decode_header(parts[0], None)
    if header.get("v") not in SUPPORTED_VERSIONS or isinstance(header.get("v"), bool):
        raise ProtocolError(
            ErrorCode.VERSION,
            f"reply has protocol version {header.get('v')!r}, this client speaks v in {list(SUPPORTED_VERSIONS)}",
        )
    if not isinstance(header.get("ok"), bool):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"reply needs a boolean 'ok', got {header.get('ok')!r:.40}")
    return header


def results_from_reply(reply: dict[str, Any], expected: Sequence[RewardQuery]) -> list[RewardResult]:
    """The results of an ``ok`` score reply, checked against the queries they answer."""
    raw = reply.get("results")
    if not isinstance(raw, list):
        raise ProtocolError(ErrorCode.INTERNAL, f"reply needs a list of results, got {type(raw).__name__}")
    version = reply.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise ProtocolError(ErrorCode.INTERNAL, f"reply's model version must be an int >= 0, got {version!r:.40}")
    out = [RewardResult(progress=np.asarray(r["progress"], np.float32), success=np.asarray(r["success"], np.float32),
                        version=version) for r in raw]
    return check_results(expected, out, "the worker's reply")
