"""Training a Robometer reward model with the published objective: full training or LoRA fine-tuning.

* :class:`TrainConfig` - everything a run needs (data, model, optimisation, sampling, LoRA, checkpoints);
  the Hydra configs in ``configs/train/`` fill it.
* :func:`build_model` - the starting model: a fresh tiny Qwen3-VL Robometer or a checkpoint.
* :func:`collate_losses` - head outputs of a sampled batch -> :class:`~rlrm.train.losses.RobometerLoss`.
* :class:`Trainer` - the loop: sample views and pairs, one forward per kind, summed loss, AdamW with
  warm-up + cosine decay, gradient clipping, a tqdm bar, checkpoints every N steps (resumed
  automatically), and the final model saved in the upstream checkpoint layout.
* :func:`bar_postfix` - the loss fields of the tqdm bar, named in whole words.

Output folder::

    <output_dir>/checkpoint/trainer_state.pt   weights (or adapters) + optimizer + scheduler + RNG, for resume
    <output_dir>/model/                         the trained model, upstream layout (LoRA runs: merged)
    <output_dir>/lora/                          LoRA runs: adapters + heads (see rlrm.train.lora)
    <output_dir>/train_log.jsonl                one line of losses per logged step
    <output_dir>/config.yaml                    the resolved config
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlrm.models.patch_embed import use_conv3d_patch_embedding, use_linear_patch_embedding
from rlrm.train.data import load_dataset
from rlrm.train.lora import LoraSettings, apply_lora, merged_state_dict, save_lora, trainable_parameters
from rlrm.train.losses import RobometerLoss, robometer_loss
from rlrm.train.pairs import PreferenceSample, ProgressSample, SampleMixer
from rlrm.types import RewardQuery

__all__ = ["TrainConfig", "build_model", "collate_losses", "Trainer", "bar_postfix"]

log = logging.getLogger(__name__)

_BAR_LABELS = {"total": "loss", "progress": "progress", "success": "success", "preference": "pref"}


def bar_postfix(running: dict[str, float]) -> dict[str, str]:
    """The progress bar's loss fields (``loss=0.412 progress=...``), whole words, not ``tota=`` cut at 4 letters.

    >>> bar_postfix({"total": 0.41234, "preference": 0.1})
    {'loss': '0.412', 'pref': '0.100'}
    """
    return {_BAR_LABELS.get(k, k): f"{v:.3f}" for k, v in running.items()}


@dataclass
class TrainConfig:
    """A training run.

    Args:
        data: folder of trajectory folders (or a LeRobot dataset) to train on.
        output_dir: where checkpoints, the log and the final model go.
        model: ``"tiny"`` to train a fresh tiny Qwen3-VL Robometer from ``tiny`` overrides, or a
            checkpoint directory / hub id to fine-tune.
        tiny: ``tiny_robometer`` keyword arguments (``text_hidden_size``, ``max_pixels``, ...).
        lora: LoRA settings, or None for full training.
        seed: seeds the initialisation and the sample stream.
        steps: optimizer steps; ``batch_size`` single views and ``pair_batch_size`` pairs each.
        lr / weight_decay / warmup_steps / min_lr_ratio / grad_clip: AdamW with linear warm-up,
            cosine decay to ``lr * min_lr_ratio``, gradient-norm clipping.
        max_frames: frames per view (the model's ``max_frames``).
        progress_ratios / pair_ratios / distractor_instructions / paraphrase_prob / progress_on:
            see :class:`~rlrm.train.pairs.SampleMixer` (``progress_on="success"`` is the published
            recipe; ``"labelled"`` also fits the stored true progress of failed/suboptimal episodes).
        min_success: frames with target progress below this train the success head as negatives.
        checkpoint_every: steps between checkpoints (and exports of the model so far); 0: only at the end.
        log_every: steps between lines of ``train_log.jsonl``; 0: only the last step.
        max_minutes: stop early (saving everything) after this much wall time; None = no limit.
        threads: torch CPU threads; None leaves torch's default.
        resume: continue from ``<output_dir>/checkpoint`` when it exists.
        fast_patch_embedding: the vision patch Conv3d as a matmul (the model's default; same numbers, faster
            on CPU); False switches back to the stock Conv3d, e.g. to measure the difference.
    """

    data: str = ""
    output_dir: str = "outputs/train"
    model: str = "tiny"
    tiny: dict[str, Any] = field(default_factory=dict)
    lora: LoraSettings | None = None
    seed: int = 0
    steps: int = 1000
    batch_size: int = 8
    pair_batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    max_frames: int = 8
    progress_ratios: dict[str, float] = field(
        default_factory=lambda: {"forward": 0.6, "rewind": 0.2, "different_instruction": 0.2}
    )
    pair_ratios: dict[str, float] = field(
        default_factory=lambda: {"suboptimal": 1.0, "rewind": 1.0, "different_task": 1.0}
    )
    distractor_instructions: list[str] = field(default_factory=list)
    paraphrase_prob: float = 0.0
    progress_on: str = "success"
    min_success: float = 0.5
    checkpoint_every: int = 100
    log_every: int = 10
    max_minutes: float | None = None
    threads: int | None = None
    resume: bool = True
    fast_patch_embedding: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a plain dict (e.g. a resolved Hydra config); unknown keys are an error."""
        d = dict(d)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown train config keys {sorted(unknown)}, expected some of {sorted(cls.__dataclass_fields__)}")
        lora = d.pop("lora", None)
        if isinstance(lora, dict):
            lora = LoraSettings(**lora)
        return cls(lora=lora, **d)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (YAML/JSON friendly)."""
        return asdict(self)


def build_model(cfg: TrainConfig) -> nn.Module:
    """The model a run starts from: ``tiny_robometer(seed, max_frames, **cfg.tiny)`` or a checkpoint."""
    if cfg.model == "tiny":
        from rlrm.models.tiny import tiny_robometer

        return tiny_robometer(seed=cfg.seed, max_frames=cfg.max_frames, **cfg.tiny)
    from rlrm.models.robometer import RobometerModel

    if cfg.tiny:
        raise ValueError(f"'tiny' overrides {sorted(cfg.tiny)} only apply to model='tiny', got model={cfg.model!r}")
    return RobometerModel.from_pretrained(cfg.model, device="cpu", dtype="float32")


def _pad(seqs: list[torch.Tensor], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (T_i, *rest) tensors to (B, width, *rest); returns (padded, (B, width) mask)."""
    rest = seqs[0].shape[1:]
    out = seqs[0].new_zeros((len(seqs), width, *rest))
    mask = torch.zeros(len(seqs), width)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return out, mask


def collate_losses(
    heads: dict[str, Any],
    singles: list[ProgressSample],
    pair_labels: list[float] | None = None,
    min_success: float = 0.5,
) -> RobometerLoss:
    """Robometer loss of ``forward_heads`` outputs for ``singles`` (and pairs with ``pair_labels``)."""
    width = max(len(s.target_progress) for s in singles)
    progress_logits, frame_mask = _pad(heads["progress_logits"], width)
    success_logits, _ = _pad(heads["success_logits"], width)
    target = torch.zeros(len(singles), width)
    labels = torch.zeros(len(singles), width)
    for i, s in enumerate(singles):
        if len(s.target_progress) != int(frame_mask[i].sum()):
            raise ValueError(
                f"sample {i} has {len(s.target_progress)} targets but the model returned {int(frame_mask[i].sum())} frames"
            )
        target[i, : len(s.target_progress)] = torch.from_numpy(s.target_progress)
        labels[i, : len(s.success)] = torch.from_numpy(s.success)
    pref_logits = heads.get("pref_logits")
    return robometer_loss(
        progress_logits,
        success_logits,
        target,
        labels,
        frame_mask,
        progress_mask=torch.tensor([s.progress_is_target for s in singles], dtype=torch.float32),
        unsuccessful=torch.tensor([s.unsuccessful for s in singles]),
        preference_logits=pref_logits,
        preference_labels=None if pair_labels is None else torch.tensor(pair_labels, dtype=torch.float32),
        min_success=min_success,
    )


def _queries(singles: list[ProgressSample]) -> list[RewardQuery]:
    return [RewardQuery(s.frames, s.task, frame_index=s.frame_index) for s in singles]


class Trainer:
    """Runs one training job described by a :class:`TrainConfig`.

    >>> cfg = TrainConfig(data="outputs/demo_model/data/train", output_dir="outputs/run", steps=100)  # doctest: +SKIP
    >>> model = Trainer(cfg).train()  # doctest: +SKIP
    """

    def __init__(self, cfg: TrainConfig, dataset: Any = None, model: nn.Module | None = None) -> None:
        if dataset is None and not cfg.data:
            raise ValueError("TrainConfig.data must name a trajectory folder (or pass dataset=)")
        if cfg.steps < 1 or cfg.batch_size < 1 or cfg.pair_batch_size < 0:
            raise ValueError(
                f"need steps >= 1, batch_size >= 1, pair_batch_size >= 0; got {cfg.steps}, "
                f"{cfg.batch_size}, {cfg.pair_batch_size}"
            )
        if cfg.checkpoint_every < 0 or cfg.log_every < 0:
            raise ValueError(f"need checkpoint_every >= 0 and log_every >= 0 (0: only at the end); got "
                             f"{cfg.checkpoint_every}, {cfg.log_every}")
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.dataset = dataset if dataset is not None else load_dataset(cfg.data)
        self.mixer = SampleMixer(
            self.dataset,
            max_frames=cfg.max_frames,
            progress_ratios=cfg.progress_ratios,
            pair_ratios=cfg.pair_ratios,
            distractor_instructions=cfg.distractor_instructions,
            paraphrase_prob=cfg.paraphrase_prob,
            progress_on=cfg.progress_on,
            seed=cfg.seed,
        )
        self.model = model if model is not None else build_model(cfg)
        if cfg.fast_patch_embedding:
            use_linear_patch_embedding(self.model)
        else:
            use_conv3d_patch_embedding(self.model)
        if cfg.lora is not None:
            apply_lora(self.model, cfg.lora)
        params = trainable_parameters(self.model)
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step = 0
        self.history: list[dict[str, float]] = []

    def _lr_factor(self, step: int) -> float:
        cfg = self.cfg
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))

    # ------------------------------------------------------------------ steps

    def sample_batch(self) -> tuple[list[ProgressSample], list[PreferenceSample]]:
        """Draw one step's single views and preference pairs."""
        return self.mixer.progress_batch(self.cfg.batch_size), self.mixer.pair_batch(self.cfg.pair_batch_size)

    def compute_loss(self, singles: list[ProgressSample], pairs: list[PreferenceSample]) -> RobometerLoss:
        """Forward the model on a batch (with gradients) and return the summed Robometer loss."""
        ordered = [p.ordered(self.mixer.rng) for p in pairs]
        pair_queries = [
            (RewardQuery(a.frames, p.chosen.task), RewardQuery(b.frames, p.chosen.task))
            for p, (a, b, _) in zip(pairs, ordered, strict=True)
        ]
        heads = self.model.forward_heads(_queries(singles), pair_queries or None)
        labels = [label for _, _, label in ordered] if pairs else None
        return collate_losses(heads, singles, labels, self.cfg.min_success)

    def train_step(self, singles: list[ProgressSample], pairs: list[PreferenceSample]) -> RobometerLoss:
        """One optimizer step on the given batch; returns its loss (before the step)."""
        self.model.train()
        loss = self.compute_loss(singles, pairs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(trainable_parameters(self.model), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss

    # ------------------------------------------------------------ checkpoints

    @property
    def checkpoint_path(self) -> Path:
        """``<output_dir>/checkpoint/trainer_state.pt``."""
        return self.out / "checkpoint" / "trainer_state.pt"

    def save_checkpoint(self) -> Path:
        """Write weights, optimizer, scheduler, step and RNG state (atomically) for :meth:`resume`."""
        path = self.checkpoint_path
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "mixer_rng": self.mixer.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "config": self.cfg.to_dict(),
        }
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        return path

    def resume(self) -> bool:
        """Load ``<output_dir>/checkpoint`` if present; returns whether it did."""
        path = self.checkpoint_path
        if not path.exists():
            return False
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.mixer.rng.bit_generator.state = state["mixer_rng"]
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
        log.info("resumed from %s at step %d", path, self.step)
        return True

    def export(self) -> Path:
        """Save the model so far in the upstream layout to ``<output_dir>/model`` (LoRA: adapters too)."""
        target = self.out / "model"
        if self.cfg.lora is None:
            self.model.eval()
            return self.model.save_pretrained(target, layout="upstream")
        save_lora(self.model, self.out / "lora")
        merged_copy = _merged_copy(self.model)
        return merged_copy.save_pretrained(target, layout="upstream")

    # ------------------------------------------------------------------ loop

    def train(self) -> nn.Module:
        """Run (or resume) the configured number of steps; returns the trained model."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        if cfg.resume:
            self.resume()
        (self.out / "config.yaml").write_text(_to_yaml(cfg.to_dict()))
        start = time.monotonic()
        log_path = self.out / "train_log.jsonl"
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        running: dict[str, float] = {}
        try:
            while self.step < cfg.steps:
                singles, pairs = self.sample_batch()
                loss = self.train_step(singles, pairs)
                parts = loss.as_floats()
                running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in parts.items()}
                bar.update(1)
                bar.set_postfix(bar_postfix(running))
                if (cfg.log_every and self.step % cfg.log_every == 0) or self.step == cfg.steps:
                    record = {"step": self.step, "lr": self.scheduler.get_last_lr()[0],
                              "minutes": (time.monotonic() - start) / 60, **parts}
                    self.history.append(record)
                    with log_path.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                    self.export()
                if cfg.max_minutes is not None and (time.monotonic() - start) / 60 > cfg.max_minutes:
                    log.warning("stopping at step %d: max_minutes=%s reached", self.step, cfg.max_minutes)
                    break
        finally:
            bar.close()
        self.save_checkpoint()
        self.export()
        self.model.eval()
        return self.model


def _merged_copy(model: nn.Module) -> nn.Module:
    """A fresh model holding ``model``'s weights with LoRA folded in (``model`` keeps training)."""
    copy = type(model)(model.model.config, model.processor, model.config, name=model.name)
    copy.load_state_dict(merged_state_dict(model))
    return copy.eval()


def _to_yaml(d: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(json.loads(json.dumps(d)), sort_keys=False)
