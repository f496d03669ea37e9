"""Train a policy with Robometer rewards: make env -> wrap with reward -> make algorithm -> learn -> evaluate.

    python run_rl.py                                   # FetchReach, demo model in a local worker, SAC
    python run_rl.py algo=ppo total_steps=10000        # another algorithm / budget
    python run_rl.py reward.source=tcp://gpu:5555      # use a running worker instead of starting one
    python run_rl.py reward.mode=async                 # rewards relabelled in the replay buffer as they arrive
    python run_rl.py algo=residual_sac                 # learn a residual on a frozen base policy
    python run_rl.py reward=env_dense                  # baseline: the env's own reward
    python run_rl.py distributed.runners=2             # env runners + a learner on Ray (docs/distributed.md)
    python run_rl.py resume=outputs/run_rl/DATE/TIME   # continue a run from its last checkpoint, in a new folder
    python run_rl.py record.dataset=DIR                # every training and evaluation episode as a LeRobot dataset
    python run_rl.py demos=DIR reward=env_dense        # a LeRobot dataset as the offline half of each SAC batch

Outputs in the Hydra run folder: ``config.yaml`` (resolved), ``tb/`` (TensorBoard), ``checkpoints/``
(policy + replay buffer), ``learning_curve.json``, ``videos/`` (reward videos of evaluation episodes),
``eval_final_frames.npz``, ``reward_model.json`` and ``summary.json``, the same for single-process and
distributed runs. The recipe itself is :func:`rlrm.run.train_single`; :mod:`rlrm.run` is the one driver
(run folder, resume, outputs, summary) for both kinds of run. This file is ``rlrm run`` (:mod:`rlrm.run_cli`)
for a source checkout: the same configs (``configs/`` is a link to the package's ``rlrm/configs/``).
"""

from __future__ import annotations

from rlrm.run import train  # noqa: F401  (run_rl.train: the driver, for scripts that import this file)
from rlrm.run_cli import main

__all__ = ["main", "train"]

if __name__ == "__main__":
    raise SystemExit(main())
