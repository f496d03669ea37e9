"""The shipped demo reward models: tiny Qwen3-VL Robometers trained on CPU from simulator renders.

* :data:`DEMO_DIR` - ``rlrm/models/assets/demo`` (upstream checkpoint layout + ``MODEL_CARD.md``).
* :func:`demo_robometer` - load it (registered as model spec ``"demo"``): FetchReach.
* :data:`DEMO_MW_DIR`, :func:`demo_mw_robometer` - ``"demo_mw"``: MetaWorld push, pick-place and
  drawer-open, conditioned on the task sentence (``experiments/metaworld_demo/``).

Trained from scratch on CPU by ``experiments/demo_model/`` (scripted FetchReach successes, noisy
suboptimal and failed episodes, several phrasings of the instruction) with the published
Robometer objective; see the model card for the data, the command and held-out numbers. It
scores 128x128 frames from ``rlrm/FetchReach-v0`` with the default camera; it knows nothing else.

>>> from rlrm.models import make_reward_model
>>> model = make_reward_model("demo")
>>> model.info().name
'demo'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlrm.models.base import register_model

__all__ = ["DEMO_DIR", "DEMO_MW_DIR", "demo_robometer", "demo_mw_robometer"]

DEMO_DIR = Path(__file__).resolve().parent / "assets" / "demo"
DEMO_MW_DIR = Path(__file__).resolve().parent / "assets" / "demo_mw"


def _load_shipped(name: str, directory: Path, recipe: str, device: str | None, dtype: str | None,
                  **overrides: Any):
    """Load a model shipped in ``directory`` and name it ``name``; a missing one says how to rebuild it."""
    from rlrm.models.robometer import RobometerModel

    if not (directory / "config.json").exists():
        raise FileNotFoundError(f"the {name} model weights are missing from {directory}; rebuild them with {recipe}")
    model = RobometerModel.from_pretrained(directory, device=device, dtype=dtype, **overrides)
    model.name = name
    return model


def demo_robometer(device: str | None = "cpu", dtype: str | None = "float32", **overrides: Any):
    """Load the shipped demo Robometer from :data:`DEMO_DIR` (CPU, float32 by default)."""
    return _load_shipped("demo", DEMO_DIR, "experiments/demo_model/run.sh (see its README)", device, dtype,
                         **overrides)


def demo_mw_robometer(device: str | None = "cpu", dtype: str | None = "float32", **overrides: Any):
    """Load the shipped multi-task MetaWorld Robometer from :data:`DEMO_MW_DIR` (CPU, float32 by default)."""
    return _load_shipped("demo_mw", DEMO_MW_DIR, "experiments/metaworld_demo/run.sh", device, dtype, **overrides)


register_model("demo", demo_robometer)
register_model("demo_mw", demo_mw_robometer)
