"""A simulated SO-101: six emulated STS3215 servos with a LeRobot-style calibration.

* :func:`sim_calibration` - a calibration like ``lerobot-calibrate`` writes (homing offset puts mid-range at 2047).
* :func:`sim_port` - an :class:`~robots.sim.feetech_bus.EmulatedServoPort` whose shafts start at mid-range.
"""

from __future__ import annotations

from robots.feetech import MotorCalibration
from robots.sim.feetech_bus import EmulatedServoPort
from robots.so101 import SO101_MOTORS

__all__ = ["sim_calibration", "sim_port", "SIM_HOMING_OFFSET"]

SIM_HOMING_OFFSET = 250  # shaft ticks at which each sim servo reads 0


def sim_calibration() -> dict[str, MotorCalibration]:
    """Calibration of the simulated arm: body joints +-158 deg around mid-range, gripper 2000..3000 ticks."""
    calib = {
        name: MotorCalibration(id=i, drive_mode=0, homing_offset=SIM_HOMING_OFFSET, range_min=248, range_max=3848)
        for name, i in SO101_MOTORS.items()
    }
    calib["gripper"] = MotorCalibration(id=6, drive_mode=0, homing_offset=SIM_HOMING_OFFSET, range_min=2000, range_max=3000)
    return calib


def sim_port(ticks_per_transaction: int = 40) -> EmulatedServoPort:
    """Emulated bus with every body joint at mid-range (0 deg) and the gripper open."""
    actual = {i: 2048 + SIM_HOMING_OFFSET for i in SO101_MOTORS.values()}
    actual[SO101_MOTORS["gripper"]] = 3000 + SIM_HOMING_OFFSET
    return EmulatedServoPort(actual, ticks_per_transaction)
