"""Online RL with Robometer rewards on top of Stable-Baselines3 (the machinery behind ``run_rl.py``).

* ``algorithms.py`` - :func:`make_algorithm` (SAC, PPO, residual SAC), :func:`load_algorithm`.
* ``residual.py`` - :class:`BasePolicy` adapters (scripted, goal-reaching, SB3, LeRobot) and
  :class:`ResidualAction`: ``action = clip(base + scale * residual)``, zero-initialised residual.
* ``async_reward.py`` - :class:`AsyncRobometerReward` / :class:`AsyncRewardLabeler`: rewards
  computed in the background while the env keeps its rate.
* ``relabel_buffer.py`` - SB3 replay buffers that fill rewards in late and sample only labelled
  transitions.
* ``environment.py`` - build a run's env (sim or robot) and put its reward on it.
* ``reward_source.py`` - start / connect the reward worker of a run.
* ``callbacks.py`` - SB3 callbacks: reward scalars to TensorBoard, heartbeat + checkpoints.
* ``checkpoints.py`` - crash-safe checkpoints (policy + replay buffer + step counter), resume.
* ``evaluation.py`` - evaluation episodes judged by the env's own success signal.
* ``run_config.py`` - validate a run config before anything starts.

Importing this package is light; the submodules import torch / SB3 when used.
"""

from rlrm._lazy import lazy_getattr

__all__ = [
    "make_algorithm",
    "load_algorithm",
    "ResidualAction",
    "AsyncRobometerReward",
    "AsyncRewardLabeler",
    "RelabelingReplayBuffer",
    "RelabelingDictReplayBuffer",
    "validate_run_config",
]

_LAZY = {
    "make_algorithm": "rlrm.rl.algorithms",
    "load_algorithm": "rlrm.rl.algorithms",
    "ResidualAction": "rlrm.rl.residual",
    "AsyncRobometerReward": "rlrm.wrappers.async_reward",
    "AsyncRewardLabeler": "rlrm.wrappers.async_reward",
    "RelabelingReplayBuffer": "rlrm.rl.relabel_buffer",
    "RelabelingDictReplayBuffer": "rlrm.rl.relabel_buffer",
    "validate_run_config": "rlrm.rl.run_config",
}


__getattr__ = lazy_getattr('rlrm.rl', _LAZY, globals())
