"""RewardVideoRecorder and write_reward_video: one video frame per step, curves drawn, PNG written."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from wrappers_support import TASK, fetch_env

from rlrm.shaping import SuccessDetector
from rlrm.wrappers import RewardVideoRecorder, RobometerReward, SuccessTermination, write_reward_video


def _count_frames(path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n


def test_recorder_writes_every_nth_episode_one_frame_per_step(tiny_model, tmp_path):
    env = RobometerReward(fetch_env(max_episode_steps=4), TASK, tiny_model, every=2, success=None)
    env = SuccessTermination(env, SuccessDetector(threshold=0.99))  # the recorder sits on top of either
    env = RewardVideoRecorder(env, tmp_path, every_n_episodes=2, fps=8)
    lengths = []
    for episode in range(3):
        env.reset(seed=episode)
        steps, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step(np.full(4, 0.3 * (episode - 1), np.float32))
            steps += 1
            done = terminated or truncated
        lengths.append(steps)
    env.close()
    videos = sorted(tmp_path.glob("*.mp4"))
    assert [v.name for v in videos] == ["episode-00000.mp4", "episode-00002.mp4"]
    assert [_count_frames(v) for v in videos] == [lengths[0], lengths[2]] == [4, 4]
    png = cv2.imread(str(tmp_path / "episode-00000.png"))
    assert png is not None and png.shape[2] == 3
    assert [p.name for p in env.written] == ["episode-00000.mp4", "episode-00000.png",
                                             "episode-00002.mp4", "episode-00002.png"]


def test_video_shows_frames_above_the_curves(tmp_path):
    t, h, w = 6, 32, 40
    frames = np.zeros((t, h, w, 3), np.uint8)
    frames[..., 0] = 255  # pure red RGB frames
    path = write_reward_video(tmp_path / "ep.mp4", frames, np.linspace(0, 1, t), np.full(t, 0.2), threshold=0.65,
                              task="reach", fps=5)
    cap = cv2.VideoCapture(str(path))
    ok, last = None, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        last = frame
    scale = int(np.ceil(320 / w))
    top = last[20 : h * scale - 4, 4:-4].reshape(-1, 3).mean(0)  # BGR: red frame -> high R channel
    assert top[2] > 200 and top[0] < 60 and top[1] < 60
    panel = last[h * scale :]
    green = (panel[..., 1] > 150) & (panel[..., 0] < 120) & (panel[..., 2] < 140)
    assert green.sum() > 50  # the progress curve is drawn
    assert _count_frames(path) == t and path.with_suffix(".png").exists()


def test_write_reward_video_rejects_bad_input(tmp_path):
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="progress must have one value per frame \\(3\\), got 2"):
        write_reward_video(tmp_path / "a.mp4", frames, [0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="must end in .mp4, got"):
        write_reward_video(tmp_path / "a.avi", frames, [0.1] * 3, [0.1] * 3)
    with pytest.raises(ValueError, match="frames must be uint8 \\(T,H,W,3\\), got float32"):
        write_reward_video(tmp_path / "a.mp4", frames.astype(np.float32), [0.1] * 3, [0.1] * 3)
