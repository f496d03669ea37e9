"""Compatibility fixes for third-party simulators, applied once and only when needed.

* :func:`fix_gymnasium_robotics_joint_types` - lets gymnasium-robotics 1.4.x build its
  envs with recent MuJoCo (3.17 here), whose joint-type enums no longer equal numpy ints from the left.
* :func:`fix_metaworld_weld_data` - lets MetaWorld 3.0 build its envs with MuJoCo's 12-field eq_data.
"""

from __future__ import annotations

import logging
import types

import mujoco
import numpy as np

__all__ = ["fix_gymnasium_robotics_joint_types", "fix_metaworld_weld_data"]

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


def fix_metaworld_weld_data() -> bool:
    """Make MetaWorld 3.0's mocap weld reset work when MuJoCo stores more eq_data fields; True if needed.

    MetaWorld 3.0 writes an 11-value array into each weld row of ``model.eq_data``; MuJoCo
    3.17 (here) has 12 values per row (``mjNEQDATA``), so the assignment fails to broadcast and no
    MetaWorld env builds (metaworld 3.1 instead pins mujoco==3.3.0, which would downgrade
    every other user of MuJoCo). We write the same 11 values and keep MuJoCo's extra field.
    """
    from metaworld import sawyer_xyz_env

    probe = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><body name='a' mocap='true'/><body name='b'><freejoint/>"
        "<geom size='.1'/></body></worldbody><equality><weld body1='a' body2='b'/></equality></mujoco>"
    )
    if probe.eq_data.shape[1] == 11 or getattr(sawyer_xyz_env.SawyerMocapBase, "_rlrm_weld_fix", False):
        return False

    def reset_mocap_welds(self) -> None:
        """Resets the mocap welds used for actuation (first 11 eq_data fields, as MetaWorld sets them)."""
        if self.model.nmocap > 0 and self.model.eq_data is not None:
            for i in range(self.model.eq_data.shape[0]):
                if self.model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD:
                    self.model.eq_data[i, :11] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 5.0]

    sawyer_xyz_env.SawyerMocapBase.reset_mocap_welds = reset_mocap_welds
    sawyer_xyz_env.SawyerMocapBase._rlrm_weld_fix = True
    logger.debug("patched metaworld SawyerMocapBase.reset_mocap_welds for mujoco %s", mujoco.__version__)
    return True
