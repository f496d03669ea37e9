"""A tiny, randomly initialised Robometer built locally, for tests and CPU work (registers ``"tiny"``).

* :func:`tiny_tokenizer` - a small byte-level BPE tokenizer with Qwen's special tokens, Qwen3-VL's chat
  template structure and the five Robometer tokens (no download).
* :func:`tiny_backbone_config` - a small ``Qwen3VLConfig`` (hidden 64, 2 layers; vision depth 2).
* :func:`tiny_robometer` - the model: same :class:`~rlrm.models.robometer.RobometerModel` and
  processor code as the 4B checkpoint, seeded and deterministic across processes.

>>> from rlrm.models.tiny import tiny_robometer
>>> model = tiny_robometer(seed=0)
>>> model.info().progress_bins
10
"""

from __future__ import annotations

from typing import Any

import torch

from rlrm.models.base import register_model
from rlrm.models.processor import QWEN_SPECIAL_TOKENS, ImageSettings, RobometerProcessor, add_robometer_tokens
from rlrm.models.robometer import RobometerConfig, RobometerModel

__all__ = ["tiny_tokenizer", "tiny_backbone_config", "tiny_robometer", "QWEN3_VL_CHAT_TEMPLATE"]

# The user/assistant part of Qwen3-VL's chat template (vision ids, no default system turn).
QWEN3_VL_CHAT_TEMPLATE = (
    "{%- set image_count = namespace(value=0) %}"
    "{%- set video_count = namespace(value=0) %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}{{- message.content }}"
    "{%- else %}{%- for item in message.content %}"
    "{%- if item.type == 'image' or 'image' in item %}"
    "{%- set image_count.value = image_count.value + 1 %}"
    "{%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif item.type == 'video' or 'video' in item %}"
    "{%- set video_count.value = video_count.value + 1 %}"
    "{%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif 'text' in item %}{{- item.text }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


# Text the tiny tokenizer's BPE merges are learnt from: the prompt templates and common task words.
_TASK_WORDS = (
    "reach the red target; push the green block to the goal; pick up the blue cube and place it in the bowl; "
    "open the drawer; close the door; press the button; slide the puck; put the object on the plate; "
    "move the arm to the position; stack the blocks; fold the cloth; turn the faucet"
)


def _tokenizer_corpus() -> list[str]:
    from rlrm.models.processor import RobometerProcessor, preference_prompt, progress_prompt

    frames = RobometerProcessor._frames_text(12)
    pair = "This is Trajectory A. <|split_token|>This is Trajectory B. Now predict the preference between the two trajectories."
    return [progress_prompt(_TASK_WORDS), preference_prompt(_TASK_WORDS), frames, pair, "user\nassistant\n"] * 2


# Qwen2/Qwen3's pre-tokenizer split: every digit is its own pre-token (so "ANSWER: 3" ends in " ", "3").
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)


def tiny_tokenizer(qwen_split: bool = False, extra_corpus: tuple[str, ...] = ()) -> Any:
    """Byte-level BPE (~440 tokens, merges learnt deterministically from the prompt templates) with
    Qwen's special tokens, Qwen3-VL's chat template and the five Robometer tokens; no download.

    Args:
        qwen_split: pre-tokenize with Qwen's own split pattern (:data:`QWEN_SPLIT_PATTERN`, digits alone)
            instead of GPT-2's; the generative tiny model needs it so answer digits are single tokens.
        extra_corpus: more text to learn merges from (the generative model's prompt).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    if qwen_split:
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=list(QWEN_SPECIAL_TOKENS),
    )
    backend.train_from_iterator(_tokenizer_corpus() + list(extra_corpus) * 2, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="right",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS)})
    tokenizer.chat_template = QWEN3_VL_CHAT_TEMPLATE
    add_robometer_tokens(tokenizer)
    return tokenizer


def tiny_backbone_config(tokenizer: Any, **overrides: Any) -> Any:
    """A small Qwen3VLConfig whose vocabulary and vision token ids match ``tokenizer``.

    ``overrides`` may set ``text_config`` / ``vision_config`` entries with ``text_`` / ``vision_``
    prefixes, e.g. ``text_num_hidden_layers=4``, ``vision_depth=1``.
    """
    from transformers import Qwen3VLConfig

    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 4096,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": [4, 2, 2],
            "mrope_interleaved": True,
        },
        "tie_word_embeddings": True,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "depth": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 4,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": 64,
        "num_position_embeddings": 256,
        "deepstack_visual_indexes": [1],
    }
    for key, value in overrides.items():
        if key.startswith("text_"):
            text[key[5:]] = value
        elif key.startswith("vision_"):
            vision[key[7:]] = value
        else:
            raise ValueError(f"unknown tiny config override {key!r}: expected a text_* or vision_* field")
    ids = tokenizer.convert_tokens_to_ids
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )


def tiny_robometer(
    seed: int = 0,
    max_frames: int = 8,
    min_pixels: int = 64 * 64,
    max_pixels: int = 128 * 128,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    attn_implementation: str = "sdpa",
    **config_overrides: Any,
) -> RobometerModel:
    """A randomly initialised tiny Robometer (same classes as the 4B), identical for equal ``seed``.

    Args:
        seed: torch seed of the weight initialisation.
        max_frames: frames per query reported by ``info()``.
        min_pixels / max_pixels: frame pixel bounds (frames are resized into them, multiples of patch_size * merge_size).
        device / dtype: where the model runs (CPU float32 by default).
        attn_implementation: ``"sdpa"`` or ``"eager"`` (or ``"flash_attention_2"`` on CUDA).
        **config_overrides: ``text_*`` / ``vision_*`` backbone config fields (see :func:`tiny_backbone_config`).
    """
    tokenizer = tiny_tokenizer()
    backbone = tiny_backbone_config(tokenizer, **config_overrides)
    backbone._attn_implementation = attn_implementation  # propagates to the text and vision sub-configs
    # The token grid follows the vision tower: frames are resized to multiples of patch * merge
    # (16 * 2 = 32 px for Qwen3-VL; a patch_size=8 model works on 16 px tokens).
    vision = backbone.vision_config
    image = ImageSettings(
        patch_size=int(vision.patch_size),
        merge_size=int(vision.spatial_merge_size),
        temporal_patch_size=int(vision.temporal_patch_size),
        min_pixels=min_pixels,
        max_pixels=max_pixels,
    )
    config = RobometerConfig(max_frames=max_frames, base_model_id="tiny", image=image)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RobometerModel(backbone, RobometerProcessor(tokenizer, image), config, name="tiny")
    from rlrm.models.checkpoint import resolve_dtype

    return model.to(device=device, dtype=resolve_dtype(dtype, device))


register_model("tiny", tiny_robometer)
