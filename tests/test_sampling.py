"""rlrm.sampling.sample_indices: the prefix (published dense-reward) and window rules."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlrm.sampling import sample_indices


def test_prefix_matches_published_recipe():
    # first, current and a rounded linspace between
    assert sample_indices(20, 8).tolist() == np.rint(np.linspace(0, 19, 8)).astype(int).tolist()
    assert sample_indices(20, 8).tolist() == [0, 3, 5, 8, 11, 14, 16, 19]
    assert sample_indices(1, 8).tolist() == [0]
    assert sample_indices(8, 8).tolist() == list(range(8))
    assert sample_indices(9, 8).tolist() == [0, 1, 2, 3, 5, 6, 7, 8]


def test_window_is_last_max_frames():
    assert sample_indices(20, 8, "window").tolist() == list(range(12, 20))
    assert sample_indices(3, 8, "window").tolist() == [0, 1, 2]
    assert sample_indices(5, 1, "window").tolist() == [4]


@given(n=st.integers(1, 3000), m=st.integers(2, 64))
def test_prefix_properties(n, m):
    idx = sample_indices(n, m, "prefix")
    assert idx.dtype == np.int64
    assert idx[0] == 0 and idx[-1] == n - 1
    assert len(idx) == min(n, m)
    assert np.all(np.diff(idx) > 0)


@given(n=st.integers(1, 3000), m=st.integers(1, 64))
def test_window_properties(n, m):
    idx = sample_indices(n, m, "window")
    assert idx[-1] == n - 1 and len(idx) == min(n, m)
    assert np.all(np.diff(idx) == 1)


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 8), "num_frames must be an int >= 1"),
        ((5, 0), "max_frames must be an int >= 1"),
        ((5, 1, "prefix"), "max_frames must be >= 2"),
        ((5, 8, "uniform"), "one of ('prefix', 'window'), got 'uniform'"),
        ((5.0, 8), "got 5.0"),
    ],
)
def test_bad_arguments_are_named(args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sample_indices(*args)
