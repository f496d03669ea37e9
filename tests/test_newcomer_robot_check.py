"""`python -m robots.check` never reports the end-effector pose as joint angles."""

from __future__ import annotations

import numpy as np

from robots.check import check_robot, joints_mirror_pose, main
from robots.geometry import EEPose


def test_xarm_sim_report_does_not_pass_the_pose_off_as_joints():
    report = check_robot("xarm", sim=True, settle_s=0.0)
    assert report["moved"] is True
    assert report["joints"] != [*report["ee_pose"], 0.0], report
    assert report["joints"] is None and "FakeXArmAPI returns the end-effector pose" in report["joints_note"]


def test_so101_sim_reports_its_joint_angles():
    report = check_robot("so101", sim=True, settle_s=0.0)
    assert report["joints"] is not None and len(report["joints"]) == 6 and "joints_note" not in report
    assert not joints_mirror_pose(report["joints"], EEPose.from_vector(report["ee_pose"]))


def test_pose_shaped_joints_are_recognised_in_any_unit():
    pose = EEPose.from_vector([0.31, -0.02, 0.28, np.pi, 0.1, -0.3])
    vec = pose.as_vector()
    assert joints_mirror_pose([*vec, 0.0], pose)  # m, rad (the fake xArm)
    assert joints_mirror_pose([*(vec[:3] * 1000), *np.degrees(vec[3:]), 0.0], pose)  # mm, deg
    assert not joints_mirror_pose([0.0, -0.4, 0.0, 0.9, 0.0, 1.3, 0.0], pose)  # real joint angles
    assert not joints_mirror_pose([*vec, 0.2], pose)  # a 7th joint that moved
    assert not joints_mirror_pose([], pose)


def test_cli_prints_the_note_instead_of_fake_joints(capsys):
    assert main(["xarm", "--sim"]) == 0
    out = capsys.readouterr().out
    assert "joints_note: not reported" in out and "joints: None" in out
