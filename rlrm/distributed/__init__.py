"""Reward models spread over Ray actors.

* :class:`~rlrm.distributed.pool.RayRewardPool` - a pool of model replicas behind the scorer
  interface (``score``, ``score_async``, ``info``, ``close``); needs ``pip install 'rlrm[ray]'``.

Ray is imported when a pool is made, not when this package is.
"""

from rlrm.distributed.pool import RayRewardPool

__all__ = ["RayRewardPool"]
