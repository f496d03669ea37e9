"""LoRA fine-tuning of a Robometer model with ``peft``.

* :class:`LoraSettings` - rank, alpha, dropout and target projections (published recipe: r=32,
  alpha=64 on q/k/v/o/gate/up/down of the language model; the vision encoder stays frozen).
* :func:`apply_lora` - inject adapters into a :class:`~rlrm.models.robometer.RobometerModel`
  in place; only adapters and the three heads stay trainable.
* :func:`save_lora` / :func:`load_lora` - adapters + heads to / from a folder
  (``adapter_model.safetensors``, ``adapter_config.json``, ``heads.safetensors``).
* :func:`merge_lora` - fold adapters into the base weights and drop them (for ``save_pretrained``).
* :func:`merged_state_dict` - the folded weights without touching the model (exports mid-training).

``peft`` is imported inside these functions; without it they raise an ImportError naming the
``rlrm[train]`` extra.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["LoraSettings", "apply_lora", "save_lora", "load_lora", "merge_lora", "merged_state_dict", "trainable_parameters",
           "HEAD_PREFIXES"]

log = logging.getLogger(__name__)

#: Parameters trained in full during LoRA fine-tuning (the Robometer heads).
HEAD_PREFIXES = ("progress_head.", "success_head.", "preference_head.")
_ADAPTER = "default"


@dataclass
class LoraSettings:
    """LoRA hyper-parameters.

    Args:
        rank / alpha / dropout: the LoRA update ``alpha / rank * B @ A`` and dropout on its input.
        targets: projection names adapted inside the language model (never the vision encoder).
    """

    rank: int = 32
    alpha: int = 64
    dropout: float = 0.05
    targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )

    def target_regex(self) -> str:
        """peft ``target_modules`` regex: the target projections of ``model.language_model`` only."""
        return r".*language_model\..*\.(" + "|".join(self.targets) + r")$"


def _peft():
    try:
        import peft
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("LoRA fine-tuning needs peft: pip install 'rlrm[train]'") from e
    return peft


def apply_lora(model: nn.Module, settings: LoraSettings | None = None) -> nn.Module:
    """Inject LoRA adapters into ``model`` in place and return it; trainable = adapters + heads.

    >>> from rlrm.models.tiny import tiny_robometer
    >>> model = apply_lora(tiny_robometer(seed=0), LoraSettings(rank=4, alpha=8))
    >>> any("lora_A" in n for n, p in model.named_parameters() if p.requires_grad)
    True
    """
    settings = settings or LoraSettings()
    if settings.rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {settings.rank}")
    peft = _peft()
    from peft.tuners.lora import LoraModel

    if getattr(model, "_rlrm_lora", None) is not None:
        raise ValueError("model already has LoRA adapters; merge_lora() it or start from a fresh model")
    config = peft.LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_regex(),
    )
    wrapper = LoraModel(model, config, _ADAPTER)  # injects in place, freezes the rest
    n_adapted = sum(1 for n, _ in model.named_modules() if n.endswith(tuple(settings.targets)) and "lora" not in n)
    if n_adapted == 0:
        raise ValueError(f"no module of the language model matches LoRA targets {settings.targets}")
    for name, p in model.named_parameters():
        if name.startswith(HEAD_PREFIXES):
            p.requires_grad_(True)
    object.__setattr__(model, "_rlrm_lora", (wrapper, settings))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("LoRA r=%d alpha=%d on %d projections: %d / %d parameters trainable (%.2f%%)",
             settings.rank, settings.alpha, n_adapted, trainable, total, 100 * trainable / total)
    return model


def _settings_of(model: nn.Module) -> LoraSettings:
    state = getattr(model, "_rlrm_lora", None)
    if state is None:
        raise ValueError("model has no LoRA adapters: call apply_lora(model) first")
    return state[1]


def save_lora(model: nn.Module, directory: str | Path) -> Path:
    """Write the adapters, their settings and the head weights of ``model`` to ``directory``."""
    from safetensors.torch import save_file

    peft = _peft()
    settings = _settings_of(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    adapters = peft.get_peft_model_state_dict(model, adapter_name=_ADAPTER)
    save_file({k: v.detach().contiguous().cpu() for k, v in adapters.items()}, directory / "adapter_model.safetensors")
    heads = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k.startswith(HEAD_PREFIXES)}
    save_file(heads, directory / "heads.safetensors")
    (directory / "adapter_config.json").write_text(json.dumps({"rlrm_lora": asdict(settings)}, indent=1))
    return directory


def load_lora(model: nn.Module, directory: str | Path) -> nn.Module:
    """Inject adapters saved by :func:`save_lora` into a fresh ``model`` and load them and the heads."""
    from safetensors.torch import load_file

    peft = _peft()
    directory = Path(directory)
    config_path = directory / "adapter_config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{directory} has no adapter_config.json: not a folder written by save_lora")
    settings = LoraSettings(**json.loads(config_path.read_text())["rlrm_lora"])
    apply_lora(model, settings)
    device = next(model.parameters()).device
    result = peft.set_peft_model_state_dict(
        model, load_file(directory / "adapter_model.safetensors", device=str(device)), adapter_name=_ADAPTER
    )
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"adapter file {directory} has weights the model lacks: {unexpected[:5]}")
    missing_heads = model.load_state_dict(load_file(directory / "heads.safetensors", device=str(device)), strict=False)
    if missing_heads.unexpected_keys:
        raise ValueError(f"heads file {directory} has unexpected weights: {missing_heads.unexpected_keys[:5]}")
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights and remove them; returns the plain model."""
    state: Any = getattr(model, "_rlrm_lora", None)
    if state is None:
        raise ValueError("model has no LoRA adapters to merge")
    wrapper, _ = state
    merged = wrapper.merge_and_unload()
    object.__setattr__(merged, "_rlrm_lora", None)
    for p in merged.parameters():
        p.requires_grad_(True)
    return merged


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict ``model`` would have with its adapters folded in, keys as without LoRA.

    The model keeps its adapters (merged, copied, then unmerged), so training can go on.
    """
    state: Any = getattr(model, "_rlrm_lora", None)
    if state is None:
        raise ValueError("model has no LoRA adapters to merge")
    wrapper, _ = state
    wrapper.merge_adapter()
    try:
        merged = {
            k.replace(".base_layer.", "."): v.detach().clone()
            for k, v in model.state_dict().items()
            if ".lora_" not in k
        }
    finally:
        wrapper.unmerge_adapter()
    return merged


def trainable_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    """Parameters the optimizer should update (all, or adapters + heads after :func:`apply_lora`)."""
    return [p for p in model.parameters() if p.requires_grad]
