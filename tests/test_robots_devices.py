"""Cameras (threaded latest-frame reader, stale check, crop/resize), teleop with injected events,
make_robot_env / configs, and ``python -m robots.check``."""

from __future__ import annotations

import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from robots import load_robot_config, make_robot_env
from robots.cameras import CameraConfig, OpenCVCamera, SimCamera, StaleFrameError, make_camera
from robots.check import check_robot
from robots.teleop import GamepadTeleop, KeyboardTeleop, make_teleop


# ---------------------------------------------------------------- cameras
def write_video(path, n=60, h=48, w=64):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
    for i in range(n):
        frame = np.full((h, w, 3), (i * 4) % 256, np.uint8)
        frame[:, : w // 2, 2] = 255  # left half red in BGR -> RGB red
        writer.write(frame)
    writer.release()


def test_opencv_camera_reads_latest_frame_in_background(tmp_path):
    path = tmp_path / "clip.avi"
    write_video(path, n=600)  # long enough that the reader thread is still replacing frames below
    cam = OpenCVCamera(CameraConfig(source=str(path), size=[24, 32], crop=[0, 0, 48, 32], max_age_s=5.0))
    cam.connect()
    try:
        frame = cam.read()
        assert frame.shape == (24, 32, 3) and frame.dtype == np.uint8
        assert frame[..., 0].mean() > 200  # crop kept the left (red) half, converted BGR -> RGB
        first = cam.timestamp
        deadline = time.monotonic() + 5
        while cam.timestamp == first and time.monotonic() < deadline:
            time.sleep(0.005)
        assert cam.timestamp > first  # the thread keeps replacing the frame
    finally:
        cam.disconnect()


def test_camera_stale_frame_check_with_injected_clock(tmp_path):
    path = tmp_path / "short.avi"
    write_video(path, n=3)
    now = [0.0]
    cam = OpenCVCamera(CameraConfig(source=str(path), size=[8, 8], max_age_s=0.5), clock=lambda: now[0])
    cam.connect()
    try:
        cam.read()
        now[0] += 10.0  # the file ended: no new frames, and time passes
        with pytest.raises(StaleFrameError, match="max_age_s=0.5"):
            cam.read()
    finally:
        cam.disconnect()


def test_missing_camera_and_bad_type_raise_clearly():
    with pytest.raises(ConnectionError, match="could not open camera source"):
        OpenCVCamera(CameraConfig(source="/nonexistent/video0")).connect()
    with pytest.raises(ValueError, match="camera type must be"):
        make_camera({"type": "kinect"})
    with pytest.raises(ValueError, match="needs a simulated backend"):
        make_camera({"type": "sim"})
    bad = SimCamera(lambda: np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        bad.read()


def test_realsense_without_package_names_the_extra():
    try:
        import pyrealsense2  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pyrealsense2"):
            make_camera({"type": "realsense"}).connect()
    else:
        pytest.skip("pyrealsense2 is installed here")


# ---------------------------------------------------------------- teleop
class FakePad:
    def __init__(self):
        self.axes = [0.0, 0.0, -1.0, 0.0, 0.0, -1.0]
        self.buttons = [0] * 8

    def get_axis(self, i):
        return self.axes[i]

    def get_button(self, i):
        return self.buttons[i]


def test_keyboard_teleop_events():
    kb = KeyboardTeleop("xyz_yaw")
    assert not kb.poll().active
    kb.press("space")
    kb.press("a")
    kb.press("e")
    kb.press("c")
    cmd = kb.poll()
    assert cmd.active and cmd.action.tolist() == [0.0, 1.0, 0.0, -1.0, -1.0]
    kb.release("a")
    kb.press("y")
    cmd = kb.poll()
    assert cmd.success and cmd.action[1] == 0.0
    assert not kb.poll().success  # one-shot
    kb.press("esc")
    assert kb.poll().stop


def test_keyboard_teleop_without_display_fails_clearly(monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("display check is Linux-specific")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(RuntimeError, match="needs a display"):
        KeyboardTeleop().start()


def test_gamepad_teleop_hold_to_intervene_and_buttons():
    pad = FakePad()
    gp = GamepadTeleop("xyz_yaw", device=pad)
    pad.axes[1] = -0.8  # left stick up
    assert not gp.poll().active
    pad.buttons[4] = 1  # hold LB
    pad.axes[5] = 1.0  # right trigger: close
    cmd = gp.poll()
    assert cmd.active and cmd.action[0] == pytest.approx(0.8) and cmd.action[-1] == -1.0
    pad.buttons[3] = 1  # Y
    assert gp.poll().success
    assert not gp.poll().success  # rising edge only
    pad.axes[1] = 0.05  # inside the deadzone
    assert gp.poll().action[0] == 0.0


def test_teleop_replaces_policy_action_and_marks_transitions():
    kb = make_teleop({"type": "keyboard"}, action_mode="xyz_yaw", device=object())
    env = make_robot_env("xarm", sim=True, sleep=lambda s: None)
    env.teleop = kb
    try:
        env.reset(seed=0)
        x0 = env.backend.read_state().pose.position[0]
        _, _, _, _, info = env.step(np.array([-1.0, 0, 0, 0, 1]))
        assert not info["intervention"] and not info["intervention_started"]
        kb.press("space")
        kb.press("w")  # +x while the policy asks for -x
        _, _, _, _, info = env.step(np.array([-1.0, 0, 0, 0, 1]))
        assert info["intervention"] and info["intervention_started"]
        assert info["policy_action"][0] == -1.0 and info["action"][0] > 0
        for _ in range(5):
            _, _, _, _, info = env.step(np.array([-1.0, 0, 0, 0, 1]))
        assert not info["intervention_started"]
        assert env.backend.read_state().pose.position[0] > x0
        kb.press("space")
        _, _, _, _, info = env.step(np.zeros(5))
        assert info["intervention_ended"] and not info["intervention"]
        kb.press("n")
        _, _, terminated, _, info = env.step(np.zeros(5))
        assert terminated and info["human_label"] == "failure" and info["is_success"] is False
        kb.press("esc")
        _, _, _, truncated, info = env.step(np.zeros(5))
        assert truncated and info["stopped"] and env.stopped
    finally:
        env.close()


# ---------------------------------------------------------------- configs, factory, check
@pytest.mark.parametrize("name", ["franka", "xarm", "so101"])
def test_robot_configs_load_and_validate(name):
    cfg = load_robot_config(name)
    assert cfg["name"] == name and cfg["env"]["task"]
    from robots.base import RobotEnvConfig

    RobotEnvConfig(**cfg["env"])
    sim = load_robot_config(name, sim=True, task="open the drawer", fps=5)
    assert sim["env"]["task"] == "open the drawer" and sim["env"]["fps"] == 5
    assert all(c["type"] == "sim" for c in sim["cameras"].values()) and sim["teleop"] is None


def test_make_robot_env_rejects_unknown_names_and_overrides():
    with pytest.raises(ValueError, match="robot must be one of"):
        make_robot_env("ur5", sim=True)
    with pytest.raises(TypeError, match="unknown override 'speed'"):
        make_robot_env("xarm", sim=True, speed=3)
    pytest.importorskip("scservo_sdk", reason="needs rlrm[robots] (feetech-servo-sdk)")
    with pytest.raises(ValueError, match="out of reach"):
        make_robot_env("so101", sim=True, safety={"workspace_high": [0.5, 0.08, 0.10]})


@pytest.mark.parametrize("name", ["xarm", "so101"])
def test_check_nudges_and_returns(name):
    if name == "so101":
        pytest.importorskip("scservo_sdk", reason="needs rlrm[robots] (feetech-servo-sdk)")
    report = check_robot(name, sim=True, mm=5.0, settle_s=0.0)
    assert report["moved"] and report["inside_workspace"]
    assert abs(report["moved_mm"][0]) == pytest.approx(5.0, abs=0.5)
    assert report["returned_within_mm"] < 1.0
    assert report["cameras"]["front"]["shape"] == [128, 128, 3]


def test_check_command_line():
    out = subprocess.run([sys.executable, "-m", "robots.check", "xarm", "--sim", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert '"moved": true' in out.stdout


@pytest.mark.parametrize(
    "module",
    ["robots.geometry", "robots.safety", "robots.backend", "robots.cameras", "robots.teleop", "robots.xarm",
     "robots.sim.kinematic", "robots.sim.fake_xarm", "robots.sim.render", "robots.base"],
)
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_configs_are_hydra_structured():
    from omegaconf import OmegaConf

    from robots.base import RobotEnvConfig
    from robots.franka import FrankaConfig
    from robots.so101 import SO101Config
    from robots.xarm import XArmConfig

    for name, cls in [("franka", FrankaConfig), ("xarm", XArmConfig), ("so101", SO101Config)]:
        cfg = load_robot_config(name)
        env = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RobotEnvConfig), cfg["env"]))
        assert isinstance(env, RobotEnvConfig) and env.task
        backend = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), cfg["backend"]))
        assert isinstance(backend, cls)
