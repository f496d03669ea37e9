"""Frame buffers on the wire: JPEG encoding and decoding, and frames received but not yet decoded.

* :func:`encode_jpeg` - one (H, W, 3) RGB frame -> JPEG bytes (OpenCV).
* :func:`decode_jpeg` - JPEG bytes -> (H, W, 3) RGB frame, checking the size the header promised.
* :func:`jpeg_size` - (H, W) a JPEG declares, read before decoding it.
* :class:`FrameBlock` - (n, H, W, 3) uint8 frames as received: raw buffers (read in place) or one
  JPEG per frame (decoded when asked, e.g. on the worker's decode threads).
* :func:`frame_digest` - a cheap fingerprint of one frame (CRC-32 plus its shape).

No sockets and no msgpack here; :mod:`rlrm.transport.protocol` lays these buffers out in messages.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

__all__ = ["encode_jpeg", "decode_jpeg", "jpeg_size", "FrameBlock", "frame_digest"]


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of one (H, W, 3) uint8 RGB frame at ``quality`` (0-100)."""
    import cv2

    # cvtColor, not frame[..., ::-1]: OpenCV copies a negative-stride view slowly (3x the encode time)
    bgr = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not JPEG-encode a frame of shape {frame.shape}")
    return buf.tobytes()


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame: carries H and W


def jpeg_size(buf: bytes | memoryview) -> tuple[int, int] | None:
    """(H, W) from a JPEG's frame header without decoding the image; None if there is no valid header."""
    data = memoryview(buf)[:65536]  # a view: the header is near the start, nothing is copied
    if bytes(data[:2]) != b"\xff\xd8":
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


def decode_jpeg(buf: memoryview, expected_hw: tuple[int, int], where: str) -> np.ndarray:
    """Decode one JPEG to (H, W, 3) RGB; ``ValueError`` naming ``where`` if it does not decode to ``expected_hw``."""
    import cv2

    # read the declared size first, so a tiny JPEG claiming 60000x60000 is never decoded
    size = jpeg_size(buf)
    if size is None:
        raise ValueError(f"{where}: JPEG buffer of {len(buf)} bytes does not decode")
    if size != expected_hw:
        raise ValueError(
            f"{where}: JPEG decodes to {size[0]}x{size[1]}, header says {expected_hw[0]}x{expected_hw[1]}"
        )
    img = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{where}: JPEG buffer of {len(buf)} bytes does not decode")
    if img.shape[:2] != expected_hw:
        raise ValueError(
            f"{where}: JPEG decodes to {img.shape[0]}x{img.shape[1]}, header says {expected_hw[0]}x{expected_hw[1]}"
        )
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)  # contiguous: stacking flipped views costs 20x more


@dataclass(frozen=True)
class FrameBlock:
    """(n, H, W, 3) uint8 frames as they arrived, sizes already checked against the header.

    Args:
        shape: (n, H, W, 3).
        enc: ``"raw"`` or ``"jpeg"``.
        bufs: raw: one buffer for all n frames, or one per frame; jpeg: one JPEG per frame.
        where: the request item it came from, for error messages.

    Raw frames are read in place (``np.frombuffer``, no copy); JPEG frames are decoded on demand.
    """

    shape: tuple[int, int, int, int]
    enc: str
    bufs: tuple[memoryview, ...]
    where: str

    @property
    def needs_decoding(self) -> bool:
        """True for JPEG frames (decoding costs time; raw frames are views)."""
        return self.enc == "jpeg"

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded frames."""
        n, h, w, c = self.shape
        return n * h * w * c

    def frame(self, k: int) -> np.ndarray:
        """Frame ``k`` as (H, W, 3) uint8 (a read-only view for raw frames); ``ValueError`` if a JPEG is bad."""
        _, h, w, _ = self.shape
        if self.enc == "jpeg":
            return decode_jpeg(self.bufs[k], (h, w), f"{self.where} frame {k}")
        if len(self.bufs) == 1:
            return self.frames()[k]
        return np.frombuffer(self.bufs[k], dtype=np.uint8).reshape(h, w, 3)

    def frames(self) -> np.ndarray:
        """All frames as (n, H, W, 3) uint8 (a read-only view when they came as one raw buffer)."""
        if self.enc == "raw" and len(self.bufs) == 1:
            return np.frombuffer(self.bufs[0], dtype=np.uint8).reshape(self.shape)
        return np.stack([self.frame(k) for k in range(self.shape[0])])


def frame_digest(frame: np.ndarray) -> tuple[int, int, int]:
    """(CRC-32, H, W) of one (H, W, 3) uint8 frame: tells a re-sent frame from a different one at ~5 GB/s."""
    return zlib.crc32(np.ascontiguousarray(frame)), int(frame.shape[0]), int(frame.shape[1])
