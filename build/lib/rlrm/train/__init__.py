"""Training Robometer reward models with the published objective (``rlrm train``).

* :mod:`rlrm.train.data` - the on-disk trajectory format, its reader/writer, ``TrajectoryDataset``.
* :mod:`rlrm.train.lerobot_data` - LeRobot v3 datasets as trajectories (pyarrow; video cameras need ``lerobot``).
* :mod:`rlrm.train.losses` - two-hot progress CE, class-balanced success BCE, preference BCE.
* :mod:`rlrm.train.pairs` - forward / rewound / different-instruction views and preference pairs.
* :mod:`rlrm.train.trainer` - ``TrainConfig`` and the ``Trainer`` loop (checkpoints, resume, export).
* :mod:`rlrm.train.lora` - LoRA fine-tuning with ``peft`` (adapters save/load/merge).
* the fast vision patch embedding lives in :mod:`rlrm.models.patch_embed` (used by inference too).
* :mod:`rlrm.train.cli` - the ``rlrm train`` command (Hydra configs in ``configs/train/``).

Nothing is imported here: ``import rlrm.train`` stays free of torch.
"""
