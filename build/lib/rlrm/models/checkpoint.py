"""Robometer checkpoint layouts: find, detect, load and write them.

* ``"upstream"`` - what robometer/robometer saves (``robometer/Robometer-4B``): sharded
  ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json``, keys ``model.visual.*``,
  ``model.language_model.*`` and the heads at top level, the Qwen3-VL ``config.json`` and the
  training ``config.yaml``.
* ``"lerobot"`` - LeRobot's re-export (``lerobot/Robometer-4B``): one ``model.safetensors`` with the
  backbone under ``model.model.*`` (a ``Qwen3VLForConditionalGeneration``; its tied ``lm_head`` may
  hold the embedding), heads at top level, and ``config.json`` carrying ``vlm_config``.

Both layouts also get the tokenizer files and an ``rlrm`` section (image pixel bounds, frames per
query) so a small model trained at low resolution keeps it.

* :func:`resolve_checkpoint_dir` - a directory, or a hub id through the Hugging Face cache/download.
* :func:`detect_layout` - ``"upstream"`` or ``"lerobot"`` from the files in a directory.
* :func:`save_checkpoint` / :func:`load_checkpoint` - what ``RobometerModel.save_pretrained`` /
  ``from_pretrained`` do.
* :func:`resolve_dtype` - a dtype name or torch.dtype, defaulting per device (float32 CPU, bf16 GPU).
* :func:`default_attn_implementation` - flash-attention 2 on CUDA when installed, else SDPA.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml

from rlrm.models.processor import RobometerProcessor, add_robometer_tokens

__all__ = [
    "LAYOUTS",
    "resolve_checkpoint_dir",
    "detect_layout",
    "save_checkpoint",
    "load_checkpoint",
    "resolve_dtype",
    "default_attn_implementation",
]

log = logging.getLogger(__name__)

LAYOUTS = ("upstream", "lerobot")
_INDEX = "model.safetensors.index.json"
_SINGLE = "model.safetensors"
_EMBED = "model.language_model.embed_tokens.weight"
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.yaml", "*.txt", "*.model", "*.jinja", "tokenizer*"]
_HEAD_PREFIXES = ("progress_head.", "success_head.", "preference_head.", "frame_pool_attn.")


def resolve_dtype(dtype: Any, device: Any) -> torch.dtype:
    """``dtype`` as a torch.dtype; None means bfloat16 on CUDA and float32 elsewhere."""
    if dtype is None:
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}, expected e.g. 'float32', 'bfloat16', 'float16'")
    return value


def default_attn_implementation(device: Any) -> str:
    """``"flash_attention_2"`` on CUDA when the flash-attn package is installed, else ``"sdpa"``."""
    import importlib.util

    if str(device).startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _hub_offline() -> bool:
    import huggingface_hub.constants as hub_constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return flag or bool(hub_constants.HF_HUB_OFFLINE)


def resolve_checkpoint_dir(spec: str) -> Path:
    """A local directory for ``spec``: the directory itself, or the hub snapshot of a repo id.

    With ``HF_HUB_OFFLINE=1`` only the local Hugging Face cache is used; a missing snapshot raises
    FileNotFoundError saying how to fetch it.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"checkpoint {spec!r} is a file; expected a checkpoint directory or a hub id")
    repo_id, _, revision = spec.partition("@")
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        raise FileNotFoundError(
            f"no checkpoint directory {spec!r}; expected an existing directory or a hub id like "
            "'robometer/Robometer-4B'"
        )
    import huggingface_hub.constants as hub_constants
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = _hub_offline()
    try:
        return Path(
            snapshot_download(
                repo_id, revision=revision or None, allow_patterns=_HUB_PATTERNS, local_files_only=offline
            )
        )
    except LocalEntryNotFoundError as e:
        if offline:
            flag = next((name for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if os.environ.get(name, "")
                         .strip().lower() in ("1", "true", "yes", "on")), "HF_HUB_OFFLINE")
            why = f"{flag}={os.environ.get(flag, '1')} forbids downloading it"
            fixes = f"unset {flag}, "
        else:
            root = _root_cause(e)
            why = (f"the hub at {hub_constants.ENDPOINT} could not be reached to download it "
                   f"({type(root).__name__}: {_first_line(root)})")
            fixes = ""
        raise FileNotFoundError(
            f"checkpoint {repo_id!r} is not in the local Hugging Face cache and {why}. Fetch it once with "
            f"`hf download {repo_id}` (or `huggingface-cli download {repo_id}`) on a machine with access to the "
            f"hub, {fixes}or pass a local checkpoint directory"
        ) from e


def _root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a ``raise ... from`` / ``during handling`` chain (the network error)."""
    seen = {id(error)}
    while (error.__cause__ or error.__context__) is not None and id(error.__cause__ or error.__context__) not in seen:
        error = error.__cause__ or error.__context__
        seen.add(id(error))
    return error


def _first_line(error: BaseException, limit: int = 160) -> str:
    text = (str(error).strip().splitlines() or [""])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def detect_layout(directory: Path) -> str:
    """``"upstream"`` (sharded/index or Qwen config.json) or ``"lerobot"`` (config.json with vlm_config)."""
    directory = Path(directory)
    config = _read_json(directory / "config.json")
    if (directory / _INDEX).exists() or any(directory.glob("model-*-of-*.safetensors")):
        return "upstream"
    if (directory / _SINGLE).exists():
        if "vlm_config" in config:
            return "lerobot"
        if config.get("model_type") == "qwen3_vl" or (directory / "config.yaml").exists():
            return "upstream"
    files = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    raise ValueError(
        f"{directory} is not a Robometer checkpoint: found {files}; expected sharded "
        f"'model-*-of-*.safetensors' + {_INDEX} (upstream) or '{_SINGLE}' + config.json with "
        "'vlm_config' (lerobot)"
    )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    with open(path) as f:
        return json.load(f)


def _read_tensors(directory: Path, layout: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if layout == "upstream" and (directory / _INDEX).exists():
        weight_map = _read_json(directory / _INDEX).get("weight_map", {})
        files = sorted({directory / name for name in weight_map.values()})
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise ValueError(f"{directory / _INDEX} lists shards that do not exist: {missing}")
    else:
        files = sorted(directory.glob("model-*-of-*.safetensors")) or [directory / _SINGLE]
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        tensors.update(load_file(str(f)))
    return tensors


def _to_internal_keys(tensors: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """Map checkpoint keys onto RobometerModel's state_dict names (backbone under ``model.``)."""
    if layout == "upstream":
        return dict(tensors)
    state: dict[str, torch.Tensor] = {}
    lm_head = None
    for key, value in tensors.items():
        if key.startswith("model.model."):
            state["model." + key[len("model.model.") :]] = value
        elif key == "model.lm_head.weight":
            lm_head = value  # tied to the embedding in Qwen3-VL-4B; safetensors may keep only this name
        else:
            state[key] = value
    if lm_head is not None and _EMBED not in state:
        state[_EMBED] = lm_head
    return state


def _robometer_settings(directory: Path, layout: str, vision: Any) -> dict[str, Any]:
    """RobometerConfig fields from config.yaml (upstream) or config.json (lerobot) plus the rlrm section."""
    if layout == "upstream":
        raw = {}
        if (directory / "config.yaml").exists():
            with open(directory / "config.yaml") as f:
                raw = yaml.safe_load(f) or {}
        model = raw.get("model", {}) or {}
        data = raw.get("data", {}) or {}
        loss = raw.get("loss", {}) or {}
        settings = {
            "progress_bins": model.get("progress_discrete_bins", loss.get("progress_discrete_bins")),
            "max_frames": data.get("max_frames"),
            "base_model_id": model.get("base_model_id"),
        }
        extra = raw.get("rlrm", {}) or {}
    else:
        raw = _read_json(directory / "config.json")
        settings = {
            "progress_bins": raw.get("progress_discrete_bins"),
            "max_frames": raw.get("max_frames"),
            "base_model_id": raw.get("base_model_id"),
        }
        extra = raw.get("rlrm", {}) or {}
    settings = {k: v for k, v in settings.items() if v is not None}
    image = {
        "patch_size": int(vision.patch_size),
        "merge_size": int(vision.spatial_merge_size),
        "temporal_patch_size": int(vision.temporal_patch_size),
    }
    image.update(extra.get("image", {}))
    settings["image"] = image
    if "dropout" in extra:
        settings["dropout"] = extra["dropout"]
    if "max_frames" in extra:
        settings["max_frames"] = extra["max_frames"]
    return settings


def _backbone_config(directory: Path, layout: str, vocab_rows: int) -> Any:
    from transformers import AutoConfig, Qwen3VLConfig

    if layout == "lerobot":
        raw = dict(_read_json(directory / "config.json")["vlm_config"])
    else:
        raw = _read_json(directory / "config.json")
        if raw.get("model_type") != "qwen3_vl":
            base = _robometer_settings(directory, layout, Qwen3VLConfig().vision_config).get(
                "base_model_id", "Qwen/Qwen3-VL-4B-Instruct"
            )
            log.info("no Qwen3-VL config.json in %s; using %s's config", directory, base)
            raw = AutoConfig.from_pretrained(str(resolve_checkpoint_dir(base))).to_dict()
    model_type = raw.pop("model_type", "qwen3_vl")
    if model_type != "qwen3_vl":
        raise ValueError(f"backbone model_type must be 'qwen3_vl', got {model_type!r} in {directory}")
    config = Qwen3VLConfig.from_dict(raw)
    config.text_config.vocab_size = vocab_rows
    return config


def _load_tokenizer(directory: Path, base_model_id: str) -> Any:
    from transformers import AutoTokenizer

    has_tokenizer = (directory / "tokenizer.json").exists() or (directory / "tokenizer_config.json").exists()
    source = directory if has_tokenizer else resolve_checkpoint_dir(base_model_id)
    tokenizer = AutoTokenizer.from_pretrained(str(source), padding_side="right")
    add_robometer_tokens(tokenizer)
    return tokenizer


def _check_keys(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], directory: Path) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(
        f"{k}: {tuple(found[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(expected) & set(found)
        if found[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong:

        def show(keys: list[str]) -> str:
            return f"{keys[:12]}{' ...' if len(keys) > 12 else ''} ({len(keys)})"

        heads = [k for k in missing if k.startswith(_HEAD_PREFIXES)]
        hint = f" - the Robometer heads are missing: {show(heads)}" if heads else ""
        raise ValueError(
            f"checkpoint {directory} does not match the Robometer architecture{hint}; "
            f"missing keys: {show(missing)}; unexpected keys: {show(unexpected)}; wrong shapes: {show(wrong)}"
        )


def load_checkpoint(
    cls: type,
    spec: str,
    device: Any = None,
    dtype: Any = None,
    attn_implementation: str | None = None,
    **overrides: Any,
) -> Any:
    """Build ``cls`` (a RobometerModel) from a checkpoint directory or hub id, either layout."""
    from transformers.initialization import no_init_weights

    from rlrm.models.robometer import RobometerConfig

    directory = resolve_checkpoint_dir(spec)
    layout = detect_layout(directory)
    state = _to_internal_keys(_read_tensors(directory, layout), layout)
    if _EMBED not in state:
        raise ValueError(
            f"checkpoint {directory} ({layout} layout) has no token embedding '{_EMBED}'; "
            f"found {len(state)} tensors starting {sorted(state)[:5]}"
        )
    vocab_rows = int(state[_EMBED].shape[0])
    backbone = _backbone_config(directory, layout, vocab_rows)
    settings = _robometer_settings(directory, layout, backbone.vision_config)
    image_overrides = {k: overrides.pop(k) for k in ("min_pixels", "max_pixels") if k in overrides}
    settings["image"].update(image_overrides)
    settings.update(overrides)
    config = RobometerConfig.from_dict(settings)
    tokenizer = _load_tokenizer(directory, config.base_model_id)
    if len(tokenizer) != vocab_rows:
        raise ValueError(
            f"checkpoint {directory} has a token embedding of {vocab_rows} rows but its tokenizer has "
            f"{len(tokenizer)} tokens after adding the 5 Robometer tokens; expected equal sizes "
            "(Qwen3-VL-4B: 151669 + 5 = 151674)"
        )
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    backbone._attn_implementation = attn_implementation or default_attn_implementation(device)
    target_dtype = resolve_dtype(dtype, device)
    # Allocate straight on the target device in the target dtype, without random init: for the 4B
    # model this keeps peak host memory at about one copy of the weights.
    with no_init_weights(), torch.device(device), _default_dtype(target_dtype):
        model = cls(backbone, RobometerProcessor(tokenizer, config.image), config, name=spec)
    _check_keys(model.state_dict(), state, directory)
    model.load_state_dict(state, strict=True)
    model.layout = layout
    model.eval()
    log.info("loaded %s (%s layout) from %s", spec, layout, directory)
    return model.to(device=device, dtype=target_dtype)


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _rlrm_section(model: Any) -> dict[str, Any]:
    return {"image": model.config.image.to_dict(), "dropout": model.config.dropout, "max_frames": model.config.max_frames}


def save_checkpoint(model: Any, directory: Path, layout: str = "upstream", max_shard_bytes: int = 2 * 1024**3) -> Path:
    """Write ``model`` to ``directory`` in ``layout`` (see the module docstring); returns the directory."""
    from safetensors.torch import save_file

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    backbone = model.model.config.to_dict()
    cfg = model.config
    dtype_name = str(model.dtype).replace("torch.", "")
    if layout == "upstream":
        shards = _shard(state, max_shard_bytes)
        weight_map = {}
        for i, shard in enumerate(shards, start=1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(directory / name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, name))
        total = sum(v.numel() * v.element_size() for v in state.values())
        _write_json(directory / _INDEX, {"metadata": {"total_size": total}, "weight_map": weight_map})
        _write_json(directory / "config.json", backbone)
        train_config = {
            "model": {
                "model_type": "default",
                "base_model_id": cfg.base_model_id,
                "torch_dtype": dtype_name,
                "use_multi_image": True,
                "use_per_frame_progress_token": True,
                "frame_pooling": "mean",
                "progress_loss_type": "discrete",
                "progress_discrete_bins": cfg.progress_bins,
            },
            "data": {"max_frames": cfg.max_frames, "use_multi_image": True},
            "loss": {"progress_loss_type": "discrete", "progress_discrete_bins": cfg.progress_bins},
            "rlrm": _rlrm_section(model),
        }
        with open(directory / "config.yaml", "w") as f:
            yaml.safe_dump(train_config, f, sort_keys=False)
    else:
        lerobot_state = {("model." + k if k.startswith("model.") else k): v for k, v in state.items()}
        save_file(lerobot_state, str(directory / _SINGLE), metadata={"format": "pt"})
        _write_json(
            directory / "config.json",
            {
                "type": "robometer",
                "base_model_id": cfg.base_model_id,
                "torch_dtype": dtype_name,
                "max_frames": cfg.max_frames,
                "use_multi_image": True,
                "use_per_frame_progress_token": True,
                "frame_pooling": "mean",
                "progress_loss_type": "discrete",
                "progress_discrete_bins": cfg.progress_bins,
                "vlm_config": backbone,
                "rlrm": _rlrm_section(model),
            },
        )
    model.processor.tokenizer.save_pretrained(str(directory))
    log.info("saved %s (%s layout) to %s", model.name, layout, directory)
    return directory


def _shard(state: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, value in state.items():
        nbytes = value.numel() * value.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = value
        size += nbytes
    return shards


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=str)
