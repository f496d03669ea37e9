"""Wire format: requests and replies round-trip, and every malformed request maps to its error code."""

import msgpack
import numpy as np
import pytest

from rlrm.transport.protocol import (
    ErrorCode,
    Limits,
    ProtocolError,
    decode_reply,
    decode_request,
    encode_error,
    encode_reply,
    encode_request,
    encode_results,
    results_from_reply,
)
from rlrm.types import ResultsMismatchError, RewardQuery, RewardResult


def gradient_frames(t=3, h=32, w=48, seed=0):
    """Smooth (JPEG-friendly) frames: a colour gradient shifted per frame."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w)], axis=-1)
    return np.stack([(base + rng.integers(0, 60)) % 256 for _ in range(t)]).astype(np.uint8)


def header(**overrides):
    h = {"v": 1, "id": 1, "op": "score",
         "items": [{"task": "open the drawer", "frames": {"shape": [2, 4, 4, 3], "dtype": "uint8", "enc": "raw", "bufs": [0]}}]}
    h.update(overrides)
    return h


def item(**frames_overrides):
    spec = {"shape": [2, 4, 4, 3], "dtype": "uint8", "enc": "raw", "bufs": [0]}
    spec.update(frames_overrides)
    return {"task": "open the drawer", "frames": spec}


def test_raw_round_trip_is_exact_and_zero_copy():
    q = RewardQuery(gradient_frames(), "put the cube in the bowl", episode_id="ep3", frame_index=[0, 5, 9])
    parts = encode_request(11, "score", [q], deadline_ms=250)
    assert parts[1] is not None and np.shares_memory(np.asarray(parts[1]), q.frames)
    req = decode_request(parts)
    assert (req.op, req.id, req.deadline_ms) == ("score", 11, 250.0)
    (got,) = req.queries
    np.testing.assert_array_equal(got.frames, q.frames)
    assert got.task == q.task and got.episode_id == "ep3"
    np.testing.assert_array_equal(got.frame_index, [0, 5, 9])


def test_jpeg_round_trip_is_close_and_keeps_rgb_order():
    frames = gradient_frames(t=2, h=64, w=64)
    frames[:, :, :, 0] = 250  # strong red channel: a BGR/RGB mix-up would move it to blue
    parts = encode_request(1, "score", [RewardQuery(frames, "wipe the table")], enc="jpeg", jpeg_quality=95)
    assert len(parts) == 1 + 2  # one JPEG per frame
    got = decode_request(parts).queries[0].frames
    assert got.shape == frames.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - frames.astype(int)).mean() < 3.0
    assert got[..., 0].mean() > 240


def test_several_items_share_the_buffer_list():
    qs = [RewardQuery(gradient_frames(t=t, seed=t), f"task {t}") for t in (1, 2, 3)]
    for enc in ("raw", "jpeg"):
        req = decode_request(encode_request(2, "score", qs, enc=enc))
        assert [q.num_frames for q in req.queries] == [1, 2, 3]
        assert [q.task for q in req.queries] == ["task 1", "task 2", "task 3"]


@pytest.mark.parametrize(
    ("parts", "code", "says"),
    [
        ([], ErrorCode.BAD_REQUEST, "empty message"),
        ([b"\xc1\xff"], ErrorCode.BAD_REQUEST, "not valid msgpack"),
        ([msgpack.packb([1, 2])], ErrorCode.BAD_REQUEST, "must be a msgpack map"),
        ([msgpack.packb(header(v=3))], ErrorCode.VERSION, "version 3"),
        ([msgpack.packb(header(op="train"))], ErrorCode.BAD_REQUEST, "unknown op 'train'"),
        ([msgpack.packb(header(items=[]))], ErrorCode.BAD_REQUEST, "non-empty list 'items'"),
        ([msgpack.packb(header(deadline_ms=-5))], ErrorCode.BAD_REQUEST, "deadline_ms"),
        ([msgpack.packb(header())], ErrorCode.BAD_REQUEST, "buffer index 0 missing"),
        ([msgpack.packb(header()), b"\x00" * 95], ErrorCode.BAD_REQUEST, "has 95 bytes"),
        ([msgpack.packb(header()), b"\x00" * 96, b"extra"], ErrorCode.BAD_REQUEST, "not referenced"),
        ([msgpack.packb(header(items=[item(dtype="float32")])), b"\x00" * 96], ErrorCode.BAD_REQUEST, "got dtype 'float32'"),
        ([msgpack.packb(header(items=[item(shape=[2, 3, 4, 4])])), b"\x00" * 96], ErrorCode.BAD_REQUEST, "(T,H,W,3)"),
        ([msgpack.packb(header(items=[item(shape=[0, 4, 4, 3])])), b""], ErrorCode.BAD_REQUEST, "at least one frame"),
        ([msgpack.packb(header(items=[item(enc="png")])), b"\x00" * 96], ErrorCode.BAD_REQUEST, "enc must be one of"),
        ([msgpack.packb(header(items=[item(enc="jpeg", bufs=[0, 1])])), b"nope", b"nope"], ErrorCode.BAD_REQUEST, "does not decode"),
        ([msgpack.packb(header(items=[{"task": " ", "frames": item()["frames"]}])), b"\x00" * 96], ErrorCode.BAD_REQUEST, "task"),
        ([msgpack.packb(header(items=[item(shape=[65, 4, 4, 3])]))], ErrorCode.TOO_LARGE, "65 frames"),
        ([msgpack.packb(header(items=[item(shape=[1, 2000, 2000, 3])]))], ErrorCode.TOO_LARGE, "pixels"),
        ([msgpack.packb(header(items=[item()] * 65))], ErrorCode.TOO_LARGE, "65 items"),
    ],
)
def test_malformed_requests_get_their_code(parts, code, says):
    with pytest.raises(ProtocolError) as err:
        decode_request(parts)
    assert err.value.code == code
    assert says in err.value.message


def test_byte_limit_and_header_limit_are_configurable():
    q = RewardQuery(gradient_frames(t=2, h=32, w=32), "stack the blocks")
    parts = encode_request(1, "score", [q])
    with pytest.raises(ProtocolError, match="limit is 1000") as err:
        decode_request(parts, Limits(max_bytes=1000))
    assert err.value.code == ErrorCode.TOO_LARGE
    with pytest.raises(ProtocolError) as err:
        decode_request(parts, Limits(max_header_bytes=10))
    assert err.value.code == ErrorCode.TOO_LARGE


def test_jpeg_of_the_wrong_size_is_rejected():
    parts = encode_request(1, "score", [RewardQuery(gradient_frames(t=1, h=32, w=32), "push")], enc="jpeg")
    h = msgpack.unpackb(parts[0])
    h["items"][0]["frames"]["shape"] = [1, 16, 32, 3]
    with pytest.raises(ProtocolError, match="decodes to 32x32, header says 16x32"):
        decode_request([msgpack.packb(h), parts[1]])


def test_error_keeps_the_request_id_when_the_header_is_readable():
    with pytest.raises(ProtocolError) as err:
        decode_request([msgpack.packb(header(id=42, op="nope"))])
    assert err.value.request_id == 42


def test_replies_round_trip():
    q = RewardQuery(gradient_frames(t=3), "open the drawer")
    res = [RewardResult(np.array([0.1, 0.5, 0.9]), np.array([0.0, 0.2, 0.8]))]
    reply = decode_reply(encode_reply(5, results=encode_results(res), timing={"queue_ms": 1.0, "infer_ms": 2.0}))
    assert reply["ok"] and reply["id"] == 5
    (got,) = results_from_reply(reply, [q])
    np.testing.assert_allclose(got.progress, [0.1, 0.5, 0.9], rtol=1e-6)
    err = decode_reply(encode_error(6, ErrorCode.BUSY, "queue full"))
    assert not err["ok"] and err["error"] == {"code": "busy", "message": "queue full"}
    with pytest.raises(ResultsMismatchError, match="reply returned 2 values for query 0 of 3 frames"):
        results_from_reply({"results": [{"progress": [0, 1], "success": [0, 1]}]}, [q])
    with pytest.raises(ValueError, match="error code must be one of"):
        encode_error(1, "oops", "x")


def test_client_side_encoding_refuses_bad_arguments():
    q = RewardQuery(gradient_frames(t=1), "push")
    with pytest.raises(ValueError, match="op must be one of"):
        encode_request(1, "train", [q])
    with pytest.raises(ValueError, match="enc must be one of"):
        encode_request(1, "score", [q], enc="png")
    with pytest.raises(TypeError, match="RewardQuery"):
        encode_request(1, "score", [q.frames])


def test_a_jpeg_declaring_a_huge_image_is_rejected_before_decoding():
    import cv2

    from rlrm.transport.protocol import jpeg_size

    frame = gradient_frames(t=1, h=32, w=32)[0]
    for params in ([], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]):
        ok, buf = cv2.imencode(".jpg", frame, params)
        assert jpeg_size(buf.tobytes()) == (32, 32)
    data = bytearray(buf.tobytes())
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    data[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")  # a decompression bomb
    spec = {"shape": [1, 32, 32, 3], "dtype": "uint8", "enc": "jpeg", "bufs": [0]}
    parts = [msgpack.packb(header(items=[{"task": "push", "frames": spec}])), bytes(data)]
    with pytest.raises(ProtocolError, match="decodes to 60000x60000, header says 32x32"):
        decode_request(parts)
    assert jpeg_size(b"\xff\xd8\xff\xda\x00\x02") is None and jpeg_size(b"GIF89a") is None
