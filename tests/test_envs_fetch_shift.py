"""FetchReach scene shifts for reward-model studies: another target colour, a moved camera."""

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers rlrm/FetchReach-v0)


def frame(**kwargs):
    env = gym.make("rlrm/FetchReach-v0", image_size=48, goal_marker="success_ball", **kwargs)
    env.reset(seed=3)
    out = env.unwrapped.render_camera("front"), env.render()
    env.close()
    return out


def test_colour_and_camera_shift_change_what_the_cameras_see():
    front, default = frame()
    blue_front, _ = frame(goal_rgba=[0.1, 0.3, 1.0, 0.5])
    moved_front, moved_default = frame(camera_offset={"azimuth": 25, "elevation": -12, "distance": 0.15})
    assert not np.array_equal(front, blue_front) and not np.array_equal(front, moved_front)
    assert not np.array_equal(default, moved_default)
    # the ball turned from red to blue: red minus blue over the image drops
    redness = lambda f: float(f[..., 0].astype(int).sum() - f[..., 2].astype(int).sum())  # noqa: E731
    assert redness(blue_front) < redness(front) - 100
    np.testing.assert_array_equal(frame()[0], front)  # unshifted stays as it was


def test_bad_shift_settings_are_refused():
    with pytest.raises(ValueError, match=r"goal_rgba must be 4 numbers"):
        frame(goal_rgba=[1, 0, 0])
    with pytest.raises(ValueError, match="camera_offset keys must be among"):
        frame(camera_offset={"yaw": 10})
