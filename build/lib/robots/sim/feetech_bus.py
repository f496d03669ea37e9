"""An STS3215 servo bus emulated at the packet level, for SO-101 without hardware.

* :class:`EmulatedServo` - one servo's control table (256 bytes) and its position dynamics.
* :class:`EmulatedServoPort` - a ``scservo_sdk.PortHandler`` whose writes are parsed as Feetech
  protocol packets (PING, READ, WRITE, SYNC_READ, SYNC_WRITE; checksums checked) and answered
  with status packets, exactly the bytes a real bus would return.

Servo behaviour modelled: Present_Position = actual - Homing_Offset (sign-magnitude, bit 11),
goals clamped to Min/Max_Position_Limit, no motion with torque off, motion toward the goal at
``ticks_per_transaction`` per bus transaction (the servo's top speed), or slower when Goal_Velocity
(steps/s, 0 = top speed) asks for less, and injectable error bits (e.g. overload). Acceleration
ramps are not modelled: a servo moves at its speed from the first transaction.
"""

from __future__ import annotations

import threading

from scservo_sdk import PortHandler

from robots.feetech import STS3215, STS3215_MODEL_NUMBER, decode_sign_magnitude

__all__ = ["EmulatedServo", "EmulatedServoPort"]

INST_PING, INST_READ, INST_WRITE, INST_SYNC_READ, INST_SYNC_WRITE = 1, 2, 3, 0x82, 0x83
BROADCAST = 0xFE
ERRBIT_OVERLOAD = 32


class EmulatedServo:
    """One STS3215: control table bytes plus an actual shaft position in ticks (0..4095).

    Args:
        servo_id: bus id.
        actual: initial shaft position (ticks).
        ticks_per_transaction: how far the shaft moves per bus transaction at top speed.
        max_speed_steps_s: the top speed (steps/s) that ``ticks_per_transaction`` stands for, so that a
            Goal_Velocity of ``v`` steps/s moves ``v / max_speed_steps_s * ticks_per_transaction`` per transaction.
    """

    def __init__(
        self, servo_id: int, actual: int = 2048, ticks_per_transaction: int = 40, max_speed_steps_s: float = 3000.0
    ) -> None:
        self.id = servo_id
        self.memory = bytearray(256)
        self.actual = int(actual)
        self.ticks_per_transaction = ticks_per_transaction
        self.max_speed_steps_s = float(max_speed_steps_s)
        self._carry = 0.0  # fraction of a tick travelled at a low Goal_Velocity (the shaft reports whole ticks)
        self.error_bits = 0
        self._set("Model_Number", STS3215_MODEL_NUMBER)
        self._set("ID", servo_id)
        self._set("Max_Position_Limit", 4095)
        self.goal_log: list[int] = []  # every Goal_Position written (ticks, as the servo stores it)
        self._set("Goal_Position", self._present())
        self._refresh()

    def _get(self, register: str) -> int:
        addr, size = STS3215[register]
        return int.from_bytes(self.memory[addr : addr + size], "little")

    def _set(self, register: str, value: int) -> None:
        addr, size = STS3215[register]
        self.memory[addr : addr + size] = int(value).to_bytes(size, "little")

    def _offset(self) -> int:
        return decode_sign_magnitude(self._get("Homing_Offset"))

    def _present(self) -> int:
        return (self.actual - self._offset()) % 4096

    def _refresh(self) -> None:
        self._set("Present_Position", self._present())
        self._set("Moving", int(self._present() != self._get("Goal_Position")))

    def tick(self) -> None:
        """Advance the shaft toward the goal by one transaction's worth of motion."""
        if self._get("Torque_Enable") and not self.error_bits:
            goal_actual = self._get("Goal_Position") + self._offset()
            delta = goal_actual - self.actual
            velocity = self._get("Goal_Velocity")
            reach = float(self.ticks_per_transaction)
            if 0 < velocity < self.max_speed_steps_s:
                reach *= velocity / self.max_speed_steps_s
            reach += self._carry
            step = max(-int(reach), min(int(reach), delta))
            self._carry = reach - int(reach) if abs(delta) > abs(step) else 0.0
            self.actual += step
        self._refresh()

    def write(self, addr: int, data: bytes) -> None:
        """Apply a register write, as the servo firmware would."""
        self.memory[addr : addr + len(data)] = data
        if addr <= STS3215["Goal_Position"][0] < addr + len(data):
            lo, hi = self._get("Min_Position_Limit"), self._get("Max_Position_Limit")
            goal = min(hi, max(lo, self._get("Goal_Position")))  # the servo refuses goals past its limits
            self._set("Goal_Position", goal)
            self.goal_log.append(goal)
        if addr <= STS3215["Torque_Enable"][0] < addr + len(data) and data[STS3215["Torque_Enable"][0] - addr] == 0:
            self.error_bits = 0  # torque off clears an overload, as on the real servo
        self._refresh()

    def status(self, params: bytes = b"") -> bytes:
        """A status packet: FF FF id len err params checksum."""
        body = bytes([self.id, len(params) + 2, self.error_bits]) + params
        return b"\xff\xff" + body + bytes([~sum(body) & 0xFF])


class EmulatedServoPort(PortHandler):
    """A PortHandler that talks to emulated servos instead of a serial device.

    Args:
        actual_positions: servo id -> initial shaft position (ticks).
        ticks_per_transaction: how far a servo moves per bus transaction at top speed.
        max_speed_steps_s: the top speed (steps/s) ``ticks_per_transaction`` stands for (see :class:`EmulatedServo`).

    >>> import scservo_sdk as scs
    >>> port = EmulatedServoPort({1: 1000}); port.openPort()
    True
    >>> scs.PacketHandler(0).read2ByteTxRx(port, 1, 56)[:2]
    (1000, 0)
    """

    def __init__(
        self, actual_positions: dict[int, int], ticks_per_transaction: int = 40, max_speed_steps_s: float = 3000.0
    ) -> None:
        super().__init__("emulated-sts3215-bus")
        self.servos = {
            i: EmulatedServo(i, p, ticks_per_transaction, max_speed_steps_s) for i, p in actual_positions.items()
        }
        self._rx = bytearray()
        self._lock = threading.Lock()
        self.packets_handled = 0
        self.bad_checksums = 0

    # -- PortHandler surface
    def openPort(self) -> bool:  # noqa: N802 - SDK's name
        """No device to open."""
        self.is_open = True
        self.tx_time_per_byte = (1000.0 / self.baudrate) * 10.0
        return True

    def setBaudRate(self, baudrate: int) -> bool:  # noqa: N802
        """Accept the SDK's baudrates."""
        if self.getCFlagBaud(baudrate) <= 0:
            return False
        self.baudrate = baudrate
        return self.openPort()

    def closePort(self) -> None:  # noqa: N802
        """Mark closed."""
        self.is_open = False

    def clearPort(self) -> None:  # noqa: N802
        """Drop unread bytes, as a flush before a new instruction."""
        with self._lock:
            self._rx.clear()

    def getBytesAvailable(self) -> int:  # noqa: N802
        """Bytes of status packets waiting."""
        return len(self._rx)

    def readPort(self, length: int) -> bytes:  # noqa: N802
        """Pop up to ``length`` bytes of pending status packets."""
        with self._lock:
            out = bytes(self._rx[:length])
            del self._rx[:length]
        return out

    def writePort(self, packet) -> int:  # noqa: N802
        """Parse one instruction packet and queue the servos' answers."""
        data = bytes(packet)
        self._handle(data)
        return len(data)

    # -- protocol
    def _handle(self, pkt: bytes) -> None:
        if len(pkt) < 6 or pkt[0] != 0xFF or pkt[1] != 0xFF or pkt[3] + 4 != len(pkt):
            return  # a real bus ignores garbage
        if (~sum(pkt[2:-1]) & 0xFF) != pkt[-1]:
            self.bad_checksums += 1
            return
        servo_id, instr, params = pkt[2], pkt[4], pkt[5:-1]
        self.packets_handled += 1
        for servo in self.servos.values():
            servo.tick()
        replies = bytearray()
        if instr == INST_SYNC_WRITE:
            start, size = params[0], params[1]
            body = params[2:]
            for i in range(0, len(body), size + 1):
                target = self.servos.get(body[i])
                if target is not None:
                    target.write(start, body[i + 1 : i + 1 + size])
        elif instr == INST_SYNC_READ:
            start, size = params[0], params[1]
            for sid in params[2:]:
                if sid in self.servos:
                    servo = self.servos[sid]
                    replies += servo.status(bytes(servo.memory[start : start + size]))
        elif servo_id in self.servos:
            servo = self.servos[servo_id]
            if instr == INST_PING:
                replies += servo.status()
            elif instr == INST_READ:
                start, size = params[0], params[1]
                replies += servo.status(bytes(servo.memory[start : start + size]))
            elif instr == INST_WRITE:
                servo.write(params[0], bytes(params[1:]))
                replies += servo.status()
        with self._lock:
            self._rx += replies
