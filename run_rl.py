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

Outputs in the Hydra run folder: ``config.yaml`` (resolved), ``tb/`` (TensorBoard), ``checkpoints/``
(policy + replay buffer), ``learning_curve.json``, ``videos/`` (reward videos of evaluation episodes),
``eval_final_frames.npz``, ``reward_model.json`` and ``summary.json``, the same for single-process and
distributed runs. The recipe itself is :func:`rlrm.run.train_single`; :mod:`rlrm.run` is the one driver
(run folder, resume, outputs, summary) for both kinds of run.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from rlrm.config import CONFIG_DIR, register_configs
from rlrm.known_notices import silence_known_notices
from rlrm.run import main as run_main
from rlrm.run import train

silence_known_notices()  # gymnasium-robotics' Adroit notice, PyOpenGL's accelerate line, robosuite's macros

__all__ = ["main", "train"]


register_configs()  # the typed defaults (rlrm/config.py) that the YAML in rlrm/configs/ overrides


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    """Compose the config from ``configs/`` and the command line, then run it (:func:`rlrm.run.main`)."""
    run_main(cfg)


if __name__ == "__main__":
    main()
