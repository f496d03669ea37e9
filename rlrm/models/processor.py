"""Frames + task -> Qwen3-VL model inputs, exactly as Robometer builds them.

* :data:`ROBOMETER_SPECIAL_TOKENS` - the five tokens Robometer appends to the Qwen tokenizer, in order.
* :func:`progress_prompt` / :func:`preference_prompt` - the instruction sentences of the public model.
* :func:`smart_resize` - qwen-vl-utils' resize rule (multiples of ``patch * merge``, pixel bounds).
* :func:`normalized_frames` - frames resized by :func:`smart_resize` and normalised (images and videos).
* :class:`ImageSettings` - patch/merge sizes, normalisation and pixel bounds of the image pipeline.
* :class:`RobometerProcessor` - builds padded ``input_ids`` + ``pixel_values`` batches for progress
  queries (one ``<|prog_token|>`` after each frame) and preference pairs (``<|split_token|>``
  between the trajectories, ``<|pref_token|>`` last).

The prompt is the Qwen3-VL chat template rendered for one user turn with ``add_vision_id=True``,
no system turn and no generation prompt::

    <|im_start|>user\\n{prompt}Picture 1: <|vision_start|><|image_pad|>...<|vision_end|><|prog_token|>
    Picture 2: ...<|im_end|>\\n

Tokenised text is cached per (task, frame count), images are resized with PIL (bicubic, as
qwen-vl-utils does) and patchified with numpy, so building a batch costs well under a millisecond
per frame at robot-camera resolutions.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from PIL import Image

from rlrm.types import RewardQuery, validate_frames

__all__ = [
    "ROBOMETER_SPECIAL_TOKENS",
    "progress_prompt",
    "preference_prompt",
    "smart_resize",
    "ImageSettings",
    "normalized_frames",
    "ModelInputs",
    "RobometerProcessor",
    "add_robometer_tokens",
]

# Order is part of the checkpoint contract: these rows follow the base vocabulary in this order.
ROBOMETER_SPECIAL_TOKENS = (
    "<|split_token|>",
    "<|reward_token|>",
    "<|pref_token|>",
    "<|sim_token|>",
    "<|prog_token|>",
)

# Qwen special tokens the prompt structure needs (the tiny tokenizer defines exactly these).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

_IMAGE_SLOT = "<|vision_start|><|image_pad|><|vision_end|>"


def progress_prompt(task: str) -> str:
    """The public model's per-frame progress instruction for ``task``."""
    return (
        f"The task for the robot is '{task}'. Given the trajectory video, predict the task progress at "
        "each frame, how far along the robot is towards completing the task, a float between 0 and 1, "
        "where 0 is the starting state and 1 is when the task is completed. If the robot is not "
        "performing the same task, predict 0 progress."
    )


def preference_prompt(task: str) -> str:
    """The public model's pairwise preference instruction for ``task``."""
    return (
        f"Given these two trajectories for the task '{task}', evaluate which one makes more progress "
        "towards the task. Return A for the first trajectory and B for the second trajectory."
    )


def add_robometer_tokens(tokenizer: Any) -> None:
    """Append the five Robometer tokens (in order) to ``tokenizer`` unless already present."""
    vocab = tokenizer.get_vocab()
    for token in ROBOMETER_SPECIAL_TOKENS:
        if token not in vocab:
            tokenizer.add_special_tokens(
                {"additional_special_tokens": [token]}, replace_extra_special_tokens=False
            )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or "<|endoftext|>"


def smart_resize(
    height: int, width: int, factor: int = 32, min_pixels: int = 4096, max_pixels: int = 16384 * 32 * 32
) -> tuple[int, int]:
    """Target (H, W) for an image: multiples of ``factor`` keeping the aspect ratio, pixels within bounds.

    Same rule as qwen-vl-utils' ``smart_resize`` (round to the nearest multiple, then scale down
    below ``max_pixels`` or up above ``min_pixels``).
    """
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"image aspect ratio must be at most 200, got {height}x{width} "
            f"({max(height, width) / min(height, width):.1f})"
        )
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass
class ImageSettings:
    """How frames become vision patches.

    Args:
        patch_size / merge_size / temporal_patch_size: the vision tower's geometry (16 / 2 / 2 for Qwen3-VL).
        min_pixels / max_pixels: bounds on H*W after resizing (qwen-vl-utils: 4096 / 16384*32*32).
        image_mean / image_std: per-channel normalisation after scaling to [0, 1].
    """

    patch_size: int = 16
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 4096
    max_pixels: int = 16384 * 32 * 32
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])

    @property
    def factor(self) -> int:
        """Side lengths are resized to multiples of this (patch_size * merge_size)."""
        return self.patch_size * self.merge_size

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-friendly form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageSettings:
        """Inverse of :meth:`to_dict`; unknown keys are rejected."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown image settings {sorted(unknown)}, expected {sorted(cls.__dataclass_fields__)}")
        return cls(**d)


def normalized_frames(frames: np.ndarray, image: ImageSettings) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 resized by :func:`smart_resize` and normalised: (T, th, tw, 3) float32.

    PIL bicubic, as qwen-vl-utils' ``fetch_image`` / ``fetch_video`` do before the HF processor
    (``do_resize=False``); then scaled to [0, 1] and normalised with ``image_mean`` / ``image_std``.
    """
    height, width = frames.shape[1:3]
    th, tw = smart_resize(height, width, image.factor, image.min_pixels, image.max_pixels)
    if (th, tw) != (height, width):
        frames = np.stack(
            [np.asarray(Image.fromarray(f).resize((tw, th), Image.Resampling.BICUBIC)) for f in frames]
        )
    mean = np.asarray(image.image_mean, np.float32)
    std = np.asarray(image.image_std, np.float32)
    return (frames.astype(np.float32) * np.float32(1 / 255) - mean) / std


@dataclass
class ModelInputs:
    """A padded batch for the Qwen3-VL backbone plus where to read the heads.

    Args:
        tensors: ``input_ids`` / ``attention_mask`` / ``mm_token_type_ids`` (B, L) int64,
            ``pixel_values`` (patches, C*tp*p*p) float32, ``image_grid_thw`` (images, 3) int64.
        prog_positions: per sequence, (T,) positions of its ``<|prog_token|>`` tokens, in frame order.
        pref_positions: (B,) position of ``<|pref_token|>`` per sequence, or None for progress batches.
    """

    tensors: dict[str, torch.Tensor]
    prog_positions: list[np.ndarray]
    pref_positions: np.ndarray | None = None

    def to(self, device: torch.device | str, dtype: torch.dtype) -> ModelInputs:
        """Move tensors to ``device``; floating tensors (pixels) are cast to ``dtype``."""
        moved = {
            k: v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)
            for k, v in self.tensors.items()
        }
        return ModelInputs(moved, self.prog_positions, self.pref_positions)


class RobometerProcessor:
    """Turns (frames, task) queries into padded Qwen3-VL inputs with Robometer's prompt.

    Args:
        tokenizer: a Qwen-style tokenizer holding the Qwen special tokens and the five Robometer tokens.
        image: :class:`ImageSettings` of the vision tower.

    >>> from rlrm.models.tiny import tiny_robometer
    >>> proc = tiny_robometer(seed=0).processor
    >>> q = RewardQuery(np.zeros((2, 64, 64, 3), np.uint8), "reach the goal")
    >>> batch = proc.progress_inputs([q])
    >>> [len(p) for p in batch.prog_positions]
    [2]
    """

    def __init__(self, tokenizer: Any, image: ImageSettings | None = None) -> None:
        self.tokenizer = tokenizer
        self.image = image or ImageSettings()
        vocab = tokenizer.get_vocab()
        needed = QWEN_SPECIAL_TOKENS[1:3] + ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>")
        missing = [t for t in needed + ROBOMETER_SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(
                f"tokenizer lacks tokens {missing}; expected Qwen's special tokens plus "
                f"{list(ROBOMETER_SPECIAL_TOKENS)} (call add_robometer_tokens(tokenizer))"
            )
        self.token_ids = {t: int(tokenizer.convert_tokens_to_ids(t)) for t in needed + ROBOMETER_SPECIAL_TOKENS}
        self.image_pad_id = self.token_ids["<|image_pad|>"]
        self.prog_id = self.token_ids["<|prog_token|>"]
        self.pref_id = self.token_ids["<|pref_token|>"]
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else tokenizer.convert_tokens_to_ids("<|endoftext|>"))
        self._tokenizer_lock = threading.Lock()
        self._tokenize = lru_cache(maxsize=4096)(self._tokenize_uncached)

    # ---------------------------------------------------------------- text

    @staticmethod
    def _frames_text(num_frames: int, first_index: int = 1) -> str:
        return "".join(
            f"Picture {first_index + i}: {_IMAGE_SLOT}<|prog_token|>" for i in range(num_frames)
        )

    def progress_text(self, task: str, num_frames: int) -> str:
        """The rendered chat text of a progress query (one ``<|image_pad|>`` per frame)."""
        body = progress_prompt(task) + self._frames_text(num_frames)
        return f"<|im_start|>user\n{body}<|im_end|>\n"

    def preference_text(self, task: str, frames_a: int, frames_b: int) -> str:
        """The rendered chat text of a preference query: A frames, ``<|split_token|>``, B frames, ``<|pref_token|>``."""
        body = (
            preference_prompt(task)
            + "This is Trajectory A. "
            + self._frames_text(frames_a)
            + "<|split_token|>"
            + "This is Trajectory B. "
            + self._frames_text(frames_b, first_index=frames_a + 1)
            + "Now predict the preference between the two trajectories."
            + "<|pref_token|>"
        )
        return f"<|im_start|>user\n{body}<|im_end|>\n"

    def _tokenize_uncached(self, text: str) -> np.ndarray:
        # HF fast tokenizers may raise "Already borrowed" when called from several threads at once.
        with self._tokenizer_lock:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return np.asarray(ids, dtype=np.int64)

    # -------------------------------------------------------------- images

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) frames of this size are resized to before patchifying."""
        s = self.image
        return smart_resize(height, width, s.factor, s.min_pixels, s.max_pixels)

    def grid(self, num: int, height: int, width: int) -> np.ndarray:
        """(num, 3) int64 patch grids ``[1, gh, gw]`` of ``num`` frames of ``height`` x ``width`` px (no pixels)."""
        th, tw = self.target_size(height, width)
        p = self.image.patch_size
        return np.tile(np.asarray([[1, th // p, tw // p]], np.int64), (num, 1))

    def patchify(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frames (T, H, W, 3) uint8 -> (pixel_values (T*gh*gw, 3*tp*p*p) float32, grid_thw (T, 3) int64)."""
        s = self.image
        num, height, width, _ = frames.shape
        if height < s.factor or width < s.factor:
            raise ValueError(
                f"frames of {height}x{width} px are smaller than one vision token of this model "
                f"({s.factor}x{s.factor} px = patch_size {s.patch_size} x merge_size {s.merge_size}); "
                f"render or resize frames to at least {s.factor}x{s.factor}"
            )
        x = normalized_frames(frames, s)  # (T, th, tw, C)
        th, tw = x.shape[1:3]
        p, m, tp = s.patch_size, s.merge_size, s.temporal_patch_size
        gh, gw = th // p, tw // p
        x = x.reshape(num, gh // m, m, p, gw // m, m, p, 3)
        # -> (T, gh/m, gw/m, m, m, C, p, p): merge groups contiguous, channel-major patches
        x = x.transpose(0, 1, 4, 2, 5, 7, 3, 6)
        x = np.broadcast_to(x[:, :, :, :, :, :, None], (*x.shape[:6], tp, p, p))
        pixel_values = np.ascontiguousarray(x).reshape(num * gh * gw, 3 * tp * p * p)
        grid = np.tile(np.asarray([[1, gh, gw]], np.int64), (num, 1))
        return pixel_values, grid

    # --------------------------------------------------------------- batch

    def _expand(self, text_ids: np.ndarray, grids: np.ndarray) -> np.ndarray:
        """Replace each single ``<|image_pad|>`` by as many pads as the image has merged patches."""
        pads = np.flatnonzero(text_ids == self.image_pad_id)
        if len(pads) != len(grids):
            raise ValueError(f"prompt has {len(pads)} image slots for {len(grids)} images")
        counts = np.ones(len(text_ids), np.int64)
        counts[pads] = grids[:, 1] * grids[:, 2] // (self.image.merge_size**2)
        return np.repeat(text_ids, counts)

    def _collate(self, sequences: list[np.ndarray], pixels: list[np.ndarray], grids: list[np.ndarray]) -> dict:
        length = max(len(s) for s in sequences)
        input_ids = np.full((len(sequences), length), self.pad_id, np.int64)
        attention = np.zeros((len(sequences), length), np.int64)
        for i, seq in enumerate(sequences):
            input_ids[i, : len(seq)] = seq
            attention[i, : len(seq)] = 1
        mm_types = ((input_ids == self.image_pad_id) & (attention == 1)).astype(np.int64)
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention),
            "mm_token_type_ids": torch.from_numpy(mm_types),
            "pixel_values": torch.from_numpy(np.concatenate(pixels)),
            "image_grid_thw": torch.from_numpy(np.concatenate(grids)),
        }

    def progress_inputs(self, queries: list[RewardQuery], pixels_for: list[np.ndarray] | None = None) -> ModelInputs:
        """Padded (right) batch of progress prompts, one ``<|prog_token|>`` right after each frame.

        ``pixels_for`` (one (T_i,) bool mask per query) leaves the frames marked False out of
        ``pixel_values`` (their vision features come from elsewhere, e.g. a
        :class:`~rlrm.models.vision_cache.VisionFeatureCache`); ``image_grid_thw`` still lists every frame.
        """
        if not queries:
            raise ValueError("expected at least one RewardQuery, got an empty list")
        if pixels_for is not None and len(pixels_for) != len(queries):
            raise ValueError(f"pixels_for needs one mask per query ({len(queries)}), got {len(pixels_for)}")
        sequences, pixels, grids, prog = [], [], [], []
        for i, q in enumerate(queries):
            frames = validate_frames(q.frames)
            if not isinstance(q.task, str) or not q.task.strip():
                raise ValueError(f"task must be a non-empty instruction string, got {q.task!r}")
            if pixels_for is None:
                pv, grid = self.patchify(frames)
            else:
                need = np.asarray(pixels_for[i], bool)
                if need.shape != (len(frames),):
                    raise ValueError(f"pixels_for[{i}] must be a ({len(frames)},) bool mask, got shape {need.shape}")
                grid = self.grid(*frames.shape[:3])
                s = self.image
                width = 3 * s.temporal_patch_size * s.patch_size**2
                pv = self.patchify(frames[need])[0] if need.any() else np.zeros((0, width), np.float32)
            seq = self._expand(self._tokenize(self.progress_text(q.task, len(frames))), grid)
            sequences.append(seq)
            pixels.append(pv)
            grids.append(grid)
            prog.append(np.flatnonzero(seq == self.prog_id))
        return ModelInputs(self._collate(sequences, pixels, grids), prog)

    def preference_inputs(self, pairs: list[tuple[RewardQuery, RewardQuery]]) -> ModelInputs:
        """Padded batch of preference prompts; ``prog_positions`` holds A's then B's frame tokens."""
        if not pairs:
            raise ValueError("expected at least one (query_a, query_b) pair, got an empty list")
        sequences, pixels, grids, prog, pref = [], [], [], [], []
        for a, b in pairs:
            if a.task != b.task:
                raise ValueError(f"a preference pair must share one task, got {a.task!r} and {b.task!r}")
            pa, ga = self.patchify(validate_frames(a.frames, "query_a.frames"))
            pb, gb = self.patchify(validate_frames(b.frames, "query_b.frames"))
            grid = np.concatenate([ga, gb])
            text = self.preference_text(a.task, a.num_frames, b.num_frames)
            seq = self._expand(self._tokenize(text), grid)
            sequences.append(seq)
            pixels += [pa, pb]
            grids.append(grid)
            prog.append(np.flatnonzero(seq == self.prog_id))
            pref.append(int(np.flatnonzero(seq == self.pref_id)[-1]))
        return ModelInputs(self._collate(sequences, pixels, grids), prog, np.asarray(pref, np.int64))
