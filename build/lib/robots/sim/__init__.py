"""Simulated and emulated robot backends for trying the whole loop without an arm.

* :mod:`robots.sim.kinematic` - a rate-limited Cartesian arm (generic env tests, demos).
* :mod:`robots.sim.fake_xarm` - an object with xArm SDK method names, return codes and errors.
* :mod:`robots.sim.feetech_bus` - an STS3215 servo bus emulated at the packet level for SO-101.
* :mod:`robots.sim.so101_sim` - a LeRobot-style calibration and a bus with the arm at rest.
* :mod:`robots.sim.franky_sim` - starts franky-sim's MuJoCo FR3 serving libfranka on loopback.
* :mod:`robots.sim.render` - synthetic top-view camera frames drawn from the simulated state.
"""
