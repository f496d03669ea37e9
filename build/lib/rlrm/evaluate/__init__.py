"""Reward-model quality on trajectory data (``rlrm eval``).

* :mod:`rlrm.evaluate.metrics` - VOC, Kendall tau-a, average precision, F1, confusion matrices (numpy).
* :mod:`rlrm.evaluate.runner` - score a dataset with a model (full or dense mode) and build an ``EvalReport``.
* :mod:`rlrm.evaluate.plots` - predicted-vs-true progress curves and the confusion matrix as PNGs.
* :mod:`rlrm.evaluate.cli` - the ``rlrm eval`` command.
"""
