"""`rlrm score` on generated videos and `rlrm bench model`, run through the real CLI entry point."""

import json

import cv2
import numpy as np
import pytest

from rlrm.cli import main
from rlrm.models.score_cli import read_video, select_frames
from rlrm.sampling import sample_indices
from rlrm.types import RewardQuery


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 25-frame 96x64 mp4 in which a red bar grows from left to right."""
    path = tmp_path_factory.mktemp("video") / "episode.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 64))
    assert writer.isOpened()
    for t in range(25):
        bgr = np.full((64, 96, 3), 40, np.uint8)
        bgr[:, : 4 * t] = (0, 0, 255)
        writer.write(bgr)
    writer.release()
    return path


def test_score_video_writes_json_and_plot(video, tmp_path, tiny_model):
    out_json, out_png = tmp_path / "scores.json", tmp_path / "scores.png"
    rc = main(["score", str(video), "--task", "fill the frame with red", "--model", "tiny",
               "--json", str(out_json), "--plot", str(out_png)])
    assert rc == 0
    report = json.loads(out_json.read_text())
    frames, fps = read_video(video)
    assert fps == pytest.approx(10.0) and report["num_video_frames"] == len(frames) == 25
    assert report["frame_index"] == sample_indices(25, 8).tolist()
    assert report["frame_index"][0] == 0 and report["frame_index"][-1] == 24
    idx = np.asarray(report["frame_index"])
    expected = tiny_model.score([RewardQuery(frames[idx], "fill the frame with red")])[0]
    np.testing.assert_allclose(report["progress"], expected.progress, atol=1e-6)
    np.testing.assert_allclose(report["success"], expected.success, atol=1e-6)
    png = cv2.imread(str(out_png))
    assert png is not None and png.shape[0] > 200 and png.shape[1] > 400


def test_all_frames_and_fps_resampling(video, tmp_path):
    out_json = tmp_path / "all.json"
    assert main(["score", str(video), "--task", "x", "--model", "tiny", "--all-frames", "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["frame_index"] == list(range(25))
    assert main(["score", str(video), "--task", "x", "--model", "tiny", "--all-frames", "--fps", "2",
                 "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["frame_index"] == [0, 5, 10, 15, 20, 24]


def test_npy_input(tmp_path, capsys):
    frames = np.random.default_rng(0).integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)
    np.save(tmp_path / "ep.npy", frames)
    out_json = tmp_path / "npy.json"
    assert main(["score", str(tmp_path / "ep.npy"), "--task", "reach", "--model", "tiny", "--max-frames", "4",
                 "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["frame_index"] == [0, 4, 7, 11]
    assert "progress" in capsys.readouterr().out  # the table


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "clip.gif").write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="unsupported video type '.gif'"):
        read_video(tmp_path / "clip.gif")
    np.save(tmp_path / "bad.npy", np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"uint8 \(T,H,W,3\), got float32 \(4, 3, 8, 8\)"):
        read_video(tmp_path / "bad.npy")
    with pytest.raises(ValueError, match="--source-fps"):
        select_frames(10, fps=2.0, source_fps=None)
    with pytest.raises(ValueError, match="non-empty"):
        main(["score", str(tmp_path / "bad.npy"), "--task", " ", "--model", "tiny"])


def test_bench_model_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "model", "--model", "tiny", "--batch-sizes", "1,2", "--frames", "2",
                 "--image-size", "64", "--repeats", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["batch_size"] for r in report["rows"]] == [1, 2]
    assert report["rows"][0]["speedup_per_query_vs_first"] == 1.0
    assert all(r["ms_per_query"] > 0 for r in report["rows"])


def test_input_errors_are_one_message_without_a_traceback(tmp_path):
    """A text file, a file named .mp4 that is no video, and a hub id the hub cannot serve: one line each, exit 2."""
    import os
    import subprocess
    import sys

    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "fake.mp4").write_text("hi")
    np.save(tmp_path / "ep.npy", np.zeros((4, 32, 32, 3), np.uint8))
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    # no network: the hub endpoint refuses connections at once; an empty cache
    env.update(OMP_NUM_THREADS="1", HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"),
               HF_HUB_ETAG_TIMEOUT="2", HF_HUB_DOWNLOAD_TIMEOUT="2")
    cases = {
        "notes.txt": ["--model", "tiny"],
        "fake.mp4": ["--model", "tiny"],
        "ep.npy": ["--model", "robometer/Robometer-4B"],
    }
    expected = {
        "notes.txt": "unsupported video type '.txt'",
        "fake.mp4": "OpenCV cannot open",
        "ep.npy": "is not in the local Hugging Face cache and the hub at http://127.0.0.1:9 could not be reached",
    }
    for name, extra in cases.items():
        done = subprocess.run([sys.executable, "-m", "rlrm", "score", str(tmp_path / name), "--task", "reach", *extra],
                              capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 2, done.stderr[-3000:]
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr[-3000:]
        assert lines[0].startswith("rlrm score: ") and expected[name] in lines[0], lines[0]
        assert "OFFLINE" not in lines[0]  # neither HF_HUB_OFFLINE nor TRANSFORMERS_OFFLINE was set


def test_table_title_is_one_unbroken_line(tmp_path, capsys):
    """A long task wrapped at the 4-column table's width, mid-phrase; the title now has its own line."""
    np.save(tmp_path / "ep.npy", np.zeros((4, 32, 32, 3), np.uint8))
    task = "pick up the red block on the left and place it gently inside the blue bowl on the right"
    assert main(["score", str(tmp_path / "ep.npy"), "--task", task, "--model", "tiny", "--max-frames", "2"]) == 0
    assert f"ep.npy: {task} (model tiny)" in capsys.readouterr().out.splitlines()
