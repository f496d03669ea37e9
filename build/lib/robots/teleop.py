"""Human intervention: a keyboard or gamepad replaces the policy's action while a person takes over.

* :class:`TeleopCommand` - what a device says this step: active?, action, success/failure/stop events.
* :class:`KeyboardTeleop` - pynput listener (needs a display); keys below.
* :class:`GamepadTeleop` - pygame joystick: hold LB to take over, sticks move, triggers grip.
* :func:`make_teleop` - device from a config dict ``{type: keyboard|gamepad, ...}``.

Keyboard: ``space`` toggles intervention; ``w/s`` +x/-x, ``a/d`` +y/-y, ``r/f`` +z/-z, ``q/e`` yaw;
``o`` open / ``c`` close the gripper; ``y`` success, ``n`` failure (end the episode with that label);
``esc`` stops the robot. Devices are imported lazily; both accept injected events for tests.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass

import numpy as np

from robots.base import ACTION_MODES

__all__ = ["TeleopCommand", "KeyboardTeleop", "GamepadTeleop", "make_teleop"]


@dataclass
class TeleopCommand:
    """One poll of a teleop device.

    Args:
        active: a person is in control; ``action`` replaces the policy's.
        action: (k + 1,) in [-1, 1], same layout as the env's action space.
        success, failure: the person labels the episode (the env terminates).
        stop: halt the robot (``env.stop()``).
    """

    active: bool = False
    action: np.ndarray | None = None
    success: bool = False
    failure: bool = False
    stop: bool = False


_KEY_AXES = {"w": (0, 1.0), "s": (0, -1.0), "a": (1, 1.0), "d": (1, -1.0), "r": (2, 1.0), "f": (2, -1.0),
             "q": (3, 1.0), "e": (3, -1.0)}


class KeyboardTeleop:
    """Keyboard takeover; call :meth:`start` to listen with pynput, or feed :meth:`press`/:meth:`release`.

    >>> kb = KeyboardTeleop("xyz_yaw")
    >>> kb.press("space"); kb.press("w"); kb.poll().action.tolist()
    [1.0, 0.0, 0.0, 0.0, 1.0]
    """

    def __init__(self, action_mode: str = "xyz", device=None) -> None:
        self.n_axes = ACTION_MODES[action_mode]
        self._held: set[str] = set()
        self._active = False
        self._gripper = 1.0
        self._events = {"success": False, "failure": False, "stop": False}
        self._lock = threading.Lock()
        self._listener = device

    def start(self) -> KeyboardTeleop:
        """Start a pynput keyboard listener (needs an X11/Wayland display)."""
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise RuntimeError(
                "keyboard teleop needs a display (DISPLAY/WAYLAND_DISPLAY unset): pynput cannot listen on a "
                "headless machine. Run on the robot PC's desktop, use teleop: {type: gamepad}, or teleop: null"
            )
        try:
            from pynput import keyboard
        except ImportError as exc:
            raise ImportError("KeyboardTeleop needs pynput: pip install 'rlrm[robots]'") from exc

        def name(key) -> str:
            return key.char if getattr(key, "char", None) else getattr(key, "name", str(key))

        self._listener = keyboard.Listener(on_press=lambda k: self.press(name(k)), on_release=lambda k: self.release(name(k)))
        self._listener.start()
        return self

    def press(self, key: str) -> None:
        """Handle a key press (``"w"``, ``"space"``, ``"esc"``...)."""
        with self._lock:
            if key == "space":
                self._active = not self._active
            elif key == "o":
                self._gripper = 1.0
            elif key == "c":
                self._gripper = -1.0
            elif key == "y":
                self._events["success"] = True
            elif key == "n":
                self._events["failure"] = True
            elif key == "esc":
                self._events["stop"] = True
            self._held.add(key)

    def release(self, key: str) -> None:
        """Handle a key release."""
        with self._lock:
            self._held.discard(key)

    def poll(self) -> TeleopCommand:
        """The command for this step; one-shot events are consumed."""
        with self._lock:
            action = np.zeros(self.n_axes + 1)
            for key in self._held:
                if key in _KEY_AXES and _KEY_AXES[key][0] < self.n_axes:
                    axis, sign = _KEY_AXES[key]
                    action[axis] += sign
            action[-1] = self._gripper
            cmd = TeleopCommand(self._active, np.clip(action, -1, 1), **self._events)
            self._events = dict.fromkeys(self._events, False)
            return cmd

    def close(self) -> None:
        """Stop the listener."""
        if self._listener is not None and hasattr(self._listener, "stop"):
            self._listener.stop()


class GamepadTeleop:
    """Gamepad takeover (pygame joystick, Xbox layout): hold LB to take over.

    Left stick x/y, right stick vertical z, right stick horizontal yaw, RT closes / LT opens the gripper;
    Y success, B failure, Start stops. ``device`` is any object with ``get_axis(i)`` / ``get_button(i)``.

    >>> class Pad:
    ...     axes, buttons = [0.0, -1.0, -1.0, 0.0, 0.0, -1.0], [0] * 8
    ...     def get_axis(self, i): return self.axes[i]
    ...     def get_button(self, i): return self.buttons[i]
    >>> pad = Pad(); pad.buttons[4] = 1
    >>> GamepadTeleop("xyz", device=pad).poll().action.tolist()
    [1.0, 0.0, 0.0, 1.0]
    """

    # Xbox layout in SDL: axes 0/1 left stick, 3/4 right stick, 2/5 triggers (-1 released); buttons A B X Y LB RB Back Start
    AXIS_LX, AXIS_LY, AXIS_LT, AXIS_RX, AXIS_RY, AXIS_RT = 0, 1, 2, 3, 4, 5
    BTN_B, BTN_Y, BTN_LB, BTN_START = 1, 3, 4, 7

    def __init__(self, action_mode: str = "xyz", device=None, deadzone: float = 0.1, joystick_index: int = 0) -> None:
        self.n_axes = ACTION_MODES[action_mode]
        self.deadzone = deadzone
        self._pygame = None
        if device is None:
            try:
                # SDL would otherwise install its own SIGINT handler, and Ctrl-C (the robot's stop path)
                # would no longer reach Python
                os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
                import pygame
            except ImportError as exc:
                raise ImportError("GamepadTeleop needs pygame: pip install 'rlrm[robots]'") from exc
            pygame.joystick.init()  # not pygame.init(): no display, and no SDL signal handlers (see below)
            if pygame.joystick.get_count() <= joystick_index:
                raise RuntimeError(f"no gamepad at index {joystick_index} ({pygame.joystick.get_count()} connected)")
            device = pygame.joystick.Joystick(joystick_index)
            device.init()
            self._pygame = pygame
        self.device = device
        self._gripper = 1.0
        self._prev_buttons: dict[int, bool] = {}

    def _axis(self, i: int) -> float:
        v = float(self.device.get_axis(i))
        return 0.0 if abs(v) < self.deadzone else v

    def _pressed(self, i: int) -> bool:
        """Rising edge of a button (one event per press)."""
        now = bool(self.device.get_button(i))
        was = self._prev_buttons.get(i, False)
        self._prev_buttons[i] = now
        return now and not was

    def poll(self) -> TeleopCommand:
        """Read the pad once."""
        if self._pygame is not None:
            self._pygame.event.pump()
        action = np.zeros(self.n_axes + 1)
        action[0] = -self._axis(self.AXIS_LY)  # stick up = +x (away from the base)
        action[1] = -self._axis(self.AXIS_LX)  # stick left = +y
        action[2] = -self._axis(self.AXIS_RY)
        if self.n_axes >= 4:
            action[self.n_axes - 1] = -self._axis(self.AXIS_RX)
        action += 0.0  # turn -0.0 from negated zeros into 0.0
        if self._axis(self.AXIS_RT) > 0.5:
            self._gripper = -1.0
        elif self._axis(self.AXIS_LT) > 0.5:
            self._gripper = 1.0
        action[-1] = self._gripper
        return TeleopCommand(
            active=bool(self.device.get_button(self.BTN_LB)),
            action=np.clip(action, -1, 1),
            success=self._pressed(self.BTN_Y),
            failure=self._pressed(self.BTN_B),
            stop=self._pressed(self.BTN_START),
        )

    def close(self) -> None:
        """Release pygame."""
        if self._pygame is not None:
            self._pygame.quit()


def make_teleop(config: dict, action_mode: str = "xyz", device=None):
    """Teleop device from ``{type: keyboard|gamepad, ...}``; ``device`` injects events (tests)."""
    config = dict(config)
    kind = config.pop("type", None)
    if kind == "keyboard":
        teleop = KeyboardTeleop(action_mode, device=device)
        return teleop if device is not None else teleop.start()
    if kind == "gamepad":
        return GamepadTeleop(action_mode, device=device, **config)
    raise ValueError(f"teleop type must be 'keyboard' or 'gamepad', got {kind!r}")
