"""The ``demo`` reward model: a tiny Qwen3-VL Robometer trained on FetchReach, shipped in the repo.

* :data:`DEMO_DIR` - ``rlrm/models/assets/demo`` (upstream checkpoint layout + ``MODEL_CARD.md``).
* :func:`demo_robometer` - load it (registered as model spec ``"demo"``).

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

__all__ = ["DEMO_DIR", "demo_robometer"]

DEMO_DIR = Path(__file__).resolve().parent / "assets" / "demo"


def demo_robometer(device: str | None = "cpu", dtype: str | None = "float32", **overrides: Any):
    """Load the shipped demo Robometer from :data:`DEMO_DIR` (CPU, float32 by default)."""
    from rlrm.models.robometer import RobometerModel

    if not (DEMO_DIR / "config.json").exists():
        raise FileNotFoundError(
            f"the demo model weights are missing from {DEMO_DIR}; rebuild them with "
            "experiments/demo_model/run.sh (see its README)"
        )
    model = RobometerModel.from_pretrained(DEMO_DIR, device=device, dtype=dtype, **overrides)
    model.name = "demo"
    return model


register_model("demo", demo_robometer)
