"""Property tests are reproducible by default: the ``ci`` hypothesis profile derandomizes, ``dev`` explores."""

import os

import pytest
from conftest import hypothesis_profile
from hypothesis import settings


def test_ci_profile_is_derandomized_and_dev_is_random():
    assert settings.get_profile("ci").derandomize is True
    assert settings.get_profile("ci").database is None
    assert settings.get_profile("dev").derandomize is False


@pytest.mark.parametrize(
    ("environ", "profile"),
    [({}, "ci"), ({"CI": "true"}, "ci"), ({"HYPOTHESIS_PROFILE": "dev"}, "dev"),
     ({"CI": "1", "HYPOTHESIS_PROFILE": "dev"}, "ci")],
)
def test_profile_selection(environ, profile):
    assert hypothesis_profile(environ) == profile


@pytest.mark.skipif(hypothesis_profile(os.environ) != "ci", reason="HYPOTHESIS_PROFILE=dev asked for random runs")
def test_this_session_runs_property_tests_derandomized():
    assert settings.default.derandomize is True
