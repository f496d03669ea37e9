"""First contact with a robot: ``python -m robots.check ROBOT [--sim]``.

* :func:`check_robot` - connect, read state and cameras, move a few millimetres inside the
  workspace and back, and return what was found.
* :func:`joints_mirror_pose` - whether "joint angles" a backend returned are really the end-effector
  pose padded with zeros (a simulated controller without arm kinematics), so they are not reported.
* :func:`main` - the command line; prints a report.

Nothing here homes the arm or moves it more than ``--mm`` millimetres (default 5).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import numpy as np

__all__ = ["check_robot", "joints_mirror_pose", "main"]

logger = logging.getLogger(__name__)


def joints_mirror_pose(joints, pose) -> bool:
    """True if ``joints`` are ``[x, y, z, roll, pitch, yaw, 0, ...]`` of ``pose`` (m or mm, rad or deg), not joint angles.

    >>> from robots.geometry import EEPose
    >>> pose = EEPose.from_vector([0.3, 0.0, 0.3, np.pi, 0.0, 0.0])
    >>> joints_mirror_pose([0.3, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], pose), joints_mirror_pose([0.0, -0.4, 0.0, 0.9, 0.0, 1.3, 0.0], pose)
    (True, False)
    """
    from robots.geometry import rotation_angle, rpy_to_matrix

    joints = np.asarray(joints, dtype=float).ravel()
    if joints.size < 6 or np.any(joints[6:]):
        return False
    for length_scale in (1.0, 1000.0):  # m, mm
        if not np.allclose(joints[:3], pose.position * length_scale, atol=1e-6 * length_scale):
            continue
        for rpy in (joints[3:6], np.radians(joints[3:6])):  # rad, deg
            if rotation_angle(rpy_to_matrix(rpy), pose.rotation) < 1e-6:
                return True
    return False


def check_robot(name: str, sim: bool = False, mm: float = 5.0, settle_s: float = 1.0, **overrides) -> dict:
    """Connect, read, nudge +``mm`` along x (then back) through the env's safety path; return a report dict.

    >>> report = check_robot("xarm", sim=True, settle_s=0.0)
    >>> report["returned_within_mm"] < 2.0
    True
    """
    from robots import make_robot_env
    from robots.geometry import EEPose

    overrides.setdefault("teleop", None)  # no keyboard listener for a first contact
    env = make_robot_env(name, sim=sim, **overrides)
    report: dict = {"robot": name, "sim": sim, "backend": type(env.backend).__name__}
    try:
        state = env.backend.read_state()
        start = state.pose.copy()
        report.update(
            ee_pose=np.round(start.as_vector(), 4).tolist(),
            gripper=round(float(state.gripper), 3),
            joints=np.round(state.joints, 4).tolist(),
            inside_workspace=env.config.safety.contains(start.position),
        )
        if joints_mirror_pose(state.joints, start):
            # printing them as joints would look plausible and be wrong
            controller = type(getattr(env.backend, "api", env.backend)).__name__
            report["joints"] = None
            report["joints_note"] = (f"not reported: {controller} returns the end-effector pose padded with zeros "
                                     "as joint angles (it models no arm kinematics)")
            logger.warning("%s joints %s", name, report["joints_note"])
        cams = {}
        for cam_name, cam in env.cameras.items():
            frame = cam.read()
            cams[cam_name] = {"shape": list(frame.shape), "mean": round(float(frame.mean()), 1)}
        report["cameras"] = cams
        if not report["inside_workspace"]:
            report["moved"] = False
            report["note"] = "end effector outside the workspace box: not moving (fix workspace or jog the arm)"
            return report
        step = np.array([mm / 1000.0, 0.0, 0.0])
        if not env.config.safety.contains(start.position + step):
            step = -step
        target = EEPose(start.position + step, start.rotation)
        safe = env.safety.apply(target, start)
        for pose in (safe.pose, start):
            deadline = time.monotonic() + max(settle_s, 0.0) + 5.0
            while True:
                env.backend.command_ee(pose, state.gripper)
                reached = np.linalg.norm(env.backend.read_state().pose.position - pose.position) < 1e-3
                if reached or time.monotonic() > deadline:
                    break
                time.sleep(1.0 / env.config.fps)
            if pose is safe.pose:
                moved = env.backend.read_state().pose.position - start.position
                report["moved_mm"] = np.round(moved * 1000, 2).tolist()
        end = env.backend.read_state().pose.position
        report["returned_within_mm"] = round(float(np.linalg.norm(end - start.position) * 1000), 2)
        report["moved"] = True
        return report
    finally:
        env.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m robots.check franka|xarm|so101 [--sim] [--mm 5]``."""
    parser = argparse.ArgumentParser(prog="python -m robots.check", description=__doc__.splitlines()[0])
    parser.add_argument("robot", choices=["franka", "xarm", "so101"])
    parser.add_argument("--sim", action="store_true", help="use the simulated backend")
    parser.add_argument("--mm", type=float, default=5.0, help="how far to nudge the end effector (mm)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report = check_robot(args.robot, sim=args.sim, mm=args.mm)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:>20}: {value}")
    return 0 if report.get("moved") else 1


if __name__ == "__main__":
    sys.exit(main())
