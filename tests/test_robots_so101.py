"""SO-101: LeRobot calibration files and normalisation, the Feetech packet protocol against the
emulated STS3215 bus (through the real scservo_sdk), kinematics, servo-side limits and recovery."""

from __future__ import annotations

import json

import numpy as np
import pytest

scs = pytest.importorskip("scservo_sdk", reason="needs rlrm[robots] (feetech-servo-sdk)")

from robots.backend import ControllerError  # noqa: E402
from robots.feetech import (  # noqa: E402
    FeetechBus,
    MotorCalibration,
    decode_sign_magnitude,
    encode_sign_magnitude,
    load_calibration,
    normalize,
    save_calibration,
    unnormalize,
)
from robots.geometry import EEPose  # noqa: E402
from robots.sim.feetech_bus import ERRBIT_OVERLOAD, EmulatedServoPort  # noqa: E402
from robots.sim.so101_sim import SIM_HOMING_OFFSET, sim_calibration, sim_port_at  # noqa: E402
from robots.so101 import BODY, SO101_MOTORS, SO101Backend, SO101Config, SO101Kinematics  # noqa: E402

# the layout `lerobot-calibrate --robot.type=so101_follower` writes
LEROBOT_CALIBRATION = {
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1487, "range_min": 758, "range_max": 3292},
    "shoulder_lift": {"id": 2, "drive_mode": 0, "homing_offset": 1049, "range_min": 842, "range_max": 3238},
    "elbow_flex": {"id": 3, "drive_mode": 0, "homing_offset": -951, "range_min": 881, "range_max": 3124},
    "wrist_flex": {"id": 4, "drive_mode": 0, "homing_offset": 1063, "range_min": 880, "range_max": 3219},
    "wrist_roll": {"id": 5, "drive_mode": 0, "homing_offset": -1436, "range_min": 0, "range_max": 4095},
    "gripper": {"id": 6, "drive_mode": 0, "homing_offset": 1415, "range_min": 2031, "range_max": 3313},
}


def test_lerobot_calibration_file_loads_and_round_trips(tmp_path):
    path = tmp_path / "my_so101.json"
    path.write_text(json.dumps(LEROBOT_CALIBRATION, indent=4))
    calib = load_calibration(path)
    assert calib["elbow_flex"] == MotorCalibration(3, 0, -951, 881, 3124)
    save_calibration(calib, tmp_path / "copy.json")
    assert json.loads((tmp_path / "copy.json").read_text()) == LEROBOT_CALIBRATION
    with pytest.raises(FileNotFoundError, match="lerobot-calibrate"):
        load_calibration(tmp_path / "missing.json")
    bad = dict(LEROBOT_CALIBRATION, gripper={"id": 6, "drive_mode": 0})
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="gripper.*homing_offset"):
        load_calibration(tmp_path / "bad.json")


def test_normalisation_matches_lerobot_formulas():
    c = MotorCalibration(1, 0, 0, 1000, 3000)
    assert normalize(2000, c, "degrees") == pytest.approx(0.0)
    assert normalize(3000, c, "degrees") == pytest.approx(1000 * 360 / 4095)
    assert normalize(1000, c, "range_m100_100") == pytest.approx(-100.0)
    assert normalize(2500, c, "range_0_100") == pytest.approx(75.0)
    assert normalize(5000, c, "range_0_100") == pytest.approx(100.0)  # bounded like LeRobot
    inverted = MotorCalibration(1, 1, 0, 1000, 3000)
    assert normalize(2500, inverted, "range_0_100") == pytest.approx(25.0)
    for raw in (1000, 1500, 2999):
        for mode in ("degrees", "range_0_100", "range_m100_100"):
            assert unnormalize(normalize(raw, c, mode), c, mode) == raw
    assert unnormalize(720.0, c, "degrees") == 3000  # never outside the calibrated range
    assert unnormalize(-5.0, c, "range_0_100") == 1000


def test_sign_magnitude_homing_offset():
    assert encode_sign_magnitude(-1487) == 1487 | (1 << 11)
    for v in (-2047, -1, 0, 5, 2047):
        assert decode_sign_magnitude(encode_sign_magnitude(v)) == v
    with pytest.raises(ValueError):
        encode_sign_magnitude(5000)


def test_emulated_bus_answers_real_sdk_packets():
    port = EmulatedServoPort({1: 1000, 2: 3000})
    bus = FeetechBus(port, {"a": 1, "b": 2})
    bus.connect()  # ping + model number read through scservo_sdk
    assert bus.sync_read("Present_Position") == {"a": 1000, "b": 3000}
    bus.write("Homing_Offset", "a", encode_sign_magnitude(-200))
    assert bus.read("Present_Position", "a") == 1200  # present = actual - offset, like the servo
    bus.write("Min_Position_Limit", "b", 500)
    bus.write("Max_Position_Limit", "b", 3500)
    bus.set_torque(True)
    bus.sync_write("Goal_Position", {"a": 1300, "b": 4000})
    assert port.servos[2].goal_log[-1] == 3500  # the servo clamps goals to its limits
    for _ in range(20):  # the servos move 40 ticks per bus transaction
        positions = bus.sync_read("Present_Position")
    assert positions == {"a": 1300, "b": 3500}
    assert port.bad_checksums == 0 and port.packets_handled > 10


def test_emulated_bus_ignores_corrupt_packets_and_sdk_times_out():
    port = EmulatedServoPort({1: 1000})
    port.openPort()
    packet = [0xFF, 0xFF, 1, 4, 2, 56, 2, 0x00]  # READ Present_Position with a wrong checksum
    port.writePort(packet)
    assert port.bad_checksums == 1 and port.getBytesAvailable() == 0
    bus = FeetechBus(port, {"ghost": 7})
    with pytest.raises(ControllerError, match="ping ghost"):
        bus.connect()


def test_kinematics_round_trip_and_reach_error():
    k = SO101Kinematics()
    rng = np.random.default_rng(0)
    for _ in range(50):
        target = rng.uniform([0.12, -0.08, 0.03], [0.22, 0.08, 0.10])
        yaw = rng.uniform(-1, 1)
        pose = k.forward(k.inverse(target, yaw))
        np.testing.assert_allclose(pose.position, target, atol=1e-9)
        assert pose.rpy[2] == pytest.approx(yaw)
    with pytest.raises(ValueError, match="cannot reach"):
        k.inverse([0.6, 0.0, 0.1], 0.0)


def make_arm(**cfg) -> SO101Backend:
    config = SO101Config(**cfg)
    arm = SO101Backend(config, port=sim_port_at(config, [0.18, 0.0, 0.07]), calibration=sim_calibration(),
                       sleep=lambda s: None)
    arm.connect()
    return arm


def test_connect_writes_lerobot_calibration_to_servos():
    arm = make_arm()
    for name, motor_id in SO101_MOTORS.items():
        servo = arm.bus.port.servos[motor_id]
        assert decode_sign_magnitude(servo._get("Homing_Offset")) == SIM_HOMING_OFFSET
        assert servo._get("Min_Position_Limit") == arm.calibration[name].range_min
        assert servo._get("Torque_Enable") == 1
    np.testing.assert_allclose(arm.read_state().pose.position, [0.18, 0.0, 0.07], atol=0.002)


def test_command_ee_moves_the_arm_and_limits_joint_steps():
    arm = make_arm(max_joint_step_deg=3.0)
    start = arm.read_state()
    target = EEPose(start.pose.position + [0.0, 0.0, 0.02], start.pose.rotation)
    arm.command_ee(target, 0.5)
    goals = {m: arm.bus.port.servos[i].goal_log[-1] for m, i in SO101_MOTORS.items()}
    deg = arm._to_degrees(goals)
    assert np.max(np.abs(deg[:5] - start.joints[:5])) <= 3.0 + 0.1  # second fence: joint step per command
    for _ in range(60):
        arm.command_ee(target, 0.5)
    np.testing.assert_allclose(arm.read_state().pose.position, target.position, atol=0.002)
    assert arm.read_state().gripper == pytest.approx(0.5, abs=0.02)


def test_coordinated_move_keeps_the_joints_on_one_line():
    """Goal_Velocity in proportion to each tip joint's travel: the joints arrive together, the tool follows
    the joint-space line that ee_path predicted (not the per-servo top-speed dash that bowed out of the box)."""
    arm = make_arm()
    start = arm.read_state()
    target = EEPose(start.pose.position + [0.02, 0.015, 0.02], start.pose.rotation)
    path = arm.ee_path(target, start)
    solved = arm.joint_target(target)
    goals = arm.metered(solved, start.joints)  # this far, one command is cut at max_joint_step_deg, on the line
    assert np.max(np.abs(goals - start.joints[:5])) == pytest.approx(arm.config.max_joint_step_deg, abs=0.1)
    np.testing.assert_allclose(path[0], start.pose.position)
    np.testing.assert_allclose(path[-1], target.position, atol=5e-4)
    np.testing.assert_allclose(path[-2], arm.joint_pose(goals).position)  # the cut-short goal is on the checked way
    arm.command_ee(target, 1.0)
    speeds = [arm.bus.port.servos[SO101_MOTORS[m]]._get("Goal_Velocity") for m in BODY[:4]]
    travel = np.abs(goals - start.joints[:5])[:4]
    np.testing.assert_allclose(np.array(speeds) / max(speeds), travel / travel.max(), atol=0.01)
    line = solved[:4] - start.joints[:4]
    for _ in range(40):  # every reading lies on the line start -> goals, within a tick or two
        now = arm.read_state().joints[:4] - start.joints[:4]
        off_line = now - line * float(np.dot(now, line) / np.dot(line, line))
        assert np.max(np.abs(off_line)) <= 0.2, (now, line)
    np.testing.assert_allclose(arm.read_state().joints[:5], goals, atol=0.1)
    with pytest.raises(ValueError, match="max_speed_steps_s"):
        SO101Config(max_speed_steps_s=0)


def test_overload_error_raises_and_recover_clears_it():
    arm = make_arm()
    arm.bus.port.servos[3].error_bits = ERRBIT_OVERLOAD
    with pytest.raises(ControllerError, match="Overload"):
        arm.bus.read("Present_Position", "elbow_flex")
    arm.recover()  # torque off/on clears the overload, as on the servo
    assert arm.bus.port.servos[3].error_bits == 0
    arm.bus.read("Present_Position", "elbow_flex")


def test_stop_holds_present_position():
    arm = make_arm()
    start = arm.read_state()
    arm.command_ee(EEPose(start.pose.position + [0.02, 0, 0], start.pose.rotation), 1.0)
    arm.stop()
    held = arm.read_state().pose.position
    for _ in range(20):
        arm.read_state()
    np.testing.assert_allclose(arm.read_state().pose.position, held, atol=1e-3)
