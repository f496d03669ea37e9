"""LeRobotPolicy against the installed LeRobot (in its own venv): same actions as LeRobot's own pipeline."""

from __future__ import annotations

import subprocess
import sys

import pytest
from lerobot_support import REPO, run_in_lerobot_venv

from rlrm.bridges.lerobot_policy import lerobot_feature_sources


@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_saved_policy_acts_as_lerobot_pipeline(kind, tmp_path):
    """50 observations, chunk boundaries every 8 steps and a new episode mid-chunk: within 1e-5 of LeRobot."""
    out = run_in_lerobot_venv("policy_parity.py", kind, tmp_path / kind, 50)
    assert out["n"] == 50 and out["action_shape"] == [50, 4]
    assert out["max_abs_diff"] <= 1e-5, out
    # the statistics matter: skipping the processors (the old adapter) is far off, so the test can fail
    assert out["unprocessed_gap"] > 0.5, out
    assert out["distinct_actions"] == 50, out
    errors = out["errors"]  # bad observations fail naming the feature, the expected and the given shape
    assert "'observation.images.front'" in errors["wrong_image"] and "(64, 64, 3)" in errors["wrong_image"]
    assert "(32, 32, 3)" in errors["wrong_image"]
    assert "'observation.state'" in errors["wrong_state"] and "(6,)" in errors["wrong_state"]
    assert "(7,)" in errors["wrong_state"]
    assert "observation.images.front" in errors["missing"] and "no source" in errors["missing"]
    saved = sorted(p.name for p in (tmp_path / kind).iterdir())
    assert "policy_preprocessor.json" in saved and "policy_postprocessor.json" in saved


def test_lerobot_policy_as_residual_base_resets_per_episode(tmp_path):
    """make_base_policy(kind="lerobot") under ResidualAction on a real env: every base action is LeRobot's."""
    out = run_in_lerobot_venv("residual_base.py", tmp_path / "act")
    assert out["episodes"] == 3 and out["steps"] == 39
    assert out["max_abs_diff"] <= 1e-5, out
    assert "outputs actions of shape (1,), but the env's action space is (2,)" in out["shape_error"]


def test_feature_sources_default_mapping_and_errors():
    features = {"observation.images.front": ((3, 8, 8), True), "observation.state": ((4,), False)}
    assert lerobot_feature_sources(features, None, ["front", "state", "achieved_goal"]) == {
        "observation.images.front": "front", "observation.state": "state"}
    assert lerobot_feature_sources(features, {"observation.state": "observation"}, ["front", "observation"]) == {
        "observation.images.front": "front", "observation.state": "observation"}
    with pytest.raises(ValueError, match=r"'observation.images.front'.*no source in the observation.*\['state'\]"):
        lerobot_feature_sources(features, None, ["state"])
    with pytest.raises(ValueError, match=r"obs_keys names \['observation.images.wrist'\]"):
        lerobot_feature_sources(features, {"observation.images.wrist": "wrist"}, ["front", "state"])
    with pytest.raises(ValueError, match="non-dict observation can feed one input feature"):
        lerobot_feature_sources(features, None, None)
    assert lerobot_feature_sources({"observation.state": ((4,), False)}, None, None) == {"observation.state": None}
    # gymnasium-robotics' "observation" key feeds observation.state (how record.dataset stores it)
    assert lerobot_feature_sources({"observation.state": ((4,), False)}, None, ["observation", "desired_goal"]) == {
        "observation.state": "observation"}


def test_rlrm_never_imports_lerobot_at_import_time():
    code = ("import sys, rlrm, rlrm.bridges.lerobot_policy, rlrm.bridges.lerobot_dataset, rlrm.rl.residual, rlrm.train.lerobot_data; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lerobot', 'torchvision')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_lerobot_names_the_extra():
    import importlib.util

    if importlib.util.find_spec("lerobot") is not None:
        pytest.skip("lerobot is installed in this venv")
    import gymnasium as gym

    from rlrm.rl.residual import make_base_policy

    with pytest.raises(ImportError, match=r"rlrm\[lerobot\]"):
        make_base_policy({"kind": "lerobot", "path": "some/dir"}, gym.spaces.Box(-1, 1, (4,)))
