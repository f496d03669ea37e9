"""The Robometer reward model: a Qwen3-VL backbone with progress / success / preference heads.

* :class:`RobometerConfig` - the non-backbone settings (bins, frames per query, image pipeline).
* :class:`PredictionHead` - Robometer's head MLP: Linear -> LayerNorm -> GELU -> Dropout -> Linear.
* :class:`RobometerModel` - scoring (``score``, ``preference``), raw head logits for training
  (``forward_heads``) and checkpoint I/O (``from_pretrained`` / ``save_pretrained``, both the
  upstream and the LeRobot layouts, see :mod:`rlrm.models.checkpoint`).
* :func:`decode_progress` / :func:`decode_success` - logits -> progress in [0, 1] / success probability.

The same class runs the published 4B checkpoint and the tiny test model of :mod:`rlrm.models.tiny`.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlrm.models.patch_embed import use_linear_patch_embedding
from rlrm.models.processor import ImageSettings, ModelInputs, RobometerProcessor
from rlrm.models.vision_cache import VisionFeatureCache, VisionFeatures
from rlrm.types import ModelInfo, RewardQuery, RewardResult

__all__ = ["RobometerConfig", "PredictionHead", "RobometerModel", "decode_progress", "decode_success"]

log = logging.getLogger(__name__)


def decode_progress(logits: torch.Tensor) -> torch.Tensor:
    """Progress in [0, 1] from bin logits (..., bins): softmax-weighted mean of linspace(0, 1, bins)."""
    logits = logits.float()
    centers = torch.linspace(0.0, 1.0, logits.shape[-1], device=logits.device)
    return (torch.softmax(logits, dim=-1) * centers).sum(dim=-1)


def decode_success(logits: torch.Tensor) -> torch.Tensor:
    """Success probability from success logits: sigmoid."""
    return torch.sigmoid(logits.float())


@dataclass
class RobometerConfig:
    """Everything about a Robometer model besides the Qwen3-VL backbone config.

    Args:
        progress_bins: outputs of the progress head (10 for the public model).
        max_frames: frames per query the model was trained with; the dense reward sends at most this many.
        base_model_id: the Qwen3-VL checkpoint the model was trained from (tokenizer fallback).
        image: frame preprocessing; ``min_pixels`` / ``max_pixels`` fix the working resolution.
        dropout: head dropout (active only in ``train()`` mode).
    """

    progress_bins: int = 10
    max_frames: int = 8
    base_model_id: str = "Qwen/Qwen3-VL-4B-Instruct"
    image: ImageSettings = field(default_factory=ImageSettings)
    dropout: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-friendly form."""
        return {
            "progress_bins": self.progress_bins,
            "max_frames": self.max_frames,
            "base_model_id": self.base_model_id,
            "image": self.image.to_dict(),
            "dropout": self.dropout,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RobometerConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        image = ImageSettings.from_dict(d.pop("image", {}))
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown Robometer config keys {sorted(unknown)}, expected {sorted(cls.__dataclass_fields__)}")
        return cls(image=image, **d)


class PredictionHead(nn.Sequential):
    """Robometer head: Linear(H, H/2) -> LayerNorm -> GELU -> Dropout -> Linear(H/2, out)."""

    def __init__(self, hidden: int, out: int, dropout: float = 0.1) -> None:
        super().__init__(
            nn.Linear(hidden, hidden // 2),
            nn.LayerNorm(hidden // 2),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden // 2, out),
        )


class RobometerModel(nn.Module):
    """Robometer: per-frame task progress and success from a Qwen3-VL backbone, plus pairwise preference.

    Each query is one user turn: the progress instruction, then every frame as an image
    followed by ``<|prog_token|>``. The heads read the backbone's last hidden state (after the
    final norm) at each ``<|prog_token|>``: progress = softmax(10 bin logits) . linspace(0, 1, 10),
    success = sigmoid(logit). Attention is causal, so frame i's outputs depend only on frames <= i.
    Queries of different frame counts and image sizes batch together (right padding) and give
    the same numbers as one by one.

    Methods:
        score(queries, feature_keys=None) -> list[RewardResult]: inference (no gradients, dropout off
            even in train mode); with ``feature_keys`` the vision outputs of frames are cached and reused.
        forget_features(keys) / feature_cache_stats(): manage that cache (see :mod:`rlrm.models.vision_cache`).
        preference(query_a, query_b) -> float: P(trajectory A makes more progress than B).
        forward_heads(queries, pairs=None) -> dict: raw head logits **with gradients**, for training:
            ``progress_logits``: list of (T_i, bins) per query, ``success_logits``: list of (T_i,);
            with ``pairs`` (list of (query_a, query_b)) also ``pref_logits``: (P,), sigmoid -> P(A better).
            A pair is one sequence: preference prompt, "This is Trajectory A. ", A's frames (each
            with ``<|prog_token|>``), ``<|split_token|>``, "This is Trajectory B. ", B's frames,
            "Now predict the preference between the two trajectories.", ``<|pref_token|>``;
            the preference head reads the hidden state at ``<|pref_token|>``.
            ``queries``/``pairs`` may also be pre-built :class:`~rlrm.models.processor.ModelInputs`.

    >>> from rlrm.models import make_reward_model
    >>> model = make_reward_model("tiny", seed=0)
    >>> q = RewardQuery(np.zeros((4, 64, 64, 3), np.uint8), "reach the red target")
    >>> res = model.score([q])[0]
    >>> res.progress.shape, res.success.shape
    ((4,), (4,))
    """

    def __init__(
        self,
        backbone_config: Any,
        processor: RobometerProcessor,
        config: RobometerConfig | None = None,
        name: str = "robometer",
    ) -> None:
        from transformers import Qwen3VLModel

        super().__init__()
        self.config = config or RobometerConfig()
        self.processor = processor
        self.name = name
        self.layout: str | None = None
        text = backbone_config.text_config
        if text.vocab_size != len(processor.tokenizer):
            raise ValueError(
                f"backbone vocab_size {text.vocab_size} != tokenizer length {len(processor.tokenizer)}; "
                "expected the embedding to be resized to the tokenizer (Qwen vocab + 5 Robometer tokens)"
            )
        vision = backbone_config.vision_config
        geometry = (int(vision.patch_size), int(vision.spatial_merge_size), int(vision.temporal_patch_size))
        image = processor.image
        if (image.patch_size, image.merge_size, image.temporal_patch_size) != geometry:
            raise ValueError(
                f"processor image geometry (patch {image.patch_size}, merge {image.merge_size}, temporal "
                f"{image.temporal_patch_size}) does not match the vision tower's (patch {geometry[0]}, merge "
                f"{geometry[1]}, temporal {geometry[2]}); build ImageSettings from the model's vision_config"
            )
        self.model = Qwen3VLModel(backbone_config)
        # Same weights and numbers as the Conv3d patch embedding; a matmul is 1.2-1.5x faster on CPU.
        use_linear_patch_embedding(self.model)
        hidden = int(text.hidden_size)
        dropout = self.config.dropout
        self.progress_head = PredictionHead(hidden, self.config.progress_bins, dropout)
        self.success_head = PredictionHead(hidden, 1, dropout)
        self.preference_head = PredictionHead(hidden, 1, dropout)
        # Unused at inference; kept so checkpoints trained with attention pooling load unchanged.
        self.frame_pool_attn = nn.Linear(hidden, 1, bias=False)
        self.eval()

    # ------------------------------------------------------------ properties

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Parameter dtype (float32 on CPU, bfloat16 on GPU by default)."""
        return next(self.parameters()).dtype

    def info(self) -> ModelInfo:
        """Describe the model: name, frames per query, bins, device, parameter count, pixel bounds."""
        img = self.config.image
        return ModelInfo(
            name=self.name,
            max_frames=self.config.max_frames,
            image_size=None,
            progress_bins=self.config.progress_bins,
            device=str(self.device),
            dtype=str(self.dtype).replace("torch.", ""),
            extra={
                "family": "robometer",
                "parameters": int(sum(p.numel() for p in self.parameters())),
                "hidden_size": int(self.model.config.text_config.hidden_size),
                "min_pixels": img.min_pixels,
                "max_pixels": img.max_pixels,
                "layout": self.layout,
            },
        )

    # --------------------------------------------------------------- forward

    def _inputs(self, items: Any, pairs: bool) -> ModelInputs:
        if isinstance(items, ModelInputs):
            return items
        if not isinstance(items, (list, tuple)):
            what = "list of (RewardQuery, RewardQuery) pairs" if pairs else "list of RewardQuery"
            raise ValueError(f"expected a {what}, got {type(items).__name__}")
        if pairs:
            for pair in items:
                if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                    raise ValueError(f"expected (query_a, query_b) pairs, got {type(pair).__name__}")
                _check_queries(list(pair))
            return self.processor.preference_inputs(list(items))
        _check_queries(list(items))
        return self.processor.progress_inputs(list(items))

    def _hidden(self, inputs: ModelInputs) -> torch.Tensor:
        """Last hidden state (after the final norm), (B, L, H)."""
        tensors = inputs.to(self.device, self.dtype).tensors
        out = self.model(**tensors, use_cache=False)
        return out.last_hidden_state

    def _frame_logits(
        self, hidden: torch.Tensor, positions: list[np.ndarray]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        rows = np.concatenate([np.full(len(p), i) for i, p in enumerate(positions)])
        cols = np.concatenate(positions)
        at_tokens = hidden[torch.from_numpy(rows), torch.from_numpy(cols)]  # (sum T, H)
        progress = self.progress_head(at_tokens)
        success = self.success_head(at_tokens).squeeze(-1)
        sizes = [len(p) for p in positions]
        return list(progress.split(sizes)), list(success.split(sizes))

    def forward_heads(self, queries: Any = None, pairs: Any = None) -> dict[str, Any]:
        """Raw head logits with gradients: see the class docstring for the keys and shapes."""
        if queries is None and pairs is None:
            raise ValueError("forward_heads needs queries, pairs, or both; got neither")
        out: dict[str, Any] = {}
        if queries is not None:
            inputs = self._inputs(queries, pairs=False)
            hidden = self._hidden(inputs)
            out["progress_logits"], out["success_logits"] = self._frame_logits(hidden, inputs.prog_positions)
        if pairs is not None:
            inputs = self._inputs(pairs, pairs=True)
            if inputs.pref_positions is None:
                raise ValueError("pairs must be built with RobometerProcessor.preference_inputs")
            hidden = self._hidden(inputs)
            rows = torch.arange(hidden.shape[0])
            at_pref = hidden[rows, torch.from_numpy(inputs.pref_positions)]
            out["pref_logits"] = self.preference_head(at_pref).squeeze(-1)
        return out

    def score(
        self, queries: list[RewardQuery], max_batch: int = 32, feature_keys: list[Sequence[Hashable]] | None = None
    ) -> list[RewardResult]:
        """Per-frame progress and success for each query, in order (batched, no gradients).

        Args:
            queries: RewardQuery list; frames (T, H, W, 3) uint8, T and H, W may differ per query.
            max_batch: queries per backbone forward; larger batches are split.
            feature_keys: optional, per query a key per frame (or None for a query to leave
                uncached): the vision-tower outputs of a keyed frame are computed once, kept in
                :attr:`feature_cache` and reused whenever the key comes again. A key must always
                name the same pixels (the reward worker uses its frame store's ids). Exact: the
                vision tower sees each image on its own.
        """
        if not isinstance(queries, (list, tuple)):
            raise ValueError(f"score expects a list of RewardQuery, got {type(queries).__name__}")
        if feature_keys is not None and len(feature_keys) != len(queries):
            raise ValueError(f"feature_keys needs one entry per query ({len(queries)}), got {len(feature_keys)}")
        if not queries:
            return []
        results: list[RewardResult] = []
        with _eval_mode(self), torch.inference_mode():
            for start in range(0, len(queries), max_batch):
                chunk = list(queries[start : start + max_batch])
                keys = None if feature_keys is None else list(feature_keys[start : start + max_batch])
                if keys is None or all(k is None for k in keys):
                    logits = self.forward_heads(chunk)
                else:
                    logits = self._cached_frame_logits(chunk, keys)
                for prog, succ in zip(logits["progress_logits"], logits["success_logits"], strict=True):
                    results.append(
                        RewardResult(decode_progress(prog).cpu().numpy(), decode_success(succ).cpu().numpy())
                    )
        return results

    # ------------------------------------------------------- vision feature cache

    @property
    def feature_cache(self) -> VisionFeatureCache:
        """The per-frame vision feature cache used by ``score(..., feature_keys=...)`` (made on first use)."""
        cache = self.__dict__.get("_feature_cache")
        if cache is None:
            cache = self.__dict__["_feature_cache"] = VisionFeatureCache()
        return cache

    def forget_features(self, keys: Iterable[Hashable]) -> None:
        """Drop the cached vision features of ``keys`` (frames the caller no longer holds)."""
        self.feature_cache.forget(keys)

    def feature_cache_stats(self) -> dict[str, int]:
        """Frames, bytes, hits, misses and evictions of :attr:`feature_cache`."""
        return self.feature_cache.stats()

    def _cached_frame_logits(self, queries: list[RewardQuery], keys: list[Any]) -> dict[str, Any]:
        """``forward_heads`` for inference, with vision outputs read from / written to the feature cache."""
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        _check_queries(queries)
        cache = self.feature_cache
        known: dict[Hashable, VisionFeatures | None] = {}  # held here: LRU eviction mid-batch cannot lose one
        need: list[np.ndarray] = []
        for q, ks in zip(queries, keys, strict=True):
            if ks is None:
                need.append(np.ones(q.num_frames, bool))
                continue
            if len(ks) != q.num_frames:
                raise ValueError(f"feature_keys entry has {len(ks)} keys for a query of {q.num_frames} frames")
            mask = np.zeros(q.num_frames, bool)
            grid = tuple(int(g) for g in self.processor.grid(1, *q.frames.shape[1:3])[0])
            for t, key in enumerate(ks):
                if key in known:
                    continue
                hit = cache.get(key)
                if hit is None or hit.grid != grid:  # a key reused for another frame size: recompute
                    mask[t] = True
                    known[key] = None  # computed below, once even if several queries name it
                else:
                    known[key] = hit
            need.append(mask)
        inputs = self.processor.progress_inputs(queries, pixels_for=need).to(self.device, self.dtype)
        tensors = dict(inputs.tensors)
        pixel_values = tensors.pop("pixel_values")
        grids = tensors["image_grid_thw"]
        flat_need = torch.from_numpy(np.concatenate(need)).to(grids.device)
        computed: list[VisionFeatures] = []
        if bool(flat_need.any()):
            out = self.model.get_image_features(pixel_values, grids[flat_need], return_dict=True)
            layers = len(out.deepstack_features)
            new_grids = grids[flat_need].tolist()
            for i, embeds in enumerate(out.pooler_output):
                # clone: a view would keep the whole batch's tensor alive in the cache
                deep = tuple(out.deepstack_features[layer][i].clone() for layer in range(layers))
                computed.append(VisionFeatures(embeds.clone(), deep, tuple(new_grids[i])))
        embeds, deepstack, fresh = [], [], iter(computed)
        for q, ks, mask in zip(queries, keys, need, strict=True):
            for t in range(q.num_frames):
                if mask[t]:
                    feats = next(fresh)
                    if ks is not None:
                        known[ks[t]] = feats
                        cache.put(ks[t], feats)
                else:
                    feats = known[ks[t]]
                embeds.append(feats.embeds)
                deepstack.append(feats.deepstack)
        image = BaseModelOutputWithDeepstackFeatures(
            pooler_output=tuple(embeds),
            deepstack_features=[tuple(d[layer] for d in deepstack) for layer in range(len(deepstack[0]))],
        )
        out = self.model(**tensors, mm_encoder_outputs={"image": image}, use_cache=False)
        progress, success = self._frame_logits(out.last_hidden_state, inputs.prog_positions)
        return {"progress_logits": progress, "success_logits": success}

    def preferences(self, pairs: list[tuple[RewardQuery, RewardQuery]]) -> np.ndarray:
        """P(A makes more progress than B) for each (query_a, query_b) pair, (P,) float32."""
        with _eval_mode(self), torch.inference_mode():
            logits = self.forward_heads(pairs=list(pairs))["pref_logits"]
        return decode_success(logits).cpu().numpy().astype(np.float32)

    def preference(self, query_a: RewardQuery, query_b: RewardQuery) -> float:
        """P(trajectory A makes more progress on the shared task than trajectory B)."""
        return float(self.preferences([(query_a, query_b)])[0])

    # ------------------------------------------------------------ checkpoints

    def save_pretrained(self, directory: str | Path, layout: str = "upstream", max_shard_bytes: int = 2 * 1024**3) -> Path:
        """Write weights, configs and tokenizer to ``directory`` in the ``"upstream"`` or ``"lerobot"`` layout.

        ``max_shard_bytes`` bounds each upstream safetensors shard (the LeRobot layout is one file).
        """
        from rlrm.models.checkpoint import save_checkpoint

        return save_checkpoint(self, Path(directory), layout, max_shard_bytes=max_shard_bytes)

    @classmethod
    def from_pretrained(
        cls,
        dir_or_hub_id: str | Path,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        attn_implementation: str | None = None,
        seed: int | None = None,
        **overrides: Any,
    ) -> RobometerModel:
        """Load a checkpoint directory or hub id (upstream or LeRobot layout, detected).

        Args:
            dir_or_hub_id: local directory, or a hub id such as ``"robometer/Robometer-4B"``
                (downloaded with huggingface_hub unless ``HF_HUB_OFFLINE=1``).
            device: default ``"cuda"`` when available, else ``"cpu"``.
            dtype: default bfloat16 on GPU, float32 on CPU.
            attn_implementation: ``"sdpa"``, ``"flash_attention_2"`` or ``"eager"``; default flash-attention 2
                on CUDA when the flash-attn package is installed, else SDPA.
            seed: accepted so every registry spec takes the same kwargs; loaded weights do not use it.
            **overrides: RobometerConfig fields to change (e.g. ``max_frames``).
        """
        from rlrm.models.checkpoint import load_checkpoint

        return load_checkpoint(
            cls, str(dir_or_hub_id), device=device, dtype=dtype, attn_implementation=attn_implementation,
            **overrides,
        )


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Dropout off while scoring, restoring train() mode after (scoring mid-training stays deterministic)."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _check_queries(queries: list[Any]) -> None:
    for i, q in enumerate(queries):
        if not isinstance(q, RewardQuery):
            raise ValueError(f"queries[{i}] must be a RewardQuery, got {type(q).__name__}")
