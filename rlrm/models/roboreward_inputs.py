"""RoboReward's inputs: the model card's prompt, its settings, which frames a video holds, answer parsing, and
the processor that turns (frames, task) into Qwen3-VL video inputs.

* :data:`ROBOREWARD_PROMPT` - the model card's prompt, verbatim, with ``{task}``.
* :data:`ANSWER_PREFIX` / :data:`ANSWER_PATTERN` - the forced answer prefix and the authors' parsing regex.
* :class:`RoboRewardConfig` - prompt order, frames per video, decoding, score -> progress mapping.
* :func:`video_frame_indices` - which frames of an episode a video holds (``fps``, 4-8 frames).
* :func:`parse_answer` - the 1-5 score in a generated text (the authors' regex), or a clear error.
* :class:`RoboRewardProcessor` - (frames, task) -> padded Qwen3-VL video inputs with the card's prompt.

The model itself is :class:`rlrm.models.roboreward.RoboRewardModel`.

>>> parse_answer("ANSWER: 4")
4
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from rlrm.models.processor import ImageSettings, normalized_frames, smart_resize
from rlrm.sampling import sample_indices
from rlrm.types import RewardQuery, validate_frames

__all__ = [
    "ROBOREWARD_PROMPT",
    "ANSWER_PREFIX",
    "ANSWER_PATTERN",
    "SCORE_MAPPINGS",
    "RoboRewardConfig",
    "video_frame_indices",
    "parse_answer",
    "RoboRewardProcessor",
    "VideoInput",
]

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


def choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    """Raise a ValueError naming ``value`` and the ``allowed`` ones unless ``value`` is one of them."""
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
        choice("order", self.order, ORDERS)
        choice("decode", self.decode, DECODES)
        choice("mapping", self.mapping, SCORE_MAPPINGS)
        choice("per_frame", self.per_frame, PER_FRAME)
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
class VideoInput:
    """One video to score: frames (even count, last repeated), timestamps per pair (s), cache keys per pair."""

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

    def videos(self, query: RewardQuery, keys: Sequence[Hashable] | None) -> list[VideoInput]:
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
            out.append(VideoInput(frames[picked], query.task, seconds, pair_keys))
        return out

    def batch(self, videos: list[VideoInput], answer_prefix: bool = True) -> dict[str, torch.Tensor]:
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

    def pixels(self, video: VideoInput) -> np.ndarray:
        """All patches of ``video`` (pairs in order), for a plain ``pixel_values_videos`` forward."""
        return np.concatenate([self.patchify_pair(video.frames[i : i + 2]) for i in range(0, len(video.frames), 2)])
