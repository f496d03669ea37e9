"""Bridges to LeRobot (the optional ``rlrm[lerobot]`` extra).

* ``lerobot_policy.py`` - :class:`~rlrm.bridges.lerobot_policy.LeRobotPolicy`: a policy saved by LeRobot
  (ACT, diffusion, ...) as a frozen base, run through its saved pre/post processors (needs ``lerobot``).
* ``lerobot_dataset.py`` - write every episode of a run as a LeRobot v3 dataset and read one back
  (pyarrow only: LeRobot itself is not needed to write or read).

Nothing here imports ``lerobot`` at module import time; a missing ``lerobot`` raises an ImportError
naming the extra when a policy is loaded.
"""
