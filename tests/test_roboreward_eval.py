"""`rlrm eval --bench roboreward`: a synthetic RoboRewardBench written with OpenCV, MAE on the 1-5 scale per subset
and over subsets, reliability, for both model families; the same metrics on rlrm's own trajectories."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from rlrm.cli import main
from rlrm.evaluate.bench import read_roboreward_bench
from rlrm.evaluate.metrics import mae_by_group, reliability
from rlrm.models import make_reward_model
from rlrm.models.roboreward import video_frame_indices
from rlrm.train.data import Trajectory, read_video, write_trajectory
from rlrm.types import RewardQuery

# subset -> (frames, reward) per example: subsets of different sizes, so the mean over subsets differs from
# the mean over examples
BENCH = {"franka_sim": [(12, 1), (30, 5), (7, 3)], "so101_real": [(20, 4), (3, 2)]}
TASKS = {"franka_sim": "open the drawer", "so101_real": "push the green block to the goal"}


def _write_mp4(path, frames, fps):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames.shape[2], frames.shape[1]))
    assert writer.isOpened()
    for f in frames:
        writer.write(np.ascontiguousarray(f[:, :, ::-1]))
    writer.release()


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("roborewardbench")
    rng = np.random.default_rng(0)
    for subset, rows in BENCH.items():
        (root / subset).mkdir()
        lines = []
        for i, (t, reward) in enumerate(rows):
            base = rng.integers(0, 255, (t, 8, 10, 3)).astype(np.uint8)
            frames = np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)  # 64x80, blocky: survives mp4 compression
            _write_mp4(root / subset / f"ep{i}.mp4", frames, fps=10)
            lines.append(json.dumps({"file_name": f"ep{i}.mp4", "task": TASKS[subset], "reward": reward}))
        (root / subset / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _expected(model, root) -> tuple[dict, float]:
    """MAE computed directly: decode each mp4, the same frames, the model's final score on the 1-5 scale."""
    errors = {}
    for subset, rows in BENCH.items():
        errs = []
        for i, (_, reward) in enumerate(rows):
            frames = read_video(root / subset / f"ep{i}.mp4")
            idx = video_frame_indices(len(frames), 10.0, 2.0, 4, model.info().max_frames)
            p = float(model.score([RewardQuery(frames[idx], TASKS[subset])])[0].progress[-1])
            errs.append(abs(1 + 4 * p - reward))
        errors[subset] = float(np.mean(errs))
    return errors, float(np.mean(list(errors.values())))


@pytest.mark.parametrize("spec", ["roboreward:tiny", "tiny"])
def test_bench_cli_reports_the_mae_it_should(bench, tmp_path, capsys, spec):
    out = tmp_path / "bench.json"
    rc = main(["eval", "--bench", "roboreward", str(bench), "--model", spec, "--json", str(out),
               "--plots", str(tmp_path / "plots")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "MAE 1-5 (mean over groups)" in printed and "MAE franka_sim" in printed
    report = json.loads(out.read_text())["summary"]
    per_subset, overall = _expected(make_reward_model(spec, seed=0), bench)
    assert report["num_examples"] == 5
    assert report["mae_per_subset"] == pytest.approx(per_subset, abs=1e-4)
    assert report["mae"] == pytest.approx(overall, abs=1e-4)
    assert report["mae"] != pytest.approx(report["mae_all"], abs=1e-3)  # subsets weigh equally, not examples
    assert sum(report["success_reliability"]["count"]) == 5
    assert (tmp_path / "plots" / "reliability.png").stat().st_size > 1000


def test_bench_reader_names_bad_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.jsonl"):
        read_roboreward_bench(tmp_path)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "metadata.jsonl").write_text(json.dumps({"file_name": "a.mp4", "task": "x", "reward": 7}))
    with pytest.raises(ValueError, match="reward 7; expected a score in 1..5"):
        read_roboreward_bench(tmp_path)
    (tmp_path / "s" / "metadata.jsonl").write_text(json.dumps({"file_name": "a.mp4", "task": "x", "reward": 3}))
    with pytest.raises(FileNotFoundError, match="names 'a.mp4'"):
        read_roboreward_bench(tmp_path)
    (tmp_path / "s" / "metadata.jsonl").write_text(json.dumps({"file_name": "a.mp4", "reward": 3}))
    with pytest.raises(ValueError, match=r"lacks \['task'\]"):
        read_roboreward_bench(tmp_path)


def test_an_unreadable_video_is_named(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "a.mp4").write_bytes(b"not a video")
    (tmp_path / "s" / "metadata.jsonl").write_text(json.dumps({"file_name": "a.mp4", "task": "x", "reward": 3}))
    with pytest.raises(ValueError, match="OpenCV read no frames from .*a.mp4"):
        main(["eval", "--bench", "roboreward", str(tmp_path), "--model", "roboreward:tiny"])


def test_metrics_by_hand():
    per, overall = mae_by_group([1.0, 2.0, 5.0, 3.0], [1.0, 4.0, 4.0, 3.0], ["a", "a", "b", "b"])
    assert per == {"a": 1.0, "b": 0.5} and overall == 0.75
    r = reliability([0.05, 0.15, 0.95, 0.85], [0, 1, 1, 1], bins=2)
    assert r["count"] == [2, 2] and r["frequency"] == [0.5, 1.0]
    assert r["ece"] == pytest.approx(0.5 * abs(0.1 - 0.5) + 0.5 * abs(0.9 - 1.0))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        reliability([1.5], [1])


def test_trajectory_format_gets_the_same_final_score_metrics(tmp_path, capsys):
    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    for i, final in enumerate([1.0, 0.25, 1.0, 0.5]):
        progress = np.linspace(0, final, 10).astype(np.float32)
        quality = "success" if final == 1.0 else "failure"
        write_trajectory(Trajectory(rng.integers(0, 255, (10, 64, 64, 3), dtype=np.uint8), "reach the red dot",
                                    quality, progress, (progress >= 1).astype(np.float32), task_id="reach",
                                    episode_id=f"ep{i}"), data)
    out = tmp_path / "eval.json"
    assert main(["eval", str(data), "--model", "roboreward:tiny", "--json", str(out), "--no-confusion"]) == 0
    assert "MAE 1-5" in capsys.readouterr().out
    report = json.loads(out.read_text())
    examples = report["final_score_examples"]
    assert [e["reward"] for e in examples] == [5.0, 2.0, 5.0, 3.0]  # 1 + 4 x final true progress
    mae = np.mean([abs(e["predicted"] - e["reward"]) for e in examples])
    assert report["final_scores"]["mae"] == pytest.approx(mae, abs=1e-3)
