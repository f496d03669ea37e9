"""Compatibility fixes for third-party simulators, applied once and only when needed.

* :func:`fix_gymnasium_robotics_joint_types` - lets gymnasium-robotics 1.4.x build its
  envs with recent MuJoCo (3.17 here), whose joint-type enums no longer equal numpy ints from the left.
* :func:`fix_metaworld_weld_data` - lets MetaWorld 3.0 build its envs with MuJoCo's 12-field eq_data.
* :func:`patch_gymnasium_robotics_on_import` - applies the joint-type fix as soon as gymnasium-robotics'
  ``mujoco_utils`` is imported (``import envs`` calls it), so gymnasium-robotics' own envs
  (``FetchSlide-v4``, ``HandReach-v3``) build too, not only rlrm's.

This module imports MuJoCo only inside the fixes: ``import envs`` stays light and leaves the
choice of ``MUJOCO_GL`` to the moment MuJoCo is first imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import types

__all__ = ["fix_gymnasium_robotics_joint_types", "fix_metaworld_weld_data", "patch_gymnasium_robotics_on_import"]

logger = logging.getLogger(__name__)

_MUJOCO_UTILS = "gymnasium_robotics.utils.mujoco_utils"


class _MujocoWithIntJointTypes(types.ModuleType):
    """The ``mujoco`` module as seen by gymnasium-robotics' ``mujoco_utils``: only mjtJoint differs.

    Its ``mjtJoint`` has plain-int members, so ``np.int32(2) in (SLIDE, HINGE)`` holds.
    """

    def __init__(self, name: str) -> None:
        import mujoco

        super().__init__(name)
        joint = mujoco.mjtJoint
        self.mjtJoint = types.SimpleNamespace(**{k: int(getattr(joint, k)) for k in
                                                 ("mjJNT_FREE", "mjJNT_BALL", "mjJNT_SLIDE", "mjJNT_HINGE")})

    def __getattr__(self, name: str):
        import mujoco

        return getattr(mujoco, name)


def fix_gymnasium_robotics_joint_types() -> bool:
    """Make gymnasium-robotics' joint qpos/qvel helpers work with this MuJoCo; True if a fix was needed.

    gymnasium-robotics 1.4.2 asserts ``model.jnt_type[i] in (mjtJoint.mjJNT_HINGE, ...)``;
    ``tuple.__contains__`` compares enum == np.int32, which is False for MuJoCo's pybind
    enums, so every Fetch env fails to build. We hand its ``mujoco_utils`` module a view of
    ``mujoco`` whose joint-type constants are ints; nothing else changes.
    """
    import mujoco
    import numpy as np

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
    import mujoco
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


class _PatchAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds gymnasium-robotics' ``mujoco_utils`` like the normal path finder, then applies the fix to it."""

    def find_spec(self, fullname, path, target=None):
        """The module's ordinary spec with this object as loader (only for ``mujoco_utils``)."""
        if fullname != _MUJOCO_UTILS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        """Let the original loader create the module."""
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        """Run the module as usual, then patch it (its ``mujoco`` global exists only now)."""
        self._loader.exec_module(module)
        sys.modules[_MUJOCO_UTILS] = module  # the fix imports it by name
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        fix_gymnasium_robotics_joint_types()


def patch_gymnasium_robotics_on_import() -> None:
    """Apply :func:`fix_gymnasium_robotics_joint_types` now if gymnasium-robotics is loaded, else when it loads.

    Importing gymnasium-robotics here would load MuJoCo (and print its notices) on every
    ``import envs``; an import hook costs nothing until ``gym.make("FetchSlide-v4")`` imports it.
    """
    if _MUJOCO_UTILS in sys.modules:
        fix_gymnasium_robotics_joint_types()
    elif not any(isinstance(f, _PatchAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchAfterImport())
