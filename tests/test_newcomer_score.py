"""`rlrm score` reads float and grayscale videos by their value range and layout, and its plot names the model."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from rlrm.cli import main
from rlrm.models.score_cli import coerce_frames, plot_scores, read_video, score_figure


def video_uint8(t=6, h=64, w=64):
    """Frames with a bright square moving over a gradient: values across the whole 0..255 range."""
    y, x = np.mgrid[0:h, 0:w]
    frames = np.repeat(np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 90)], -1)[None], t, 0).astype(np.uint8)
    for i in range(t):
        frames[i, 8 : 24, 6 * i : 6 * i + 16] = 255
    return frames


def test_float_frames_in_0_255_are_read_as_0_255_not_saturated(caplog):
    frames = video_uint8()
    with caplog.at_level(logging.WARNING, logger="rlrm.models.score_cli"):
        got = coerce_frames(frames.astype(np.float32), name="ep.npy contents")
    np.testing.assert_array_equal(got, frames)
    assert "float32 values in [0, 255] read as 0..255" in caplog.text
    assert "frames.round().astype(np.uint8)" in caplog.text and "clip(frames, 0, 1)" not in caplog.text


def test_float_frames_in_0_1_and_minus1_1_are_rescaled():
    frames = video_uint8()
    np.testing.assert_array_equal(coerce_frames(frames / 255.0), frames)
    np.testing.assert_allclose(coerce_frames(frames / 127.5 - 1.0).astype(int), frames.astype(int), atol=1)


@pytest.mark.parametrize("layout", ["(T,H,W)", "(T,H,W,1)"])
def test_grayscale_frames_get_three_equal_channels(layout, caplog):
    gray = video_uint8()[..., 0]
    arr = gray if layout == "(T,H,W)" else gray[..., None]
    with caplog.at_level(logging.WARNING, logger="rlrm.models.score_cli"):
        got = coerce_frames(arr)
    assert got.shape == (*gray.shape, 3) and got.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], gray)
    assert f"grayscale {layout}" in caplog.text and "frames[None]" not in caplog.text


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 3, 8, 8), np.float32), r"looks channel-first: use frames.transpose\(0, 2, 3, 1\)"),
        (np.zeros((8, 8, 3), np.uint8), r"one \(H,W,3\) image; for a 1-frame video use frames\[None\]"),
        (np.full((2, 8, 8, 3), 300.0), r"values in \[300, 300\]; expected uint8 0..255"),
        (np.full((2, 8, 8, 3), 1000, np.uint16), r"values in \[1000, 1000\]"),
        (np.full((2, 8, 8, 3), np.nan, np.float32), r"NaN or inf"),
    ],
)
def test_ambiguous_or_out_of_range_frames_are_refused_with_the_fix(array, message):
    with pytest.raises(ValueError, match=message):
        coerce_frames(array)


def test_score_cli_scores_a_float_npy_like_its_uint8_video(tmp_path, tiny_model):
    frames = video_uint8()
    np.save(tmp_path / "float.npy", frames.astype(np.float64))
    out = tmp_path / "scores.json"
    assert main(["score", str(tmp_path / "float.npy"), "--task", "reach", "--model", "tiny", "--json", str(out)]) == 0
    read, _ = read_video(tmp_path / "float.npy")
    np.testing.assert_array_equal(read, frames)


def test_plot_names_the_model_and_warns_about_random_weights(tmp_path, caplog):
    np.save(tmp_path / "ep.npy", video_uint8())
    with caplog.at_level(logging.WARNING, logger="rlrm.models.score_cli"):
        assert main(["score", str(tmp_path / "ep.npy"), "--task", "reach", "--model", "tiny", "--max-frames", "4",
                     "--plot", str(tmp_path / "p.png")]) == 0
    assert "model 'tiny' has random weights" in caplog.text
    assert (tmp_path / "p.png").exists()
    idx = np.arange(4)
    fig = score_figure(video_uint8(), idx, np.zeros(4), np.zeros(4), "reach", model="tiny")
    titles = [ax.get_title() for ax in fig.axes]
    assert "model: tiny (random weights: these scores mean nothing)" in titles
    fig = score_figure(video_uint8(), idx, np.zeros(4), np.zeros(4), "reach", model="robometer/Robometer-4B")
    assert "model: robometer/Robometer-4B" in [ax.get_title() for ax in fig.axes]


def test_coinciding_curves_both_stay_visible(tmp_path):
    frames = video_uint8(8)
    idx = np.arange(8)
    same = np.full(8, 0.1)  # low on the axes, far from the legend in the upper left
    png = cv2.cvtColor(cv2.imread(str(plot_scores(tmp_path / "same.png", frames, idx, same, same.copy(), "reach"))),
                       cv2.COLOR_BGR2RGB).astype(int)
    curves = png[int(png.shape[0] * 0.6):]  # below the thumbnails and the legend

    def pixels(rgb):
        return int((np.abs(curves - np.array(rgb)).sum(-1) < 60).sum())

    green, orange = pixels((44, 160, 44)), pixels((255, 127, 14))  # tab:green progress, tab:orange success
    assert green > 300 and orange > 300, (green, orange)
