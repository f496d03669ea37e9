"""Reward videos show the env's own is_success beside the model's decision, and wrap long tasks (issue 17)."""

from __future__ import annotations

import cv2
import gymnasium as gym
import numpy as np

from rlrm.wrappers import RewardVideoRecorder, RobometerReward, write_reward_video
from rlrm.wrappers.video import wrap_text

T, H, W = 5, 32, 40
LONG_TASK = ("pick up the small red cube from the left side of the cluttered table, carry it over the blue "
             "bowl without touching the green mug, and place it gently inside the bowl next to the spoon")


def _frames(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame.astype(int))
    cap.release()
    return frames


def _video(tmp_path, name: str, **kwargs) -> list[np.ndarray]:
    frames = np.full((T, H, W, 3), 90, np.uint8)
    path = write_reward_video(tmp_path / f"{name}.mp4", frames, np.linspace(0, 1, T), np.full(T, 0.8),
                              threshold=0.65, curves_png=False, **kwargs)
    return _frames(path)


def _box_colour(frame: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Mean BGR of the pixels where ``frame`` differs from ``other`` (the only thing drawn differently)."""
    mask = np.abs(frame - other).sum(-1) > 120
    assert mask.sum() > 30, "the two videos do not differ"
    return frame[mask].mean(0)


def test_env_success_is_drawn_beside_the_model_decision(tmp_path):
    model = np.ones(T)  # the reward model says success throughout
    env_yes = _video(tmp_path, "yes", model_success=model, env_success=np.ones(T))[-1]
    env_no = _video(tmp_path, "no", model_success=model, env_success=np.zeros(T))[-1]  # a false positive
    no_signal = _video(tmp_path, "none", model_success=model)[-1]  # an env without is_success
    b, g, r = _box_colour(env_yes, env_no)
    assert g > r + 80 and g > b + 80  # green box: the env agrees
    b, g, r = _box_colour(env_no, env_yes)
    assert r > g + 80 and r > b + 80  # red box: the env says no while the model says yes
    assert np.abs(env_yes - no_signal).sum(-1).max() > 120  # with no env signal the env box is absent
    model_no = _video(tmp_path, "model_no", model_success=np.zeros(T), env_success=np.ones(T))[-1]
    b, g, r = _box_colour(model_no, env_yes)  # the model's own box, red, at another place
    assert r > g + 80 and r > b + 80
    assert not (np.abs(model_no - env_yes).sum(-1) > 120)[:, env_yes.shape[1] // 2:].any()  # left half: model


def _text_rows(with_task: np.ndarray, without: np.ndarray) -> np.ndarray:
    image_h = H * int(np.ceil(320 / W))
    return np.nonzero((np.abs(with_task - without).sum(-1) > 150)[:image_h].any(1))[0]


def test_long_task_texts_are_wrapped_not_cut(tmp_path):
    plain = _video(tmp_path, "plain")[0]
    short_rows = _text_rows(_video(tmp_path, "short", task="reach")[0], plain)
    long_rows = _text_rows(_video(tmp_path, "long", task=LONG_TASK)[0], plain)
    assert short_rows.max() - short_rows.min() < 14  # one line
    assert long_rows.max() - long_rows.min() >= 3 * 12  # four or more lines, none cut off

    lines = wrap_text(LONG_TASK, 312)
    assert " ".join(lines).split() == LONG_TASK.split() and len(lines) >= 4
    assert all(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)[0][0] <= 312 for line in lines)
    assert wrap_text("a" * 200, 100) == ["a" * len(p) for p in wrap_text("a" * 200, 100)]
    assert "".join(wrap_text("a" * 200, 100)) == "a" * 200  # a word wider than the line is split, not lost


class _ReportsSuccess(gym.Wrapper):
    """CartPole whose info says ``is_success`` from step ``from_step`` on (None: never reports it)."""

    def __init__(self, from_step: int | None) -> None:
        super().__init__(gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=4))
        self.from_step, self.t = from_step, 0

    def reset(self, **kwargs):
        self.t = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        if self.from_step is not None:
            info["is_success"] = self.t >= self.from_step
        return obs, reward, terminated, truncated, info


def _recorded(tmp_path, tiny_model, from_step: int | None) -> list[np.ndarray]:
    env = RobometerReward(_ReportsSuccess(from_step), "balance the pole", tiny_model, success=None)
    env = RewardVideoRecorder(env, tmp_path / str(from_step), fps=4)
    env.reset(seed=0)
    while not any(env.step(0)[2:4]):
        pass
    env.close()
    return _frames(env.written[0])


def test_recorder_passes_the_envs_is_success_into_the_video(tmp_path, tiny_model):
    late = _recorded(tmp_path, tiny_model, from_step=3)  # not yet at steps 1-2, success at steps 3-4
    never = _recorded(tmp_path, tiny_model, from_step=99)
    silent = _recorded(tmp_path, tiny_model, from_step=None)
    assert len(late) == len(never) == len(silent) == 4
    assert np.abs(late[0] - never[0]).max() < 40  # identical up to compression while both say "no"
    box = np.abs(late[-1] - never[-1]).sum(-1) > 120  # where the env's verdict is drawn
    b, g, r = late[-1][box].mean(0)
    assert g > r + 80 and g > b + 80  # the last frame's env box turned green
    b, g, r = never[-1][box].mean(0)
    assert r > g + 80 and r > b + 80  # an env that reports no success: red
    b, g, r = silent[-1][box].mean(0)
    assert max(b, g, r) - min(b, g, r) < 40  # an env without is_success: no box at all
