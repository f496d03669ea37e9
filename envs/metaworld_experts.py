"""Scripted experts and task state for the MetaWorld tasks rlrm trains and evaluates on.

* :class:`TaskSpec` - a task's success radius (MetaWorld's own) and the distance scale of its progress label.
* :data:`TASK_SPECS` - push, pick-place and drawer-open (the contact tasks of ``configs/env/metaworld_*.yaml``).
* :func:`expert_policy` - MetaWorld's scripted expert for a v3 task (``metaworld.policies``), ``obs -> action``.
* :func:`expert_action` - a ``base_policy.kind=scripted`` target factory for run configs.
* :func:`task_state` - hand-object and object-goal distances and success, read from the simulator.

The experts read object and goal positions from the state observation: simulation only.

>>> import gymnasium as gym, envs
>>> env = gym.make("rlrm/MetaWorld-v0", task_name="push-v3", image_size=64)
>>> obs, _ = env.reset(seed=0)
>>> expert = expert_policy("push-v3")
>>> expert(obs).shape
(4,)
>>> sorted(task_state(env, "push-v3"))
['hand_to_obj', 'obj_to_goal', 'success']
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from envs.metaworld import SUCCESS_RADIUS

__all__ = ["TaskSpec", "TASK_SPECS", "expert_policy", "task_state"]


@dataclass(frozen=True)
class TaskSpec:
    """What rlrm needs to know of a MetaWorld task beyond MetaWorld itself.

    Args:
        policy: class name of its scripted expert in ``metaworld.policies``.
        radius: MetaWorld's success distance between object and goal, metres
            (:data:`envs.metaworld.SUCCESS_RADIUS`, also the size of the drawn success ball).
        move_scale: distance outside the success radius over which the progress label ramps, metres.
    """

    policy: str
    radius: float
    move_scale: float


TASK_SPECS: dict[str, TaskSpec] = {
    "push-v3": TaskSpec("SawyerPushV3Policy", radius=SUCCESS_RADIUS["push-v3"], move_scale=0.25),
    "pick-place-v3": TaskSpec("SawyerPickPlaceV3Policy", radius=SUCCESS_RADIUS["pick-place-v3"], move_scale=0.25),
    "drawer-open-v3": TaskSpec("SawyerDrawerOpenV3Policy", radius=SUCCESS_RADIUS["drawer-open-v3"], move_scale=0.2),
}


def _spec(task_name: str) -> TaskSpec:
    if task_name not in TASK_SPECS:
        raise ValueError(f"no scripted expert spec for MetaWorld task {task_name!r}; expected one of {sorted(TASK_SPECS)}")
    return TASK_SPECS[task_name]


def expert_policy(task_name: str) -> Callable[[np.ndarray], np.ndarray]:
    """MetaWorld's scripted expert for ``task_name``: a function (39,) state -> (4,) action in [-1, 1]."""
    import metaworld.policies as policies

    policy = getattr(policies, _spec(task_name).policy)()

    def act(obs: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():  # "Constant(s) may be too high": MetaWorld clips, and so do we
            warnings.simplefilter("ignore", UserWarning)
            action = policy.get_action(np.asarray(obs, np.float64))
        return np.clip(np.asarray(action, np.float32), -1.0, 1.0)

    return act


def task_state(env: gym.Env, task_name: str) -> dict[str, float]:
    """Distances (metres) and success of the current simulator state of a ``rlrm/MetaWorld-v0`` env."""
    mw = env.unwrapped._mw
    spec = _spec(task_name)
    obj = np.asarray(mw._get_pos_objects(), np.float64)[:3]
    goal = np.asarray(mw._target_pos, np.float64)
    hand = np.asarray(mw.tcp_center, np.float64)
    obj_to_goal = float(np.linalg.norm(obj - goal))
    return {
        "hand_to_obj": float(np.linalg.norm(hand - obj)),
        "obj_to_goal": obj_to_goal,
        "success": bool(obj_to_goal <= spec.radius),
    }
