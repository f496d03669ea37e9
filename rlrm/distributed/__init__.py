"""Actor/learner runs across machines on Ray (``run_rl.py distributed.runners=N``).

(The Ray pool of reward-model replicas, ``RayRewardPool``, is a scorer: :mod:`rlrm.transport.ray`.)

* ``config.py`` - :class:`DistributedConfig` (the ``distributed:`` block) and the checks that run
  before anything starts: values, cluster address, resources on the cluster's nodes.
* ``shared_reward.py`` - one reward source for all runners (a worker URL, or a named actor around
  the pool or model that batches the runners' queries together).
* ``messages.py`` - what runners and the learner exchange: :class:`PolicyWeights`, :class:`RolloutBatch`.
* ``runner.py`` - :class:`EnvRunner`: an env with its reward wrapper, acting with published weights.
* ``learner.py`` - :class:`Learner`: SB3 SAC / residual SAC on the runners' transitions, weights
  published every ``sync_every`` gradient steps, checkpoints and TensorBoard.
* ``run.py`` - :func:`~rlrm.distributed.run.train_distributed`: the Ray half of a run (:mod:`rlrm.run`
  hands off to it for ``distributed.runners >= 1``); :func:`run_distributed` for a config that must be distributed.

Ray and torch are imported when these are used, not when this package is; install Ray with
``pip install 'rlrm[ray]'``. The layout is described in ``docs/distributed.md``.
"""

from rlrm._lazy import lazy_getattr

__all__ = ["DistributedConfig", "EnvRunner", "Learner", "run_distributed"]

_LAZY = {
    "DistributedConfig": "rlrm.distributed.config",
    "EnvRunner": "rlrm.distributed.runner",
    "Learner": "rlrm.distributed.learner",
    "run_distributed": "rlrm.distributed.run",
}


__getattr__ = lazy_getattr('rlrm.distributed', _LAZY, globals())
