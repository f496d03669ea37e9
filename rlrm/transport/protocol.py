"""The rlrm wire format: ZeroMQ multipart messages with a msgpack header and raw frame buffers.

* :data:`PROTOCOL_VERSION` - the ``v`` every message carries (currently 1).
* :data:`URL_SCHEMES` / :func:`check_worker_url` - the endpoints a client reaches a worker on.
* :class:`ErrorCode` - the error codes a worker replies with.
* :class:`ProtocolError` - a request or reply that breaks the format; carries an :class:`ErrorCode`.
* :class:`Limits` - size limits a worker enforces (past them: ``too_large``).
* :class:`Request` - a decoded request (``op``, ``id``, queries, ``deadline_ms``).
* :func:`encode_request` / :func:`decode_request` - client side / worker side of a request.
* :func:`encode_reply` / :func:`encode_error` / :func:`decode_reply` - the reply in both directions.
* :func:`results_from_reply` - the :class:`~rlrm.types.RewardResult` list of an ``ok`` score reply.
* :func:`jpeg_size` - (H, W) a JPEG declares, read before decoding it.

Message layout (frame 0 is the header, the rest are buffers the header refers to by index,
0 being the first buffer after the header)::

    request  {v: 1, id, op: "score"|"info"|"ping",
              items: [{task, episode?, frame_index?, frames: {shape, dtype, enc: "raw"|"jpeg", bufs: [i...]}}],
              deadline_ms?}
    reply    {v: 1, id, ok: true, results: [{progress: [...], success: [...]}], timing: {queue_ms, infer_ms}}
             {v: 1, id, ok: false, error: {code, message}}

``enc="raw"`` items have one buffer holding the C-ordered (T, H, W, 3) uint8 array;
``enc="jpeg"`` items have T buffers, one JPEG per frame (OpenCV, RGB order on both ends).
Buffers are sent and received without copies (``copy=False``); nothing is ever pickled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from rlrm.types import RewardQuery, RewardResult

__all__ = [
    "PROTOCOL_VERSION",
    "OPS",
    "ENCODINGS",
    "URL_SCHEMES",
    "check_worker_url",
    "ErrorCode",
    "ProtocolError",
    "Limits",
    "Request",
    "encode_request",
    "decode_request",
    "encode_reply",
    "encode_error",
    "decode_reply",
    "encode_results",
    "results_from_reply",
    "jpeg_size",
]

PROTOCOL_VERSION = 1
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

    ALL = (BAD_REQUEST, TOO_LARGE, BUSY, VERSION, INTERNAL)


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
        max_frames: frames per query (T).
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
class Request:
    """A decoded request: ``op`` with its ``id``, the queries of a score request, and the deadline."""

    op: str
    id: Any
    queries: list[RewardQuery] = field(default_factory=list)
    deadline_ms: float | None = None


def _packb(header: dict[str, Any]) -> bytes:
    return msgpack.packb(header, use_bin_type=True)


def _encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not JPEG-encode a frame of shape {frame.shape}")
    return buf.tobytes()


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame: carries H and W


def jpeg_size(buf: bytes | memoryview) -> tuple[int, int] | None:
    """(H, W) from a JPEG's frame header without decoding the image; None if there is no valid header."""
    data = bytes(buf[:65536]) if len(buf) > 65536 else bytes(buf)
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF_MARKERS:
            if i + 9 > len(data):
                return None
            return int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
        if marker == 0xDA or length < 2:  # image data before any frame header: malformed
            return None
        i += 2 + length
    return None


def _decode_jpeg(buf: memoryview, expected_hw: tuple[int, int], where: str) -> np.ndarray:
    import cv2

    # read the declared size first, so a tiny JPEG claiming 60000x60000 is never decoded
    size = jpeg_size(buf)
    if size is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{where}: JPEG buffer of {len(buf)} bytes does not decode")
    if size != expected_hw:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"{where}: JPEG decodes to {size[0]}x{size[1]}, header says {expected_hw[0]}x{expected_hw[1]}",
        )
    img = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{where}: JPEG buffer of {len(buf)} bytes does not decode")
    if img.shape[:2] != expected_hw:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"{where}: JPEG decodes to {img.shape[0]}x{img.shape[1]}, header says {expected_hw[0]}x{expected_hw[1]}",
        )
    return img[..., ::-1]


def encode_request(
    request_id: Any,
    op: str,
    queries: Sequence[RewardQuery] = (),
    *,
    enc: str = "raw",
    jpeg_quality: int = 90,
    deadline_ms: float | None = None,
) -> list[Any]:
    """Build the multipart message of a request: ``[header, buffer, ...]`` ready for ``send_multipart``.

    Raw frames go out as the caller's (C-contiguous) arrays without a copy; JPEG frames are
    encoded one by one with OpenCV at ``jpeg_quality`` (0-100).

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
    header: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": request_id, "op": op}
    if deadline_ms is not None:
        header["deadline_ms"] = float(deadline_ms)
    buffers: list[Any] = []
    if op == "score":
        items = []
        for q in queries:
            if not isinstance(q, RewardQuery):
                raise TypeError(f"queries must be RewardQuery objects, got {type(q).__name__}")
            frames = np.ascontiguousarray(q.frames)
            if enc == "raw":
                bufs = [len(buffers)]
                buffers.append(frames)
            else:
                bufs = list(range(len(buffers), len(buffers) + frames.shape[0]))
                buffers.extend(_encode_jpeg(f, jpeg_quality) for f in frames)
            item: dict[str, Any] = {
                "task": q.task,
                "frames": {"shape": list(frames.shape), "dtype": str(frames.dtype), "enc": enc, "bufs": bufs},
            }
            if q.episode_id is not None:
                item["episode"] = str(q.episode_id)
            if q.frame_index is not None:
                item["frame_index"] = [int(i) for i in q.frame_index]
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


def decode_request(parts: Sequence[Any], limits: Limits | None = None) -> Request:
    """Parse and validate a request message (worker side); raises :class:`ProtocolError` with its code.

    Raw frame arrays are read-only views on the received buffers (no copy).
    """
    limits = limits or Limits()
    if len(parts) == 0:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "empty message: expected a msgpack header frame")
    header = _decode_header(parts[0], limits)
    rid = _check_id(header)
    version = header.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.VERSION, f"protocol version {version!r} not supported, this worker speaks v={PROTOCOL_VERSION}", rid
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
        return Request(op=op, id=rid, deadline_ms=deadline)
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
    queries = [_decode_item(i, item, buffers, used, limits, rid) for i, item in enumerate(items)]
    if len(used) != len(buffers):
        unused = sorted(set(range(len(buffers))) - used)
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"buffers {unused} are not referenced by any item ({len(buffers)} sent)", rid
        )
    return Request(op=op, id=rid, queries=queries, deadline_ms=deadline)


def _decode_item(
    index: int, item: Any, buffers: list[memoryview], used: set[int], limits: Limits, rid: Any
) -> RewardQuery:
    where = f"items[{index}]"

    def bad(msg: str, code: str = ErrorCode.BAD_REQUEST) -> ProtocolError:
        return ProtocolError(code, f"{where}: {msg}", rid)

    if not isinstance(item, dict):
        raise bad(f"must be a map, got {type(item).__name__}")
    task = item.get("task")
    if not isinstance(task, str) or not task.strip():
        raise bad(f"task must be a non-empty string, got {task!r:.80}")
    spec = item.get("frames")
    if not isinstance(spec, dict):
        raise bad(f"frames must be a map {{shape, dtype, enc, bufs}}, got {spec!r:.80}")
    shape, dtype, enc, bufs = (spec.get(k) for k in ("shape", "dtype", "enc", "bufs"))
    if (
        not isinstance(shape, list)
        or len(shape) != 4
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape)
        or shape[3] != 3
    ):
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
    want = 1 if enc == "raw" else t
    if not isinstance(bufs, list) or len(bufs) != want or not all(
        isinstance(b, int) and not isinstance(b, bool) for b in bufs
    ):
        raise bad(f"enc={enc!r} with T={t} needs bufs = a list of {want} buffer indices, got {bufs!r:.80}")
    for b in bufs:
        if not 0 <= b < len(buffers):
            raise bad(f"buffer index {b} missing: the message carries {len(buffers)} buffers after the header")
        if b in used:
            raise bad(f"buffer index {b} is already used by another item or frame")
        used.add(b)
    if enc == "raw":
        buf = buffers[bufs[0]]
        expected = t * h * w * 3
        if len(buf) != expected:
            raise bad(f"raw buffer {bufs[0]} has {len(buf)} bytes, shape {tuple(shape)} uint8 needs {expected}")
        frames = np.frombuffer(buf, dtype=np.uint8).reshape(t, h, w, 3)
    else:
        frames = np.stack([_decode_jpeg(buffers[b], (h, w), f"{where} frame {k}") for k, b in enumerate(bufs)])
    episode = item.get("episode")
    if episode is not None and not isinstance(episode, str):
        raise bad(f"episode must be a string, got {type(episode).__name__}")
    frame_index = item.get("frame_index")
    if frame_index is not None and (
        not isinstance(frame_index, list)
        or len(frame_index) != t
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in frame_index)
    ):
        raise bad(f"frame_index must be a list of {t} ints, got {frame_index!r:.80}")
    try:
        return RewardQuery(frames=frames, task=task, episode_id=episode, frame_index=frame_index)
    except ValueError as e:
        raise bad(str(e)) from e


def encode_reply(request_id: Any, **body: Any) -> list[bytes]:
    """Build an ``ok: true`` reply; ``body`` holds ``results``/``timing`` or ``info``/``stats`` etc."""
    return [_packb({"v": PROTOCOL_VERSION, "id": request_id, "ok": True, **body})]


def encode_error(request_id: Any, code: str, message: str) -> list[bytes]:
    """Build an ``ok: false`` reply with an error ``code`` (see :class:`ErrorCode`) and a message."""
    if code not in ErrorCode.ALL:
        raise ValueError(f"error code must be one of {ErrorCode.ALL}, got {code!r}")
    return [_packb({"v": PROTOCOL_VERSION, "id": request_id, "ok": False, "error": {"code": code, "message": message}})]


def encode_results(results: Sequence[RewardResult]) -> list[dict[str, list[float]]]:
    """Plain-list form of results for a score reply."""
    return [{"progress": r.progress.tolist(), "success": r.success.tolist()} for r in results]


def decode_reply(parts: Sequence[Any]) -> dict[str, Any]:
    """Parse a reply message (client side) into its header map; raises :class:`ProtocolError` if malformed."""
    if len(parts) == 0:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "empty reply: expected a msgpack header frame")
    header = _decode_header(parts[0], None)
    if header.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.VERSION, f"reply has protocol version {header.get('v')!r}, this client speaks v={PROTOCOL_VERSION}"
        )
    if not isinstance(header.get("ok"), bool):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"reply needs a boolean 'ok', got {header.get('ok')!r:.40}")
    return header


def results_from_reply(reply: dict[str, Any], expected: Sequence[RewardQuery]) -> list[RewardResult]:
    """The results of an ``ok`` score reply, checked against the queries they answer."""
    raw = reply.get("results")
    if not isinstance(raw, list) or len(raw) != len(expected):
        n = len(raw) if isinstance(raw, list) else raw
        raise ProtocolError(ErrorCode.INTERNAL, f"reply has {n} results for {len(expected)} queries")
    out = []
    for i, (r, q) in enumerate(zip(raw, expected, strict=True)):
        res = RewardResult(progress=np.asarray(r["progress"], np.float32), success=np.asarray(r["success"], np.float32))
        if len(res) != q.num_frames:
            raise ProtocolError(
                ErrorCode.INTERNAL, f"result {i} has {len(res)} values for a query of {q.num_frames} frames"
            )
        out.append(res)
    return out
