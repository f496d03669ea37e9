"""Scripted expert and task state for LIBERO-Spatial task 0 (the black bowl between the plate and the ramekin).

* :class:`TaskSpec` - the objects of a LIBERO pick-and-place task, LIBERO's success radius and the distance
  scale of its progress label.
* :data:`TASK_SPECS` - ``("libero_spatial", 0)``: "pick up the black bowl between the plate and the ramekin
  and place it on the plate".
* :class:`BowlOnPlateExpert` - waypoints from the simulator's object poses: above the bowl's rim, descend,
  close, lift, above the plate, descend, open, retreat.
* :func:`expert_policy` - that expert for a ``rlrm/LIBERO-v0`` env, ``obs -> action``.
* :func:`task_state` - gripper-bowl and bowl-plate distances, lift and LIBERO's success, read from the simulator.

The expert reads object and gripper positions from the MuJoCo state of the env it is given: simulation only.
It keeps the phase of its waypoint sequence and starts again whenever the env starts a new episode.

>>> import gymnasium as gym, envs  # doctest: +SKIP
>>> env = gym.make("rlrm/LIBERO-v0", suite="libero_spatial", task_id=0, image_size=64)  # doctest: +SKIP
>>> obs, _ = env.reset(seed=0)  # doctest: +SKIP
>>> expert = expert_policy(env)  # doctest: +SKIP
>>> expert(obs).shape  # doctest: +SKIP
(7,)
>>> sorted(task_state(env))  # doctest: +SKIP
['bowl_lift', 'bowl_to_plate', 'hand_to_bowl', 'success']
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

__all__ = ["TaskSpec", "TASK_SPECS", "BowlOnPlateExpert", "expert_policy", "task_state"]

# robosuite's OSC_POSE controller moves the goal by at most 5 cm per unit of action (output_max 0.05).
_GAIN = 12.0             # action per metre of position error (0.083 m error -> full speed)
_OPEN, _CLOSE = -1.0, 1.0


@dataclass(frozen=True)
class TaskSpec:
    """What rlrm needs to know of a LIBERO pick-and-place task beyond LIBERO itself.

    Args:
        obj: the object to pick (a key of the scene's ``obj_body_id``).
        target: the object to place it on.
        radius: LIBERO's ``On`` predicate: horizontal centre distance below which (with contact) the object
            is on the target, metres.
        move_scale: distance outside ``radius`` over which the progress label ramps, metres.
        rim_offset: (3,) where the fingers grip, relative to the object's body origin, metres (a point of
            the bowl's wall, reached with the fingers closing across it).
    """

    obj: str
    target: str
    radius: float
    move_scale: float
    rim_offset: tuple[float, float, float]


TASK_SPECS: dict[tuple[str, int], TaskSpec] = {
    ("libero_spatial", 0): TaskSpec("akita_black_bowl_1", "plate_1", radius=0.03, move_scale=0.15,
                                    rim_offset=(0.0, -0.048, 0.035)),
}


def _spec(env: gym.Env) -> TaskSpec:
    base = env.unwrapped
    key = (getattr(base, "suite", None), getattr(base, "task_id", None))
    if key not in TASK_SPECS:
        raise ValueError(f"no scripted expert for LIBERO task {key}; expected a rlrm/LIBERO-v0 env of one of "
                         f"{sorted(TASK_SPECS)}")
    return TASK_SPECS[key]


def _positions(env: gym.Env, spec: TaskSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Gripper site, object and target body positions (world, metres) and the finger opening (metres)."""
    libero = env.unwrapped._libero.env
    data = libero.sim.data
    robot = libero.robots[0]
    hand = np.array(data.site_xpos[robot.eef_site_id], np.float64)
    obj = np.array(data.body_xpos[libero.obj_body_id[spec.obj]], np.float64)
    target = np.array(data.body_xpos[libero.obj_body_id[spec.target]], np.float64)
    fingers = data.qpos[robot._ref_gripper_joint_pos_indexes]
    return hand, obj, target, float(fingers[0] - fingers[1])


def task_state(env: gym.Env) -> dict[str, float]:
    """Distances (metres) and success of the current simulator state of a ``rlrm/LIBERO-v0`` env.

    ``hand_to_bowl``: gripper site to the grasp point on the bowl's rim; ``bowl_to_plate``: horizontal distance
    of the bowl's centre from the plate's (LIBERO's ``On`` needs < 3 cm and contact); ``bowl_lift``: height of
    the bowl above the plate's origin; ``success``: LIBERO's own check.
    """
    spec = _spec(env)
    hand, obj, target, _ = _positions(env, spec)
    return {
        "hand_to_bowl": float(np.linalg.norm(hand - (obj + spec.rim_offset))),
        "bowl_to_plate": float(np.linalg.norm(obj[:2] - target[:2])),
        "bowl_lift": float(obj[2] - target[2]),
        "success": bool(env.unwrapped._libero.check_success()),
    }


class BowlOnPlateExpert:
    """Pick the bowl by its rim and put it on the plate, from the simulator's poses (a ``obs -> action`` callable).

    Phases: ``above`` the rim (10 cm up, gripper open), ``descend`` to it, ``close`` (12 steps), ``lift``
    (12 cm), ``carry`` until the bowl's centre is above the plate's, ``lower`` until the bowl is 1.5 cm above
    its resting height, ``release`` (10 steps), ``retreat`` 10 cm up. A grasp that closes on nothing opens and
    starts again. ``noise`` adds Gaussian noise (std, action units) to the motion; ``rng`` draws it.

    Args:
        env: a ``rlrm/LIBERO-v0`` env of a task in :data:`TASK_SPECS` (wrappers allowed).
        noise: std of the action noise on the 3 translation components.
        rng: generator of the noise.
        place_offset: (2,) where to put the bowl's centre relative to the plate's, metres (0: on the plate;
            5-10 cm away makes a near miss).
    """

    PHASES = ("above", "descend", "close", "lift", "carry", "lower", "release", "retreat")

    def __init__(self, env: gym.Env, noise: float = 0.0, rng: np.random.Generator | None = None,
                 place_offset: tuple[float, float] = (0.0, 0.0)) -> None:
        self.env = env
        self.place_offset = np.asarray(place_offset, np.float64).reshape(2)
        self.spec = _spec(env)
        self.noise = float(noise)
        self.rng = rng or np.random.default_rng(0)
        self.reset()

    def reset(self) -> None:
        """Start the waypoint sequence again (done automatically on a new episode)."""
        self.phase = "above"
        self.count = 0
        self.offset = np.zeros(3)       # bowl centre - gripper, measured once lifted
        self.rest_z = None              # gripper height of the grasp
        self._elapsed = -1

    def _move(self, hand: np.ndarray, goal: np.ndarray, gripper: float) -> np.ndarray:
        motion = np.clip(_GAIN * (goal - hand), -1.0, 1.0)
        if self.noise:
            motion = motion + self.rng.normal(0.0, self.noise, size=3)
        return np.r_[np.clip(motion, -1.0, 1.0), np.zeros(3), gripper].astype(np.float32)

    def __call__(self, obs: np.ndarray | None = None) -> np.ndarray:
        """The action for the env's current state (``obs`` is not needed: poses come from the simulator)."""
        elapsed = int(self.env.unwrapped.elapsed_steps)
        if elapsed < self._elapsed or elapsed == 0:
            self.reset()
        self._elapsed = elapsed
        spec = self.spec
        hand, obj, target, opening = _positions(self.env, spec)
        target = target + np.r_[self.place_offset, 0.0]
        grasp = obj + np.asarray(spec.rim_offset)
        self.count += 1
        if self.phase == "above":
            goal = grasp + [0.0, 0.0, 0.10]
            if np.linalg.norm(goal - hand) < 0.015:
                self._next("descend")
            return self._move(hand, goal, _OPEN)
        if self.phase == "descend":
            if np.linalg.norm(grasp - hand) < 0.008 or self.count > 40:
                self.rest_z = hand[2]
                self._next("close")
            return self._move(hand, grasp, _OPEN)
        if self.phase == "close":
            if self.count >= 12:
                if opening < 0.004:      # closed on nothing: open and try again
                    self._next("above")
                else:
                    self._next("lift")
            return self._move(hand, hand, _CLOSE)
        if self.phase == "lift":
            goal = np.r_[hand[:2], self.rest_z + 0.12]
            if abs(goal[2] - hand[2]) < 0.015 or self.count > 30:
                self.offset = obj - hand
                self._next("carry")
            return self._move(hand, goal, _CLOSE)
        if self.phase == "carry":
            goal = np.r_[target[:2] - self.offset[:2], self.rest_z + 0.12]
            if np.linalg.norm(obj[:2] - target[:2]) < 0.01 or self.count > 60:
                self._next("lower")
            return self._move(hand, goal, _CLOSE)
        if self.phase == "lower":
            goal = np.r_[target[:2] - self.offset[:2], self.rest_z + 0.015]
            if hand[2] < self.rest_z + 0.02 or self.count > 40:
                self._next("release")
            return self._move(hand, goal, _CLOSE)
        if self.phase == "release":
            if self.count >= 10:
                self._next("retreat")
            return self._move(hand, hand, _OPEN)
        return self._move(hand, np.r_[hand[:2], self.rest_z + 0.10], _OPEN)

    def _next(self, phase: str) -> None:
        self.phase, self.count = phase, 0


def expert_policy(env: gym.Env, noise: float = 0.0, seed: int = 0,
                  place_offset: tuple[float, float] = (0.0, 0.0)) -> BowlOnPlateExpert:
    """The scripted expert for the LIBERO task of ``env``: a callable ``obs -> (7,) action`` in [-1, 1]
    (see :class:`BowlOnPlateExpert` for ``noise`` and ``place_offset``)."""
    return BowlOnPlateExpert(env, noise=noise, rng=np.random.default_rng(seed), place_offset=place_offset)
