"""Compatibility fixes for third-party simulators, applied once and only when needed.

* :func:`fix_gymnasium_robotics_joint_types` - lets gymnasium-robotics 1.4.x build its
  envs with MuJoCo >= 3.4, whose joint-type enums no longer equal numpy ints from the left.
"""

from __future__ import annotations

import logging
import types

import mujoco
import numpy as np

__all__ = ["fix_gymnasium_robotics_joint_types"]

logger = logging.getLogger(__name__)


class _IntJointTypes:
    """``mujoco.mjtJoint`` with plain-int members, so ``np.int32(2) in (SLIDE, HINGE)`` holds."""

    mjJNT_FREE = int(mujoco.mjtJoint.mjJNT_FREE)
    mjJNT_BALL = int(mujoco.mjtJoint.mjJNT_BALL)
    mjJNT_SLIDE = int(mujoco.mjtJoint.mjJNT_SLIDE)
    mjJNT_HINGE = int(mujoco.mjtJoint.mjJNT_HINGE)


class _MujocoWithIntJointTypes(types.ModuleType):
    """The ``mujoco`` module as seen by gymnasium-robotics' ``mujoco_utils``: only mjtJoint differs."""

    mjtJoint = _IntJointTypes

    def __getattr__(self, name: str):
        return getattr(mujoco, name)


def fix_gymnasium_robotics_joint_types() -> bool:
    """Make gymnasium-robotics' joint qpos/qvel helpers work with this MuJoCo; True if a fix was needed.

    gymnasium-robotics 1.4.2 asserts ``model.jnt_type[i] in (mjtJoint.mjJNT_HINGE, ...)``;
    ``tuple.__contains__`` compares enum == np.int32, which is False for MuJoCo's pybind
    enums, so every Fetch env fails to build. We hand its ``mujoco_utils`` module a view of
    ``mujoco`` whose joint-type constants are ints; nothing else changes.
    """
    if np.int32(int(mujoco.mjtJoint.mjJNT_SLIDE)) in (mujoco.mjtJoint.mjJNT_SLIDE,):
        return False
    from gymnasium_robotics.utils import mujoco_utils

    if not isinstance(mujoco_utils.mujoco, _MujocoWithIntJointTypes):
        mujoco_utils.mujoco = _MujocoWithIntJointTypes("mujoco")
        logger.debug("patched gymnasium_robotics.utils.mujoco_utils joint-type comparison for mujoco %s",
                     mujoco.__version__)
    return True
