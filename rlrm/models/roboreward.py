"""RoboReward: a generative Qwen3-VL that answers "ANSWER: <1-5>" for a video of a robot episode.

* :class:`RoboRewardModel` - the :class:`~rlrm.models.RewardModel`: ``score`` (soft score from one
  forward pass, or greedy generation), ``digit_logits``, the vision-feature cache, checkpoint I/O.
* :func:`tiny_roboreward` - a tiny randomly initialised generative Qwen3-VL for tests (``roboreward:tiny``).
* :func:`roboreward_from_spec` - what ``make_reward_model("roboreward:<spec>")`` calls.
* Re-exported from :mod:`rlrm.models.roboreward_inputs`: :data:`ROBOREWARD_PROMPT`, :data:`ANSWER_PREFIX`,
  :data:`ANSWER_PATTERN`, :class:`RoboRewardConfig`, :func:`video_frame_indices`, :func:`parse_answer`,
  :class:`RoboRewardProcessor`.

Soft score: the prompt ends with the assistant turn start and the forced prefix ``"ANSWER: "``; the
logits of the tokens ``1``..``5`` at the last position, softmaxed over those five, give P(s);
progress = map(E[s]) (``(E[s]-1)/4`` or ``E[s]/5``), success = P(5) (rubric 5, "Perfect Completion:
final state satisfies all requirements", is the only score that means the task is done).

RoboReward judges a whole video, while a :class:`~rlrm.types.RewardResult` holds one value per sent
frame, each depending only on frames up to it. ``per_frame="ends"`` (default) scores two videos per
query: the first frame alone (the reset frame's value, p_{-1}) and all frames (the value at the last
frame); frames in between hold the first frame's value. ``per_frame="all"`` scores every prefix.

>>> from rlrm.models import make_reward_model
>>> model = make_reward_model("roboreward:tiny", seed=0)
>>> q = RewardQuery(np.zeros((4, 64, 64, 3), np.uint8), "reach the red target")
>>> model.score([q])[0].progress.shape
(4,)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlrm.models.base import register_model
from rlrm.models.patch_embed import use_linear_patch_embedding
from rlrm.models.processor import ImageSettings
from rlrm.models.roboreward_inputs import (
    ANSWER_PATTERN,
    ANSWER_PREFIX,
    CONFIG_FILE,
    DECODES,
    ROBOREWARD_PROMPT,
    SCORE_MAPPINGS,
    VIDEO_MAX_PIXELS,
    VIDEO_MIN_PIXELS,
    RoboRewardConfig,
    RoboRewardProcessor,
    VideoInput,
    choice,
    parse_answer,
    video_frame_indices,
)
from rlrm.models.vision_cache import VisionFeatureCache, VisionFeatures
from rlrm.types import ModelInfo, RewardQuery, RewardResult

__all__ = [
    "ROBOREWARD_PROMPT",
    "ANSWER_PREFIX",
    "ANSWER_PATTERN",
    "SCORE_MAPPINGS",
    "RoboRewardConfig",
    "video_frame_indices",
    "parse_answer",
    "RoboRewardProcessor",
    "RoboRewardModel",
    "tiny_roboreward",
    "roboreward_from_spec",
]

log = logging.getLogger(__name__)


class RoboRewardModel(nn.Module):
    """RoboReward as an rlrm reward model: a 1-5 score per video, mapped to progress and success.

    Args:
        generator: a ``transformers`` ``Qwen3VLForConditionalGeneration`` (RoboReward-4B/8B or the tiny one).
        processor: :class:`RoboRewardProcessor` with the matching tokenizer.
        name: reported by ``info()``.

    Methods:
        score(queries, feature_keys=None, decode=None) -> list[RewardResult]: see the module docstring.
        digit_logits(queries) -> (N, 5) logits of '1'..'5' after the forced prefix, one row per query.
        forget_features / feature_cache_stats: the per-frame-pair vision cache (worker streaming).
        save_pretrained / from_pretrained: a transformers checkpoint plus ``roboreward.json``.

    >>> model = tiny_roboreward(seed=0)
    >>> frames = np.zeros((3, 64, 64, 3), np.uint8)
    >>> model.digit_logits([RewardQuery(frames, "open the drawer")]).shape
    (1, 5)
    """

    def __init__(self, generator: Any, processor: RoboRewardProcessor, name: str = "roboreward") -> None:
        super().__init__()
        self.model = generator
        self.processor = processor
        self.name = name
        self.checkpoint: str | None = None  # the directory or hub id the weights came from (None: built here)
        vocab = int(generator.config.text_config.vocab_size)
        if max(processor.digit_ids) >= vocab:
            raise ValueError(f"digit token ids {processor.digit_ids} exceed the model's vocabulary of {vocab}")
        vision = generator.config.vision_config
        geometry = (int(vision.patch_size), int(vision.spatial_merge_size), int(vision.temporal_patch_size))
        image = processor.image
        if (image.patch_size, image.merge_size, image.temporal_patch_size) != geometry:
            raise ValueError(f"processor image geometry {(image.patch_size, image.merge_size, image.temporal_patch_size)}"
                             f" does not match the vision tower's {geometry} (patch, merge, temporal)")
        use_linear_patch_embedding(self.model)
        self.eval()

    @property
    def config(self) -> RoboRewardConfig:
        """The :class:`RoboRewardConfig` in use (shared with the processor)."""
        return self.processor.config

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Parameter dtype (float32 on CPU, bfloat16 on GPU by default)."""
        return next(self.parameters()).dtype

    def info(self) -> ModelInfo:
        """Name, frames per video, the 5 scores as bins, device; ``extra`` names the family and settings."""
        c = self.config
        return ModelInfo(
            name=self.name, max_frames=c.max_frames, image_size=None, progress_bins=5,
            device=str(self.device), dtype=str(self.dtype).replace("torch.", ""),
            extra={"family": "roboreward", "when": "episode_end", "checkpoint": self.checkpoint, "decode": c.decode, "mapping": c.mapping,
                   "per_frame": c.per_frame, "order": c.order, "fps": c.fps,
                   "parameters": int(sum(p.numel() for p in self.parameters())),
                   "min_pixels": c.image.min_pixels, "max_pixels": c.image.max_pixels},
        )

    # ---------------------------------------------------------------- forward

    @property
    def feature_cache(self) -> VisionFeatureCache:
        """Vision outputs per frame pair, keyed by the pair of frame keys (made on first use)."""
        cache = self.__dict__.get("_feature_cache")
        if cache is None:
            cache = self.__dict__["_feature_cache"] = VisionFeatureCache()
        return cache

    def forget_features(self, keys: Iterable[Hashable]) -> None:
        """Drop the cached pairs that hold any of ``keys`` (frames the caller no longer holds)."""
        gone = set(keys)
        self.feature_cache.forget_where(lambda pair: pair[0] in gone or pair[1] in gone)

    def feature_cache_stats(self) -> dict[str, int]:
        """Pairs, bytes, hits, misses and evictions of :attr:`feature_cache`."""
        return self.feature_cache.stats()

    def _vision(self, videos: list[VideoInput]) -> Any:
        """The videos' vision outputs, one entry per frame pair, from the cache where keyed and present."""
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        cache = self.feature_cache
        slots: list[VisionFeatures | None] = []
        todo: list[tuple[int, np.ndarray, tuple[int, int, int], Hashable | None]] = []
        for v in videos:
            grid = self.processor.pair_grid(*v.frames.shape[1:3])
            for j in range(len(v.seconds)):
                key = None if v.keys is None else v.keys[j]
                hit = cache.get(key) if key is not None else None
                if hit is not None and hit.grid == grid:
                    slots.append(hit)
                else:
                    todo.append((len(slots), v.frames[2 * j : 2 * j + 2], grid, key))
                    slots.append(None)
        if todo:
            pixels = np.concatenate([self.processor.patchify_pair(pair) for _, pair, _, _ in todo])
            grids = torch.tensor([g for _, _, g, _ in todo], dtype=torch.int64, device=self.device)
            pv = torch.from_numpy(pixels).to(self.device, self.dtype)
            out = self.model.model.get_video_features(pv, grids, return_dict=True)
            for i, (slot, _, grid, key) in enumerate(todo):
                deep = tuple(layer[i].clone() for layer in out.deepstack_features)
                feats = VisionFeatures(out.pooler_output[i].clone(), deep, grid)
                slots[slot] = feats
                if key is not None:
                    cache.put(key, feats)
        layers = len(slots[0].deepstack)
        return BaseModelOutputWithDeepstackFeatures(
            pooler_output=tuple(f.embeds for f in slots),
            deepstack_features=[tuple(f.deepstack[k] for f in slots) for k in range(layers)],
        )

    def _last_hidden(self, videos: list[VideoInput]) -> torch.Tensor:
        """(len(videos), H) last hidden state (after the final norm) at each prompt's last token."""
        tensors = {k: v.to(self.device) for k, v in self.processor.batch(videos).items()}
        out = self.model.model(**tensors, mm_encoder_outputs={"video": self._vision(videos)}, use_cache=False)
        last = tensors["attention_mask"].sum(dim=1) - 1
        return out.last_hidden_state[torch.arange(len(videos), device=self.device), last]

    def _video_digit_logits(self, videos: list[VideoInput]) -> torch.Tensor:
        """(len(videos), 5) logits of '1'..'5' at the last position (after the forced prefix)."""
        digits = torch.tensor(self.processor.digit_ids, device=self.device)
        return self.model.lm_head(self._last_hidden(videos))[:, digits].float()

    def _generate(self, video: VideoInput) -> str:
        """Greedy generation from the assistant turn start (no forced prefix), decoded."""
        tensors = {k: v.to(self.device) for k, v in self.processor.batch([video], answer_prefix=False).items()}
        tensors["pixel_values_videos"] = torch.from_numpy(self.processor.pixels(video)).to(self.device, self.dtype)
        out = self.model.generate(**tensors, max_new_tokens=self.config.max_new_tokens, do_sample=False,
                                  pad_token_id=self.processor.pad_id)
        return self.processor.tokenizer.decode(out[0, tensors["input_ids"].shape[1]:], skip_special_tokens=True)

    def _queries(self, queries: Any, feature_keys: Any) -> list[RewardQuery]:
        if not isinstance(queries, (list, tuple)):
            raise ValueError(f"score expects a list of RewardQuery, got {type(queries).__name__}")
        for i, q in enumerate(queries):
            if not isinstance(q, RewardQuery):
                raise ValueError(f"queries[{i}] must be a RewardQuery, got {type(q).__name__}")
        if feature_keys is not None and len(feature_keys) != len(queries):
            raise ValueError(f"feature_keys needs one entry per query ({len(queries)}), got {len(feature_keys)}")
        return list(queries)

    def digit_logits(self, queries: list[RewardQuery], max_batch: int = 16) -> np.ndarray:
        """(N, 5) float32 logits of '1'..'5' after the forced prefix, for the whole video of each query."""
        queries = self._queries(queries, None)
        videos = [self.processor.videos(q, None)[-1] for q in queries]
        with torch.inference_mode():
            rows = [self._video_digit_logits(videos[s : s + max_batch]) for s in range(0, len(videos), max_batch)]
        return torch.cat(rows).cpu().numpy() if rows else np.zeros((0, 5), np.float32)

    def score(self, queries: list[RewardQuery], max_batch: int = 16,
              feature_keys: list[Sequence[Hashable] | None] | None = None, decode: str | None = None,
              ) -> list[RewardResult]:
        """Per-frame progress and success for each query (see the module docstring for which frames are scored).

        Args:
            queries: frames (T, H, W, 3) uint8 and task; T and H, W may differ per query.
            max_batch: videos per forward pass.
            feature_keys: per query a key per frame (or None): frame pairs' vision outputs are cached.
            decode: ``"soft"`` | ``"generate"``; default :attr:`RoboRewardConfig.decode`.
        """
        queries = self._queries(queries, feature_keys)
        decode = decode or self.config.decode
        choice("decode", decode, DECODES)
        if not queries:
            return []
        per_query = [self.processor.videos(q, None if feature_keys is None else feature_keys[i])
                     for i, q in enumerate(queries)]
        flat = [v for vs in per_query for v in vs]
        with torch.inference_mode():
            if decode == "soft":
                logits = torch.cat([self._video_digit_logits(flat[s : s + max_batch])
                                    for s in range(0, len(flat), max_batch)])
                probs = torch.softmax(logits, dim=-1).cpu().numpy().astype(np.float64)
                expected = probs @ np.arange(1.0, 6.0)
                success = probs[:, 4]
            else:
                scores = np.asarray([parse_answer(self._generate(v)) for v in flat], np.float64)
                expected, success = scores, (scores == 5).astype(np.float64)
        progress = self.config.progress(expected)
        results, at = [], 0
        for q, vs in zip(queries, per_query, strict=True):
            values_p, values_s = progress[at : at + len(vs)], success[at : at + len(vs)]
            at += len(vs)
            if len(vs) == q.num_frames:  # every prefix scored
                results.append(RewardResult(values_p, values_s))
            else:  # first frame alone, then the whole video: frames in between hold the first value
                p = np.full(q.num_frames, values_p[0]); s = np.full(q.num_frames, values_s[0])  # noqa: E702
                p[-1], s[-1] = values_p[-1], values_s[-1]
                results.append(RewardResult(p, s))
        return results

    # ------------------------------------------------------------ checkpoints

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the transformers checkpoint, the tokenizer and ``roboreward.json`` to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(directory))
        self.processor.tokenizer.save_pretrained(str(directory))
        with open(directory / CONFIG_FILE, "w") as f:
            json.dump(self.config.to_dict(), f, indent=2)
        return directory

    @classmethod
    def from_pretrained(cls, dir_or_hub_id: str | Path, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, attn_implementation: str | None = None,
                        seed: int | None = None, **overrides: Any) -> RoboRewardModel:
        """Load RoboReward (``teetone/RoboReward-4B``, a local copy, or a saved tiny model).

        Args:
            dir_or_hub_id: a directory, or a hub id fetched through the Hugging Face cache
                (``HF_HUB_OFFLINE=1``: cache only; a missing one says how to fetch it).
            device: default ``"cuda"`` when available, else ``"cpu"``; dtype: bf16 on GPU, float32 on CPU.
            attn_implementation: default flash-attention 2 on CUDA when installed, else SDPA.
            seed: accepted so every registry spec takes the same kwargs; unused.
            **overrides: :class:`RoboRewardConfig` fields (``order``, ``decode``, ``mapping``, ``max_frames``,
                ``min_pixels`` / ``max_pixels`` ...), over the checkpoint's ``roboreward.json``.
        """
        from transformers import AutoConfig, AutoTokenizer, Qwen3VLForConditionalGeneration

        from rlrm.models.checkpoint import default_attn_implementation, resolve_checkpoint_dir, resolve_dtype

        directory = resolve_checkpoint_dir(str(dir_or_hub_id))
        raw = json.loads((directory / "config.json").read_text()) if (directory / "config.json").exists() else {}
        if raw.get("model_type") != "qwen3_vl":
            raise ValueError(f"{directory} is not a Qwen3-VL checkpoint (config.json model_type "
                             f"{raw.get('model_type')!r}); expected RoboReward's, e.g. teetone/RoboReward-4B")
        settings = json.loads((directory / CONFIG_FILE).read_text()) if (directory / CONFIG_FILE).exists() else {}
        vision = AutoConfig.from_pretrained(str(directory)).vision_config
        image = dict(settings.pop("image", {}) or {})
        image.update(patch_size=int(vision.patch_size), merge_size=int(vision.spatial_merge_size),
                     temporal_patch_size=int(vision.temporal_patch_size))
        for key in ("min_pixels", "max_pixels"):
            if key in overrides:
                image[key] = overrides.pop(key)
        image.setdefault("min_pixels", VIDEO_MIN_PIXELS)
        image.setdefault("max_pixels", VIDEO_MAX_PIXELS)
        config = RoboRewardConfig.from_dict({**settings, **overrides, "image": image})
        has_tokenizer = (directory / "tokenizer.json").exists() or (directory / "tokenizer_config.json").exists()
        source = directory if has_tokenizer else resolve_checkpoint_dir(config.base_model_id)
        tokenizer = AutoTokenizer.from_pretrained(str(source), padding_side="right")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        generator = Qwen3VLForConditionalGeneration.from_pretrained(
            str(directory), dtype=resolve_dtype(dtype, device), device_map=str(device),
            attn_implementation=attn_implementation or default_attn_implementation(device))
        model = cls(generator, RoboRewardProcessor(tokenizer, config), name=f"roboreward:{dir_or_hub_id}")
        model.checkpoint = str(dir_or_hub_id)
        log.info("loaded RoboReward %s from %s", dir_or_hub_id, directory)
        return model


def tiny_roboreward(seed: int = 0, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32",
                    digit_scale: float = 2.0, attn_implementation: str = "sdpa", **overrides: Any) -> RoboRewardModel:
    """A tiny randomly initialised generative Qwen3-VL RoboReward (same classes as the 4B), equal for equal ``seed``.

    The tokenizer is the tiny one of :mod:`rlrm.models.tiny` with Qwen's digit-splitting pre-tokenizer. So that
    greedy decoding always picks a digit (fidelity tests compare with ``generate``), the untied ``lm_head``
    keeps only the five digit rows: rows 1-4 seeded random directions (made orthogonal to the hidden state of a
    grey probe video, which the prefix token dominates, so the answer follows the video) scaled by
    ``digit_scale``, row 5 minus their sum. Every other token's logit is exactly 0 and the five digit logits
    sum to 0, so the largest is > 0: greedy decoding after ``"ANSWER: "`` always writes a digit.

    Args:
        seed: torch seed of the weights.
        device / dtype: CPU float32 by default.
        digit_scale: length scale of the digit rows (larger: more decisive scores; digit logits stay within
            about +-2 at 2, so float32 rounding differences between batch layouts stay ~3e-6).
        **overrides: :class:`RoboRewardConfig` fields; ``text_*`` / ``vision_*`` backbone config fields.
    """
    from transformers import Qwen3VLForConditionalGeneration

    from rlrm.models.checkpoint import resolve_dtype
    from rlrm.models.tiny import tiny_backbone_config, tiny_tokenizer

    tokenizer = tiny_tokenizer(qwen_split=True, extra_corpus=(ROBOREWARD_PROMPT.format(task="open the drawer"),
                                                              "ANSWER: 1 2 3 4 5"))
    backbone_overrides = {k: overrides.pop(k) for k in list(overrides) if k.startswith(("text_", "vision_"))}
    backbone = tiny_backbone_config(tokenizer, **backbone_overrides)
    backbone.tie_word_embeddings = False
    backbone.text_config.tie_word_embeddings = False
    backbone._attn_implementation = attn_implementation
    vision = backbone.vision_config
    overrides.setdefault("min_pixels", 64 * 64)
    overrides.setdefault("max_pixels", 128 * 128)
    image = ImageSettings(patch_size=int(vision.patch_size), merge_size=int(vision.spatial_merge_size),
                          temporal_patch_size=int(vision.temporal_patch_size),
                          min_pixels=overrides.pop("min_pixels"), max_pixels=overrides.pop("max_pixels"))
    config = RoboRewardConfig(base_model_id="tiny", image=image, **overrides)
    processor = RoboRewardProcessor(tokenizer, config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = Qwen3VLForConditionalGeneration(backbone)
        hidden = int(backbone.text_config.hidden_size)
        rows = torch.randn(4, hidden)
    model = RoboRewardModel(generator, processor, name="roboreward:tiny")
    with torch.no_grad():
        # The last hidden state is mostly the prefix's own token; aim the digit rows at what the video changes.
        generator.lm_head.weight.zero_()
        probe = RewardQuery(np.full((2, 64, 64, 3), 128, np.uint8), "reach")
        common = model._last_hidden(model.processor.videos(probe, None)[-1:])[0]
        rows -= torch.outer(rows @ common, common) / common.dot(common)
        rows *= digit_scale / rows.norm(dim=1, keepdim=True) * hidden**0.5 / 4
        generator.lm_head.weight[processor.digit_ids[:4]] = rows
        generator.lm_head.weight[processor.digit_ids[4]] = -rows.sum(dim=0)
    return model.to(device=device, dtype=resolve_dtype(dtype, device))


def roboreward_from_spec(spec: str, **kwargs: Any) -> RoboRewardModel:
    """``"tiny"`` -> :func:`tiny_roboreward`; anything else -> :meth:`RoboRewardModel.from_pretrained`."""
    if spec == "tiny":
        return tiny_roboreward(**kwargs)
    return RoboRewardModel.from_pretrained(spec, **kwargs)


register_model("roboreward:tiny", tiny_roboreward)
