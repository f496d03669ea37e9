"""Trajectory on-disk format and the pair / view samplers."""

import json

import numpy as np
import pytest

from rlrm.train.data import Trajectory, TrajectoryDataset, load_dataset, read_trajectory, write_trajectory
from rlrm.train.pairs import (
    SampleMixer,
    different_instruction_view,
    different_task_pair,
    forward_view,
    rewind_pair,
    rewind_view,
    suboptimal_pair,
)


def make_traj(quality="success", t=20, task="reach the red target", task_id="reach", eid=None, size=8):
    """Frame i is filled with value i so tests can read which frames a view picked."""
    frames = np.broadcast_to(np.arange(t, dtype=np.uint8)[:, None, None, None], (t, size, size, 3)).copy()
    progress = np.linspace(0, 1, t, dtype=np.float32) if quality == "success" else np.linspace(0, 0.4, t)
    success = (progress >= 1.0).astype(np.float32)
    return Trajectory(frames, task, quality, progress, success, task_id=task_id, episode_id=eid or f"{quality}_{t}")


@pytest.mark.parametrize("fmt", ["npz", "npy", "mp4"])
def test_write_read_roundtrip(tmp_path, fmt):
    traj = make_traj(size=32)
    folder = write_trajectory(traj, tmp_path, frames_format=fmt)
    back = read_trajectory(folder)
    assert back.task == traj.task and back.quality == "success" and back.task_id == "reach"
    np.testing.assert_allclose(back.progress, traj.progress, atol=1e-6)
    np.testing.assert_array_equal(back.success, traj.success)
    if fmt == "mp4":  # lossy
        assert back.frames.shape == traj.frames.shape
        assert np.abs(back.frames.astype(int) - traj.frames).mean() < 3
    else:
        np.testing.assert_array_equal(back.frames, traj.frames)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["format"] == "rlrm-trajectory/1" and meta["num_frames"] == 20


def test_dataset_reads_metadata_up_front_and_frames_lazily(tmp_path):
    for q in ("success", "failure", "suboptimal"):
        write_trajectory(make_traj(q, eid=f"ep_{q}"), tmp_path)
    ds = load_dataset(tmp_path)
    assert isinstance(ds, TrajectoryDataset) and len(ds) == 3
    assert ds.qualities() == ["failure", "suboptimal", "success"]  # sorted by folder name
    assert ds[2].quality == "success" and ds[-1].episode_id == "ep_success"
    with pytest.raises(IndexError, match="out of range"):
        ds[3]


def test_bad_data_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="quality must be one of"):
        make_traj("great")
    with pytest.raises(ValueError, match=r"progress must have shape \(20,\)"):
        Trajectory(make_traj().frames, "t", "success", progress=np.zeros(5))
    with pytest.raises(ValueError, match="no trajectory folders"):
        TrajectoryDataset(tmp_path)
    with pytest.raises(ValueError, match="frames must be uint8"):
        Trajectory(np.zeros((3, 8, 8, 3), np.float32), "t", "success")


def test_default_labels_for_unlabelled_episodes():
    t = Trajectory(np.zeros((5, 4, 4, 3), np.uint8), "reach", "success")
    assert t.progress_targets().tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert t.success_labels().tolist() == [0, 0, 0, 0, 1]
    f = Trajectory(np.zeros((5, 4, 4, 3), np.uint8), "reach", "failure")
    assert f.progress_targets().tolist() == [0] * 5 and f.success_labels().tolist() == [0] * 5


def test_forward_view_is_a_prefix_sampled_like_the_dense_reward():
    rng = np.random.default_rng(0)
    traj = make_traj(t=30)
    for _ in range(20):
        v = forward_view(traj, rng, max_frames=8)
        idx = v.frame_index
        assert idx[0] == 0 and len(idx) <= 8 and np.all(np.diff(idx) > 0)
        np.testing.assert_array_equal(v.frames[:, 0, 0, 0], idx)  # frame i holds value i
        np.testing.assert_allclose(v.target_progress, traj.progress[idx])
        assert v.progress_is_target and not v.unsuccessful and v.strategy == "forward"
    failed = forward_view(make_traj("failure"), rng)
    assert not failed.progress_is_target and failed.unsuccessful
    # with stored true progress, "labelled" makes failed episodes progress targets too
    labelled = forward_view(make_traj("failure"), rng, progress_on="labelled")
    assert labelled.progress_is_target and labelled.unsuccessful
    with pytest.raises(ValueError, match="progress_on must be one of"):
        forward_view(traj, rng, progress_on="all")


def test_rewind_view_goes_forward_then_back():
    rng = np.random.default_rng(1)
    traj = make_traj(t=30)
    for _ in range(20):
        v = rewind_view(traj, rng, max_frames=8)
        idx = v.frame_index
        turn = int(np.argmax(idx))
        assert idx[0] == 0 and 0 < turn < len(idx) - 1
        assert np.all(np.diff(idx[: turn + 1]) > 0) and np.all(np.diff(idx[turn:]) < 0)
        np.testing.assert_allclose(v.target_progress, traj.progress[idx])
        assert v.progress_is_target and v.strategy == "rewind"
    with pytest.raises(ValueError, match="at least 3 frames"):
        rewind_view(make_traj(t=2), rng)


def test_different_instruction_view_has_zero_progress_and_success():
    v = different_instruction_view(make_traj(), "open the drawer", np.random.default_rng(0))
    assert v.task == "open the drawer" and v.strategy == "different_instruction"
    assert not v.target_progress.any() and not v.success.any()
    assert v.progress_is_target and v.unsuccessful
    with pytest.raises(ValueError, match="must differ"):
        different_instruction_view(make_traj(), "reach the red target", np.random.default_rng(0))


def test_suboptimal_pair():
    good, bad = make_traj("success", t=20), make_traj("failure", t=25, task="touch the red dot")
    pair = suboptimal_pair(good, bad, max_frames=8)
    assert pair.strategy == "suboptimal"
    assert pair.chosen.frame_index[-1] == 19 and pair.rejected.frame_index[-1] == 24  # whole episodes
    assert pair.rejected.task == good.task  # one instruction for both sides
    with pytest.raises(ValueError, match="same task_id"):
        suboptimal_pair(good, make_traj("failure", task_id="push"))
    with pytest.raises(ValueError, match="must be successful"):
        suboptimal_pair(bad, good)


def test_rewind_pair_and_label_order():
    rng = np.random.default_rng(0)
    pair = rewind_pair(make_traj(t=30), rng)
    assert pair.strategy == "rewind" and pair.rejected.strategy == "rewind"
    assert pair.chosen.frame_index[-1] == 29
    labels = []
    for _ in range(50):
        a, b, label = pair.ordered(rng)
        assert (a is pair.chosen) == (label == 1.0) and (b is pair.chosen) == (label == 0.0)
        labels.append(label)
    assert 0 < np.mean(labels) < 1


def test_different_task_pair():
    other = make_traj("success", task="push the block", task_id="push")
    pair = different_task_pair(make_traj(), other)
    assert pair.rejected.task == "reach the red target"
    assert not pair.rejected.target_progress.any() and pair.rejected.progress_is_target
    with pytest.raises(ValueError, match="another task_id"):
        different_task_pair(make_traj(), make_traj("failure"))


def test_mixer_draws_every_strategy_and_drops_unsupported_ones():
    trajs = [make_traj("success", eid=f"s{i}") for i in range(3)] + [make_traj("failure", eid="f")]
    mixer = SampleMixer(trajs, max_frames=6, distractor_instructions=["open the drawer"], seed=0)
    assert set(mixer.pair_ratios) == {"suboptimal", "rewind"}  # one task: no different-task pairs
    seen = {mixer.progress_sample().strategy for _ in range(60)}
    assert seen == {"forward", "rewind", "different_instruction"}
    pairs = {mixer.pair_sample().strategy for _ in range(30)}
    assert pairs == {"suboptimal", "rewind"}
    two_tasks = trajs + [make_traj("failure", task="push the block", task_id="push", eid="p")]
    mixer2 = SampleMixer(two_tasks, seed=0)
    assert "different_task" in {mixer2.pair_sample().strategy for _ in range(40)}
    # same seed, same stream
    a = SampleMixer(trajs, seed=3).progress_batch(5)
    b = SampleMixer(trajs, seed=3).progress_batch(5)
    assert [x.frame_index.tolist() for x in a] == [x.frame_index.tolist() for x in b]
    with pytest.raises(ValueError, match="no successful episodes"):
        SampleMixer([make_traj("failure")])
    with pytest.raises(ValueError, match="unknown sampling strategies"):
        SampleMixer(trajs, pair_ratios={"sideways": 1.0})
