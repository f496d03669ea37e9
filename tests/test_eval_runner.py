"""`rlrm eval` on the tiny model: scoring modes, report, JSON and plots."""

import json

import numpy as np
import pytest

from rlrm.cli import main
from rlrm.evaluate.runner import evaluate, instruction_confusion, score_dataset
from rlrm.sampling import sample_indices
from rlrm.train.data import Trajectory, write_trajectory
from rlrm.types import RewardQuery


def episode(quality, seed, task="reach the red dot", task_id="reach", t=12):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (t, 64, 64, 3), dtype=np.uint8)
    progress = np.linspace(0, 1, t) if quality == "success" else np.linspace(0, 0.3, t)
    return Trajectory(frames, task, quality, progress, (progress >= 1).astype(np.float32), task_id=task_id,
                      episode_id=f"{task_id}_{quality}_{seed}")


@pytest.fixture(scope="module")
def trajectories():
    return [episode("success", 0), episode("success", 1), episode("suboptimal", 2), episode("failure", 3),
            episode("success", 4, task="push the block", task_id="push"), episode("failure", 5, "push the block", "push")]


def test_full_mode_scores_each_episode_once_with_prefix_sampling(tiny_model, trajectories):
    scores = score_dataset(tiny_model, trajectories[:2], mode="full", max_frames=5, progress_bar=False)
    idx = sample_indices(12, 5, "prefix")
    np.testing.assert_array_equal(scores[0].frame_index, idx)
    direct = tiny_model.score([RewardQuery(trajectories[0].frames[idx], trajectories[0].task)])[0]
    np.testing.assert_allclose(scores[0].progress, direct.progress, atol=1e-5)
    np.testing.assert_allclose(scores[0].true_progress, trajectories[0].progress[idx])


def test_dense_mode_is_what_the_rl_wrapper_sees(tiny_model, trajectories):
    traj = trajectories[0]
    scores = score_dataset(tiny_model, [traj], mode="dense", max_frames=4, progress_bar=False)[0]
    assert scores.frame_index.tolist() == list(range(12))
    for t in (0, 5, 11):
        sub = sample_indices(t + 1, 4, "prefix")
        last = tiny_model.score([RewardQuery(traj.frames[sub], traj.task)])[0]
        assert scores.progress[t] == pytest.approx(float(last.progress[-1]), abs=1e-5)
        assert scores.success[t] == pytest.approx(float(last.success[-1]), abs=1e-5)
    with pytest.raises(ValueError, match="mode must be one of"):
        score_dataset(tiny_model, [traj], mode="sparse")


def test_confusion_rows_are_tasks_and_columns_instructions(tiny_model, trajectories):
    matrix, rows, cols = instruction_confusion(tiny_model, trajectories, extra_instructions=["open the drawer"],
                                               max_frames=4)
    assert rows == ["push", "reach"] and cols == ["push the block", "reach the red dot", "open the drawer"]
    assert matrix.shape == (2, 3) and np.all((matrix >= 0) & (matrix <= 1))


def test_report_metrics_are_consistent(tiny_model, trajectories):
    report, scores = evaluate(tiny_model, trajectories, max_frames=4, progress_bar=False)
    assert report.num_trajectories == 6 and len(report.trajectories) == 6
    assert -1 <= report.voc <= 1 and set(report.kendall_tau_a) == {"push", "reach"}
    assert 0 <= report.success_f1 <= 1 and 0 <= report.success_auprc <= 1
    assert set(report.final_progress_by_quality) == {"success", "suboptimal", "failure"}
    assert report.confusion["rows"] == ["push", "reach"]
    json.dumps(report.summary())  # JSON-ready


def test_eval_cli_writes_json_and_plots(tmp_path, trajectories, capsys):
    data = tmp_path / "data"
    for t in trajectories:
        write_trajectory(t, data)
    out = tmp_path / "eval.json"
    rc = main(["eval", str(data), "--model", "tiny", "--json", str(out), "--plots", str(tmp_path / "plots"),
               "--max-frames", "4", "--instructions", "open the drawer"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "VOC" in printed and "Kendall" in printed and "AUPRC" in printed
    report = json.loads(out.read_text())
    assert report["summary"]["num_trajectories"] == 6 and len(report["trajectories"]) == 6
    assert (tmp_path / "plots" / "curves.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "confusion.png").stat().st_size > 1000
