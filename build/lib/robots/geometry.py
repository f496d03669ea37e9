"""End-effector poses and the rotation conversions the robot backends need.

* :class:`EEPose` - position (m) + rotation matrix of the end effector in the robot base frame.
* :func:`rpy_to_matrix` / :func:`matrix_to_rpy` - roll/pitch/yaw (rad, extrinsic x-y-z) <-> 3x3.
* :func:`quat_to_matrix` / :func:`matrix_to_quat` - quaternion ``[x, y, z, w]`` (franky's order) <-> 3x3.
* :func:`rotvec_to_matrix` / :func:`matrix_to_rotvec` - axis-angle vector (rad) <-> 3x3.

Plain numpy so that ``robots`` needs no scipy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "EEPose",
    "rpy_to_matrix",
    "matrix_to_rpy",
    "quat_to_matrix",
    "matrix_to_quat",
    "rotvec_to_matrix",
    "matrix_to_rotvec",
    "rotation_angle",
]


def rpy_to_matrix(rpy) -> np.ndarray:
    """Rotation matrix (3, 3) from roll, pitch, yaw in rad (R = Rz(yaw) Ry(pitch) Rx(roll))."""
    r, p, y = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def matrix_to_rpy(rot: np.ndarray) -> np.ndarray:
    """Roll, pitch, yaw (3,) in rad from a rotation matrix; inverse of :func:`rpy_to_matrix`."""
    pitch = np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0))
    if abs(np.cos(pitch)) > 1e-9:
        roll = np.arctan2(rot[2, 1], rot[2, 2])
        yaw = np.arctan2(rot[1, 0], rot[0, 0])
    else:  # gimbal lock: put everything in yaw
        roll = 0.0
        yaw = np.arctan2(-rot[0, 1], rot[1, 1])
    return np.array([roll, pitch, yaw])


def quat_to_matrix(quat) -> np.ndarray:
    """Rotation matrix from a quaternion ``[x, y, z, w]`` (normalised here)."""
    x, y, z, w = np.asarray(quat, dtype=float) / np.linalg.norm(quat)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quat(rot: np.ndarray) -> np.ndarray:
    """Quaternion ``[x, y, z, w]`` (w >= 0) from a rotation matrix."""
    m = rot
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q, dtype=float)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def rotvec_to_matrix(rotvec) -> np.ndarray:
    """Rotation matrix from an axis-angle vector (3,) whose norm is the angle in rad."""
    v = np.asarray(rotvec, dtype=float)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def matrix_to_rotvec(rot: np.ndarray) -> np.ndarray:
    """Axis-angle vector (3,), angle in [0, pi], from a rotation matrix."""
    q = matrix_to_quat(rot)
    sin_half = float(np.linalg.norm(q[:3]))
    if sin_half < 1e-12:
        return np.zeros(3)
    angle = 2.0 * np.arctan2(sin_half, q[3])
    return q[:3] / sin_half * angle


def rotation_angle(rot_a: np.ndarray, rot_b: np.ndarray) -> float:
    """Angle in rad of the rotation taking ``rot_a`` to ``rot_b``."""
    cos = (np.trace(rot_a.T @ rot_b) - 1.0) / 2.0
    return float(np.arccos(np.clip(cos, -1.0, 1.0)))


@dataclass
class EEPose:
    """End-effector pose in the robot base frame.

    Args:
        position: (3,) metres.
        rotation: (3, 3) rotation matrix.

    >>> pose = EEPose.from_rpy([0.4, 0.0, 0.3], [np.pi, 0.0, 0.0])
    >>> pose.as_vector().round(3).tolist()
    [0.4, 0.0, 0.3, 3.142, 0.0, 0.0]
    """

    position: np.ndarray
    rotation: np.ndarray

    def __post_init__(self) -> None:
        self.position = np.asarray(self.position, dtype=float).reshape(3)
        self.rotation = np.asarray(self.rotation, dtype=float).reshape(3, 3)

    @classmethod
    def from_rpy(cls, position, rpy) -> EEPose:
        """Pose from a position (m) and roll/pitch/yaw (rad)."""
        return cls(np.asarray(position, dtype=float), rpy_to_matrix(rpy))

    @classmethod
    def from_vector(cls, vec) -> EEPose:
        """Pose from ``[x, y, z, roll, pitch, yaw]`` (m, rad)."""
        vec = np.asarray(vec, dtype=float).reshape(6)
        return cls.from_rpy(vec[:3], vec[3:])

    @property
    def rpy(self) -> np.ndarray:
        """Roll, pitch, yaw (3,) in rad."""
        return matrix_to_rpy(self.rotation)

    @property
    def quat(self) -> np.ndarray:
        """Quaternion ``[x, y, z, w]``."""
        return matrix_to_quat(self.rotation)

    def as_vector(self) -> np.ndarray:
        """``[x, y, z, roll, pitch, yaw]`` (6,) float64, m and rad."""
        return np.concatenate([self.position, self.rpy])

    def copy(self) -> EEPose:
        """An independent copy."""
        return EEPose(self.position.copy(), self.rotation.copy())
