"""RoboReward: a generative Qwen3-VL that answers "ANSWER: <1-5>" for a video of a robot episode.

* :data:`ROBOREWARD_PROMPT` - the model card's prompt, verbatim, with ``{task}``.
* :data:`ANSWER_PREFIX` / :data:`ANSWER_PATTERN` - the forced answer prefix and the authors' parsing regex.
* :class:`RoboRewardConfig` - prompt order, frames per video, decoding, score -> progress mapping.
* :func:`video_frame_indices` - which frames of an episode a video holds (``fps``, 4-8 frames).
* :func:`parse_answer` - the 1-5 score in a generated text (the authors' regex), or a clear error.
* :class:`RoboRewardProcessor` - (frames, task) -> padded Qwen3-VL video inputs with the card's prompt.
* :class:`RoboRewardModel` - the :class:`~rlrm.models.RewardModel`: ``score`` (soft score from one
  forward pass, or greedy generation), ``digit_logits``, the vision-feature cache, checkpoint I/O.
* :func:`tiny_roboreward` - a tiny randomly initialised generative Qwen3-VL for tests (``roboreward:tiny``).

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
import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlrm.models.base import register_model
from rlrm.models.patch_embed import use_linear_patch_embedding
from rlrm.models.processor import ImageSettings, normalized_frames, smart_resize
from rlrm.models.vision_cache import VisionFeatureCache, VisionFeatures
from rlrm.sampling import sample_indices
from rlrm.types import ModelInfo, RewardQuery, RewardResult, validate_frames

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
]

log = logging.getLogger(__name__)

ROBOREWARD_PROMPT = (
    "Given the task, assign a discrete progress score reward (1,2,3,4,5) for the robot in the video in the format: "
    "ANSWER: <score>\n"
    "Rubric for end-of-episode progress (judge only the final state without time limits):\n"
    "1 - No Success: Final state shows no goal-relevant change for the command.\n"
    "2 - Minimal Progress: Final state shows a small but insufficient change toward the goal.\n"
    "3 - Partial Completion: The final state shows good progress toward the goal but violates more than one "
    "requirement or a major requirement.\n"
    "4 - Near Completion: Final state is correct in region and intent but misses a single minor requirement.\n"
    "5 - Perfect Completion: Final state satisfies all requirements.\n"
    "\n"
    "Task: {task}"
)
ANSWER_PREFIX = "ANSWER: "
ANSWER_PATTERN = re.compile(r"ANSWER\s*:\s*(\d)")
SCORE_MAPPINGS = ("minus1_over4", "over5")
ORDERS = ("video_first", "text_first")
DECODES = ("soft", "generate")
PER_FRAME = ("ends", "all")
CONFIG_FILE = "roboreward.json"
_DIGITS = ("1", "2", "3", "4", "5")
# qwen-vl-utils' video bounds for Qwen3-VL: 128..768 tokens of 32x32 px per frame.
VIDEO_MIN_PIXELS = 128 * 32 * 32
VIDEO_MAX_PIXELS = 768 * 32 * 32


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"RoboReward {name} must be one of {allowed}, got {value!r}")


@dataclass
class RoboRewardConfig:
    """Everything about a RoboReward model besides its Qwen3-VL weights.

    Args:
        max_frames / min_frames / fps: a video holds frames sampled at ``fps`` (2, as the authors'
            processor), at least ``min_frames`` and at most ``max_frames`` (4 and 8); see
            :func:`video_frame_indices`. A query with more than ``max_frames`` frames is subsampled.
        source_fps: frame rate of ``RewardQuery.frame_index`` (the env's control rate) for the
            timestamps Qwen3-VL puts before each frame pair; None: sent frames are ``1/fps`` s apart.
        order: ``"video_first"`` (the video, then the prompt, in the user turn) or ``"text_first"``.
        decode: ``"soft"`` (one forward pass, expected score) or ``"generate"`` (greedy generation
            parsed with :data:`ANSWER_PATTERN`, the authors' evaluation).
        mapping: score -> progress: ``"minus1_over4"`` ((s-1)/4, 1 -> 0, 5 -> 1) or ``"over5"`` (s/5).
        per_frame: ``"ends"`` (first frame alone + whole video) or ``"all"`` (every prefix); see the module.
        max_new_tokens: generation budget for ``decode="generate"``.
        base_model_id: where the tokenizer comes from when a checkpoint lacks one.
        image: vision geometry and per-frame pixel bounds (qwen-vl-utils' video bounds by default).
    """

    max_frames: int = 8
    min_frames: int = 4
    fps: float = 2.0
    source_fps: float | None = None
    order: str = "video_first"
    decode: str = "soft"
    mapping: str = "minus1_over4"
    per_frame: str = "ends"
    max_new_tokens: int = 16
    base_model_id: str = "Qwen/Qwen3-VL-4B-Instruct"
    image: ImageSettings = field(
        default_factory=lambda: ImageSettings(min_pixels=VIDEO_MIN_PIXELS, max_pixels=VIDEO_MAX_PIXELS)
    )

    def __post_init__(self) -> None:
        _choice("order", self.order, ORDERS)
        _choice("decode", self.decode, DECODES)
        _choice("mapping", self.mapping, SCORE_MAPPINGS)
        _choice("per_frame", self.per_frame, PER_FRAME)
        if not 1 <= int(self.min_frames) <= int(self.max_frames):
            raise ValueError(f"RoboReward needs 1 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if self.fps <= 0 or (self.source_fps is not None and self.source_fps <= 0):
            raise ValueError(f"fps and source_fps must be > 0, got {self.fps}, {self.source_fps}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoboRewardConfig:
        """Inverse of :meth:`to_dict`; unknown keys are rejected."""
        d = dict(d)
        image = d.pop("image", None)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown RoboReward settings {sorted(unknown)}, expected {sorted(cls.__dataclass_fields__)}")
        if image is not None:
            d["image"] = image if isinstance(image, ImageSettings) else ImageSettings.from_dict(image)
        return cls(**d)

    def progress(self, score: np.ndarray | float) -> np.ndarray:
        """Expected (or parsed) 1-5 score -> progress in [0, 1] (``over5``: [0.2, 1])."""
        s = np.asarray(score, np.float64)
        return (s - 1.0) / 4.0 if self.mapping == "minus1_over4" else s / 5.0


def video_frame_indices(num_frames: int, source_fps: float, fps: float = 2.0, min_frames: int = 4,
                        max_frames: int = 8) -> np.ndarray:
    """Indices of an episode of ``num_frames`` frames at ``source_fps`` that a RoboReward video holds.

    ``round(duration * fps)`` frames, clamped to [``min_frames``, ``max_frames``] and to ``num_frames``,
    evenly spaced from the first to the last frame (the authors' processor: 4-8 frames at 2 fps).

    >>> video_frame_indices(100, source_fps=10).tolist()   # 10 s at 10 Hz: 20 frames at 2 fps -> 8
    [0, 14, 28, 42, 57, 71, 85, 99]
    >>> video_frame_indices(3, source_fps=30).tolist()
    [0, 1, 2]
    """
    if num_frames < 1:
        raise ValueError(f"an episode needs at least one frame, got num_frames={num_frames}")
    if source_fps <= 0:
        raise ValueError(f"source_fps must be > 0, got {source_fps}")
    wanted = int(round(num_frames / source_fps * fps))
    n = min(num_frames, max(min_frames, min(max_frames, wanted)))
    return np.unique(np.rint(np.linspace(0, num_frames - 1, n)).astype(np.int64))


def parse_answer(text: str) -> int:
    """The 1-5 score in ``text`` with the authors' regex ``ANSWER\\s*:\\s*(\\d)``.

    >>> parse_answer("ANSWER: 4")
    4
    """
    match = ANSWER_PATTERN.search(text)
    if match is None:
        raise ValueError(f"RoboReward generation {text!r} holds no 'ANSWER: <1-5>'; expected e.g. 'ANSWER: 4' "
                         "(use decode='soft' for a model that does not answer in this format)")
    score = int(match.group(1))
    if not 1 <= score <= 5:
        raise ValueError(f"RoboReward generation {text!r} answers {score}; expected a score in 1..5")
    return score


@dataclass
class _Video:
    """One video to score: frames (even count, last repeated), timestamps per pair, cache keys per pair."""

    frames: np.ndarray
    task: str
    seconds: list[float]
    keys: list[Hashable] | None


class RoboRewardProcessor:
    """(frames, task) -> Qwen3-VL video inputs with the model card's prompt, batched with right padding.

    The user turn holds the video (each frame pair as ``<t seconds><|vision_start|><|video_pad|>...
    <|vision_end|>``, as Qwen3-VL's processor writes it) and the prompt, in ``order``; then the assistant
    turn starts, followed by :data:`ANSWER_PREFIX` for the soft score.

    Args:
        tokenizer: a Qwen tokenizer (digits are single tokens after the prefix's space).
        config: the :class:`RoboRewardConfig` (order, image settings).
    """

    def __init__(self, tokenizer: Any, config: RoboRewardConfig) -> None:
        self.tokenizer = tokenizer
        self.config = config
        vocab = tokenizer.get_vocab()
        needed = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>")
        missing = [t for t in needed if t not in vocab]
        if missing:
            raise ValueError(f"tokenizer lacks Qwen3-VL tokens {missing}; expected a Qwen3-VL tokenizer")
        self.video_pad_id = int(tokenizer.convert_tokens_to_ids("<|video_pad|>"))
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else tokenizer.convert_tokens_to_ids("<|endoftext|>"))
        self.digit_ids = self._digit_ids()

    def _digit_ids(self) -> list[int]:
        """Token ids of '1'..'5' as they follow :data:`ANSWER_PREFIX`; a tokenizer that merges them refuses."""
        prefix = self.tokenizer(ANSWER_PREFIX, add_special_tokens=False)["input_ids"]
        ids = []
        for digit in _DIGITS:
            full = self.tokenizer(ANSWER_PREFIX + digit, add_special_tokens=False)["input_ids"]
            if full[: len(prefix)] != prefix or len(full) != len(prefix) + 1:
                raise ValueError(f"tokenizer splits {ANSWER_PREFIX + digit!r} as {full}, not {prefix} + one digit "
                                 "token; expected a Qwen tokenizer (each digit its own token)")
            ids.append(int(full[-1]))
        return ids

    @property
    def image(self) -> ImageSettings:
        """Vision geometry and pixel bounds."""
        return self.config.image

    def text(self, task: str, seconds: list[float], tokens_per_pair: int, answer_prefix: bool = True) -> str:
        """The rendered chat text of one video (``<|video_pad|>`` already repeated per frame pair)."""
        video = "".join(f"<{t:.1f} seconds><|vision_start|>" + "<|video_pad|>" * tokens_per_pair + "<|vision_end|>"
                        for t in seconds)
        prompt = ROBOREWARD_PROMPT.format(task=task)
        body = video + prompt if self.config.order == "video_first" else prompt + video
        text = f"<|im_start|>user\n{body}<|im_end|>\n<|im_start|>assistant\n"
        return text + ANSWER_PREFIX if answer_prefix else text

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) frames of this size are resized to."""
        s = self.image
        return smart_resize(height, width, s.factor, s.min_pixels, s.max_pixels)

    def pair_grid(self, height: int, width: int) -> tuple[int, int, int]:
        """(1, gh, gw): the patch grid of one frame pair."""
        th, tw = self.target_size(height, width)
        return (1, th // self.image.patch_size, tw // self.image.patch_size)

    def patchify_pair(self, pair: np.ndarray) -> np.ndarray:
        """Two frames (2, H, W, 3) uint8 -> (gh*gw, 3*tp*p*p) float32 patches, Qwen3-VL video order."""
        s = self.image
        if s.temporal_patch_size != 2:
            raise ValueError(f"RoboReward videos pair frames: temporal_patch_size must be 2, got {s.temporal_patch_size}")
        if min(pair.shape[1:3]) < s.factor:
            raise ValueError(f"frames of {pair.shape[1]}x{pair.shape[2]} px are smaller than one vision token "
                             f"({s.factor}x{s.factor} px); render frames of at least {s.factor}x{s.factor}")
        x = normalized_frames(pair, s)  # (2, th, tw, C)
        p, m, tp = s.patch_size, s.merge_size, s.temporal_patch_size
        gh, gw = x.shape[1] // p, x.shape[2] // p
        x = x.reshape(tp, gh // m, m, p, gw // m, m, p, 3)
        x = x.transpose(1, 4, 2, 5, 7, 0, 3, 6)  # (gh/m, gw/m, m, m, C, tp, p, p)
        return np.ascontiguousarray(x).reshape(gh * gw, 3 * tp * p * p)

    def videos(self, query: RewardQuery, keys: Sequence[Hashable] | None) -> list[_Video]:
        """The videos scored for one query: per :attr:`RoboRewardConfig.per_frame`, prefixes ending at the
        scored frames (each subsampled to ``max_frames`` keeping the first and last)."""
        frames = validate_frames(query.frames)
        if not isinstance(query.task, str) or not query.task.strip():
            raise ValueError(f"task must be a non-empty instruction string, got {query.task!r}")
        if keys is not None and len(keys) != len(frames):
            raise ValueError(f"feature_keys entry has {len(keys)} keys for a query of {len(frames)} frames")
        T = len(frames)
        ends = list(range(T)) if self.config.per_frame == "all" else sorted({0, T - 1})
        out = []
        for end in ends:
            picked = sample_indices(end + 1, max(2, self.config.max_frames), "prefix")
            if len(picked) % 2:
                picked = np.append(picked, picked[-1])  # Qwen3-VL pairs frames: the last one is repeated
            if self.config.source_fps is not None and query.frame_index is not None:
                times = query.frame_index[picked].astype(np.float64) / self.config.source_fps
            else:
                times = picked.astype(np.float64) / self.config.fps
            seconds = [float(times[i] + times[i + 1]) / 2 for i in range(0, len(picked), 2)]
            pair_keys = None if keys is None else [(keys[picked[i]], keys[picked[i + 1]]) for i in range(0, len(picked), 2)]
            out.append(_Video(frames[picked], query.task, seconds, pair_keys))
        return out

    def batch(self, videos: list[_Video], answer_prefix: bool = True) -> dict[str, torch.Tensor]:
        """Padded (right) ``input_ids`` / ``attention_mask`` / ``mm_token_type_ids`` and ``video_grid_thw``
        (one (1, gh, gw) row per frame pair) for ``videos``; pixels are made separately (cache)."""
        sequences, grids = [], []
        for v in videos:
            grid = self.pair_grid(*v.frames.shape[1:3])
            tokens = grid[1] * grid[2] // self.image.merge_size**2
            ids = self.tokenizer(self.text(v.task, v.seconds, tokens, answer_prefix), add_special_tokens=False)
            sequences.append(np.asarray(ids["input_ids"], np.int64))
            grids += [grid] * len(v.seconds)
        length = max(len(s) for s in sequences)
        input_ids = np.full((len(sequences), length), self.pad_id, np.int64)
        attention = np.zeros((len(sequences), length), np.int64)
        for i, seq in enumerate(sequences):
            input_ids[i, : len(seq)] = seq
            attention[i, : len(seq)] = 1
        mm_types = ((input_ids == self.video_pad_id) & (attention == 1)).astype(np.int64) * 2  # 2: video
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention),
            "mm_token_type_ids": torch.from_numpy(mm_types),
            "video_grid_thw": torch.from_numpy(np.asarray(grids, np.int64)),
        }

    def pixels(self, video: _Video) -> np.ndarray:
        """All patches of ``video`` (pairs in order), for a plain ``pixel_values_videos`` forward."""
        return np.concatenate([self.patchify_pair(video.frames[i : i + 2]) for i in range(0, len(video.frames), 2)])


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
        with self.feature_cache._lock:
            stale = [k for k in self.feature_cache._entries if k[0] in gone or k[1] in gone]
        self.feature_cache.forget(stale)

    def feature_cache_stats(self) -> dict[str, int]:
        """Pairs, bytes, hits, misses and evictions of :attr:`feature_cache`."""
        return self.feature_cache.stats()

    def _vision(self, videos: list[_Video]) -> Any:
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

    def _last_hidden(self, videos: list[_Video]) -> torch.Tensor:
        """(len(videos), H) last hidden state (after the final norm) at each prompt's last token."""
        tensors = {k: v.to(self.device) for k, v in self.processor.batch(videos).items()}
        out = self.model.model(**tensors, mm_encoder_outputs={"video": self._vision(videos)}, use_cache=False)
        last = tensors["attention_mask"].sum(dim=1) - 1
        return out.last_hidden_state[torch.arange(len(videos), device=self.device), last]

    def _video_digit_logits(self, videos: list[_Video]) -> torch.Tensor:
        """(len(videos), 5) logits of '1'..'5' at the last position (after the forced prefix)."""
        digits = torch.tensor(self.processor.digit_ids, device=self.device)
        return self.model.lm_head(self._last_hidden(videos))[:, digits].float()

    def _generate(self, video: _Video) -> str:
        """Greedy generation from the assistant turn start (no forced prefix), decoded."""
        tensors = {k: v.to(self.device) for k, v in self.processor.batch([video], answer_prefix=False).items()}
        tensors["pixel_values_videos"] = torch.from_numpy(self.processor.pixels(video)).to(self.device, self.dtype)
        tensors["video_grid_thw"] = tensors["video_grid_thw"]
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
        _choice("decode", decode, DECODES)
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
