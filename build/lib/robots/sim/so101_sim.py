"""A simulated SO-101: six emulated STS3215 servos with a LeRobot-style calibration.

* :func:`sim_calibration` - a calibration like ``lerobot-calibrate`` writes (homing offset puts mid-range at 2047).
* :func:`sim_port` - an :class:`~robots.sim.feetech_bus.EmulatedServoPort` whose shafts start at given angles.
* :func:`sim_port_at` - the same with the arm resting at an end-effector position.
"""

from __future__ import annotations

import numpy as np

from robots.feetech import MotorCalibration, unnormalize
from robots.sim.feetech_bus import EmulatedServoPort
from robots.so101 import BODY, SO101_MOTORS, SO101Config

__all__ = ["sim_calibration", "sim_port", "sim_port_at", "SIM_HOMING_OFFSET"]

SIM_HOMING_OFFSET = 250  # shaft ticks at which each sim servo reads 0


def sim_calibration() -> dict[str, MotorCalibration]:
    """Calibration of the simulated arm: body joints +-158 deg around mid-range, gripper 2000..3000 ticks."""
    calib = {
        name: MotorCalibration(id=i, drive_mode=0, homing_offset=SIM_HOMING_OFFSET, range_min=248, range_max=3848)
        for name, i in SO101_MOTORS.items()
    }
    calib["gripper"] = MotorCalibration(id=6, drive_mode=0, homing_offset=SIM_HOMING_OFFSET, range_min=2000, range_max=3000)
    return calib


def sim_port(ticks_per_transaction: int = 40, start_degrees=None) -> EmulatedServoPort:
    """Emulated bus, body joints at ``start_degrees`` (5 LeRobot degrees; default mid-range) and the gripper open."""
    calib = sim_calibration()
    start = [0.0] * 5 if start_degrees is None else [float(d) for d in start_degrees]
    actual = {
        SO101_MOTORS[name]: unnormalize(deg, calib[name], "degrees") + SIM_HOMING_OFFSET
        for name, deg in zip(BODY, start, strict=True)
    }
    actual[SO101_MOTORS["gripper"]] = 3000 + SIM_HOMING_OFFSET
    return EmulatedServoPort(actual, ticks_per_transaction)


def sim_port_at(config: SO101Config, position, yaw: float = 0.0) -> EmulatedServoPort:
    """Emulated bus with the arm resting at ``position`` (m), gripper down, as a person would leave it."""
    q = config.kinematics.inverse(position, yaw)
    sign, off = np.asarray(config.joint_sign), np.asarray(config.joint_offset_deg)
    return sim_port(start_degrees=(np.degrees(q) - off) / sign)
