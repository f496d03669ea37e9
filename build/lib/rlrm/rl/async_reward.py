"""Asynchronous Robometer rewards (moved to :mod:`rlrm.wrappers.async_reward`; this name stays importable).

* :class:`AsyncRobometerReward`, :class:`AsyncRewardLabeler`, :class:`StepLabel`, :data:`TICKET_KEY` -
  re-exported from :mod:`rlrm.wrappers.async_reward`.
"""

from rlrm.wrappers.async_reward import TICKET_KEY, AsyncRewardLabeler, AsyncRobometerReward, StepLabel

__all__ = ["AsyncRobometerReward", "AsyncRewardLabeler", "StepLabel", "TICKET_KEY"]
