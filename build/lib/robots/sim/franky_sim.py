"""franky-sim in-process: a MuJoCo FR3 serving the real libfranka protocol on a loopback address.

* :class:`FrankySimServer` - context manager starting franky-sim's MuJoCo simulator and
  ``SimulationServer`` (1 kHz loop in a daemon thread); ``hostname`` is the address to give franky.
* :class:`SimFrankaBackend` - the Franka backend with its own franky-sim started on connect.
"""

from __future__ import annotations

import contextlib
import logging

from robots.franka import FrankaBackend

__all__ = ["FrankySimServer", "SimFrankaBackend"]

logger = logging.getLogger(__name__)


class FrankySimServer:
    """A simulated FR3 + Franka Hand on 127.x.y.z; ``FrankaBackend(FrankaConfig(host=server.hostname))``.

    >>> with FrankySimServer() as sim:  # doctest: +SKIP
    ...     print(sim.hostname)
    127.0.0.1
    """

    def __init__(self, realtime: bool | float = True, verbose: bool = False) -> None:
        self.realtime = realtime
        if not verbose:  # franky-sim logs every protocol message at INFO
            logging.getLogger("franky_sim").setLevel(logging.WARNING)
        self.hostname: str | None = None
        self._stack: contextlib.ExitStack | None = None
        self.sim = None

    def start(self) -> FrankySimServer:
        """Build the MuJoCo scene, bind the robot and gripper servers, start the 1 kHz loop."""
        try:
            from franky_sim import SimulationServer
            from franky_sim.mujoco_simulator import MujocoSimulator
        except ImportError as exc:
            raise ImportError("the simulated Franka needs franky-sim: pip install 'rlrm[robots-sim]'") from exc
        stack = contextlib.ExitStack()
        try:
            self.sim = stack.enter_context(MujocoSimulator(enable_visualization=False))
            robot = self.sim.add_robot()
            server = stack.enter_context(SimulationServer(self.sim))
            server.run_async(self.realtime)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        self.hostname = robot.hostname
        logger.info("franky-sim FR3 serving libfranka on %s", self.hostname)
        return self

    def stop(self) -> None:
        """Stop the loop and release the sockets."""
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def __enter__(self) -> FrankySimServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()



class SimFrankaBackend(FrankaBackend):
    """A :class:`~robots.franka.FrankaBackend` that starts its own franky-sim FR3 on connect."""

    name = "franka-sim"

    def connect(self) -> None:
        """Start franky-sim, point the config at it, connect franky with realtime checks off."""
        self.server = FrankySimServer().start()
        self.config.host = self.server.hostname
        self.config.realtime = "ignore"
        try:
            super().connect()
        except BaseException:
            self.server.stop()
            raise

    def disconnect(self) -> None:
        """Disconnect franky, then stop the simulator."""
        try:
            super().disconnect()
        finally:
            server = getattr(self, "server", None)
            if server is not None:
                server.stop()
                self.server = None
