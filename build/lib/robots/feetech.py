"""Feetech STS3215 servo bus (``feetech-servo-sdk``) with LeRobot-compatible calibration.

* :data:`STS3215` - control-table addresses used here (Present_Position 56, Goal_Position 42, ...).
* :class:`MotorCalibration` - one motor's LeRobot calibration entry.
* :func:`load_calibration` / :func:`save_calibration` - LeRobot calibration JSON files.
* :func:`normalize` / :func:`unnormalize` - raw ticks <-> LeRobot units (degrees or 0..100).
* :class:`FeetechBus` - ping, sync read of positions, sync write of goals (optionally with per-servo
  speed and acceleration, as the SDK's ``SyncWritePosEx``), calibration registers.

LeRobot stores calibrations as ``{motor: {id, drive_mode, homing_offset, range_min, range_max}}``
(``~/.cache/huggingface/lerobot/calibration/robots/so101_follower/<id>.json``); the same files load here.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "STS3215",
    "MotorCalibration",
    "load_calibration",
    "save_calibration",
    "normalize",
    "unnormalize",
    "FeetechBus",
    "encode_sign_magnitude",
    "decode_sign_magnitude",
]

logger = logging.getLogger(__name__)

# STS3215 control table: name -> (address, size in bytes); Goal_Velocity in steps/s, 0 = the servo's maximum
STS3215 = {
    "Model_Number": (3, 2),
    "ID": (5, 1),
    "Min_Position_Limit": (9, 2),
    "Max_Position_Limit": (11, 2),
    "Homing_Offset": (31, 2),
    "Operating_Mode": (33, 1),
    "Torque_Enable": (40, 1),
    "Acceleration": (41, 1),
    "Goal_Position": (42, 2),
    "Goal_Time": (44, 2),
    "Goal_Velocity": (46, 2),
    "Lock": (55, 1),
    "Present_Position": (56, 2),
    "Moving": (66, 1),
}
STS3215_MODEL_NUMBER = 777
RESOLUTION = 4096
HOMING_OFFSET_SIGN_BIT = 11


def encode_sign_magnitude(value: int, sign_bit: int = HOMING_OFFSET_SIGN_BIT) -> int:
    """Feetech sign-magnitude encoding (Homing_Offset uses bit 11 as the sign)."""
    if abs(value) >= (1 << sign_bit):
        raise ValueError(f"magnitude of {value} does not fit below sign bit {sign_bit}")
    return (abs(value) | (1 << sign_bit)) if value < 0 else value


def decode_sign_magnitude(raw: int, sign_bit: int = HOMING_OFFSET_SIGN_BIT) -> int:
    """Inverse of :func:`encode_sign_magnitude`."""
    magnitude = raw & ((1 << sign_bit) - 1)
    return -magnitude if raw & (1 << sign_bit) else magnitude


@dataclass
class MotorCalibration:
    """LeRobot's calibration of one motor: ``homing_offset`` is written to the servo, ranges in ticks."""

    id: int
    drive_mode: int
    homing_offset: int
    range_min: int
    range_max: int

    def __post_init__(self) -> None:
        if not 0 <= self.range_min < self.range_max <= RESOLUTION - 1:
            raise ValueError(
                f"motor {self.id}: need 0 <= range_min < range_max <= {RESOLUTION - 1}, "
                f"got {self.range_min}..{self.range_max}"
            )


def load_calibration(path: str | Path) -> dict[str, MotorCalibration]:
    """Read a LeRobot calibration JSON (motor name -> entry)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"no calibration at {path}; calibrate with `lerobot-calibrate --robot.type=so101_follower ...` "
            "or point calibration_path at an existing LeRobot calibration JSON"
        )
    raw = json.loads(path.read_text())
    needed = {"id", "drive_mode", "homing_offset", "range_min", "range_max"}
    calib = {}
    for name, entry in raw.items():
        missing = needed - set(entry)
        if missing:
            raise ValueError(f"calibration {path}: motor {name!r} lacks {sorted(missing)}")
        calib[name] = MotorCalibration(**{k: int(entry[k]) for k in needed})
    return calib


def save_calibration(calibration: dict[str, MotorCalibration], path: str | Path) -> None:
    """Write a calibration in LeRobot's JSON layout."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({name: asdict(c) for name, c in calibration.items()}, indent=4))


def normalize(raw: int, calib: MotorCalibration, mode: str) -> float:
    """Raw ticks -> LeRobot units: ``"degrees"`` (0 at mid-range) or ``"range_0_100"``/``"range_m100_100"``."""
    lo, hi = calib.range_min, calib.range_max
    if mode == "degrees":
        return (raw - (lo + hi) / 2) * 360.0 / (RESOLUTION - 1)
    bounded = min(hi, max(lo, raw))
    if mode == "range_0_100":
        norm = (bounded - lo) / (hi - lo) * 100.0
        return 100.0 - norm if calib.drive_mode else norm
    if mode == "range_m100_100":
        norm = (bounded - lo) / (hi - lo) * 200.0 - 100.0
        return -norm if calib.drive_mode else norm
    raise ValueError(f"mode must be 'degrees', 'range_0_100' or 'range_m100_100', got {mode!r}")


def unnormalize(value: float, calib: MotorCalibration, mode: str) -> int:
    """LeRobot units -> raw ticks, clamped to the calibrated range (never outside it)."""
    lo, hi = calib.range_min, calib.range_max
    if mode == "degrees":
        raw = value * (RESOLUTION - 1) / 360.0 + (lo + hi) / 2
    elif mode == "range_0_100":
        v = min(100.0, max(0.0, value))
        v = 100.0 - v if calib.drive_mode else v
        raw = v / 100.0 * (hi - lo) + lo
    elif mode == "range_m100_100":
        v = min(100.0, max(-100.0, value))
        v = -v if calib.drive_mode else v
        raw = (v + 100.0) / 200.0 * (hi - lo) + lo
    else:
        raise ValueError(f"mode must be 'degrees', 'range_0_100' or 'range_m100_100', got {mode!r}")
    return int(min(hi, max(lo, round(raw))))


class FeetechBus:
    """A chain of STS3215 servos on one serial port, through scservo_sdk.

    Args:
        port: serial device (``/dev/ttyACM0``) or an object with PortHandler's methods (emulated bus).
        motors: motor name -> servo id.
        baudrate: bus speed (SO-101: 1_000_000).

    >>> from robots.sim.feetech_bus import EmulatedServoPort
    >>> bus = FeetechBus(EmulatedServoPort({1: 2048}), {"shoulder_pan": 1}); bus.connect()
    >>> bus.sync_read("Present_Position")
    {'shoulder_pan': 2048}
    """

    def __init__(self, port, motors: dict[str, int], baudrate: int = 1_000_000) -> None:
        try:
            import scservo_sdk as scs
        except ImportError as exc:
            raise ImportError("FeetechBus needs feetech-servo-sdk: pip install 'rlrm[robots]'") from exc
        self._scs = scs
        self.motors = dict(motors)
        self.baudrate = baudrate
        self.port = scs.PortHandler(port) if isinstance(port, str) else port
        self.packet = scs.PacketHandler(0)  # protocol_end 0: STS series, little endian
        self.lock = threading.RLock()  # the bus is one half-duplex line: one transaction at a time

    def _check(self, result: int, error: int, what: str) -> None:
        from robots.backend import ControllerError

        if result != self._scs.COMM_SUCCESS:
            raise ControllerError(f"feetech {what}: {self.packet.getTxRxResult(result)} (code {result})")
        if error:
            raise ControllerError(f"feetech {what}: servo error {self.packet.getRxPacketError(error)} (bits {error})")

    def connect(self) -> None:
        """Open the port and ping every motor (model must be STS3215)."""
        with self.lock:
            if not self.port.openPort():
                raise ConnectionError(f"could not open serial port {self.port.getPortName()!r}")
            if not self.port.setBaudRate(self.baudrate):
                raise ConnectionError(f"could not set baudrate {self.baudrate}")
            for name, motor_id in self.motors.items():
                model, result, error = self.packet.ping(self.port, motor_id)
                self._check(result, error, f"ping {name} (id {motor_id})")
                if model != STS3215_MODEL_NUMBER:
                    raise ConnectionError(f"motor {name} (id {motor_id}) is model {model}, expected STS3215 ({STS3215_MODEL_NUMBER})")

    def disconnect(self) -> None:
        """Close the port."""
        with self.lock:
            self.port.closePort()

    def write(self, register: str, motor: str, value: int) -> None:
        """Write one register of one motor and check the status packet."""
        addr, size = STS3215[register]
        with self.lock:
            fn = self.packet.write1ByteTxRx if size == 1 else self.packet.write2ByteTxRx
            result, error = fn(self.port, self.motors[motor], addr, int(value))
        self._check(result, error, f"write {register}={value} to {motor}")

    def read(self, register: str, motor: str) -> int:
        """Read one register of one motor."""
        addr, size = STS3215[register]
        with self.lock:
            fn = self.packet.read1ByteTxRx if size == 1 else self.packet.read2ByteTxRx
            value, result, error = fn(self.port, self.motors[motor], addr)
        self._check(result, error, f"read {register} of {motor}")
        return int(value)

    def sync_read(self, register: str) -> dict[str, int]:
        """One sync-read transaction of ``register`` from every motor."""
        addr, size = STS3215[register]
        with self.lock:
            group = self._scs.GroupSyncRead(self.port, self.packet, addr, size)
            for motor_id in self.motors.values():
                group.addParam(motor_id)
            result = group.txRxPacket()
            self._check(result, 0, f"sync read {register}")
            return {name: int(group.getData(motor_id, addr, size)) for name, motor_id in self.motors.items()}

    def sync_write(self, register: str, values: dict[str, int]) -> None:
        """One sync-write transaction of ``register`` (no status packets come back)."""
        addr, size = STS3215[register]
        with self.lock:
            group = self._scs.GroupSyncWrite(self.port, self.packet, addr, size)
            for name, value in values.items():
                value = int(value)
                data = [value & 0xFF] if size == 1 else [value & 0xFF, (value >> 8) & 0xFF]
                group.addParam(self.motors[name], data)
            result = group.txPacket()
        self._check(result, 0, f"sync write {register}")

    def sync_write_moves(self, moves: dict[str, tuple[int, int, int]]) -> None:
        """One sync write of ``(goal ticks, velocity steps/s, acceleration 100 steps/s^2)`` per motor.

        Writes Acceleration, Goal_Position, Goal_Time (0) and Goal_Velocity (addresses 41..47) in one
        transaction, the block the SDK's ``SyncWritePosEx`` writes; 0 means the servo's maximum for both.
        """
        addr = STS3215["Acceleration"][0]
        with self.lock:
            group = self._scs.GroupSyncWrite(self.port, self.packet, addr, 7)
            for name, (position, velocity, acceleration) in moves.items():
                position, velocity, acceleration = int(position), int(velocity), int(acceleration)
                if not (0 <= position < 1 << 16 and 0 <= velocity < 1 << 15 and 0 <= acceleration <= 254):
                    raise ValueError(
                        f"{name}: goal must be 0..65535 ticks, velocity 0..32767 steps/s, acceleration 0..254, "
                        f"got {position}, {velocity}, {acceleration}"
                    )
                data = [acceleration, position & 0xFF, position >> 8, 0, 0, velocity & 0xFF, velocity >> 8]
                group.addParam(self.motors[name], data)
            result = group.txPacket()
        self._check(result, 0, "sync write goal moves")

    def set_torque(self, enabled: bool) -> None:
        """Torque on/off on every motor (Lock follows, as LeRobot does)."""
        with self.lock:
            for name in self.motors:
                self.write("Torque_Enable", name, int(enabled))
                self.write("Lock", name, int(enabled))

    def write_calibration(self, calibration: dict[str, MotorCalibration]) -> None:
        """Write homing offsets and position limits to the servos (torque must be off)."""
        with self.lock:
            for name in self.motors:
                c = calibration[name]
                self.write("Homing_Offset", name, encode_sign_magnitude(c.homing_offset))
                self.write("Min_Position_Limit", name, c.range_min)
                self.write("Max_Position_Limit", name, c.range_max)
