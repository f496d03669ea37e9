"""Training on the tiny Qwen3-VL Robometer: a step lowers the loss, checkpoints resume, LoRA adapters round-trip."""

import json

import numpy as np
import pytest
import torch

from rlrm.models.patch_embed import use_conv3d_patch_embedding, use_linear_patch_embedding
from rlrm.models.robometer import RobometerModel
from rlrm.models.tiny import tiny_robometer
from rlrm.train.cli import load_train_config
from rlrm.train.data import Trajectory, write_trajectory
from rlrm.train.lora import LoraSettings, apply_lora, load_lora, merge_lora, save_lora
from rlrm.train.trainer import TrainConfig, Trainer
from rlrm.types import RewardQuery


def square_episode(quality: str, seed: int, t: int = 10, size: int = 64) -> Trajectory:
    """A white square moving toward (success) or away from (failure) a red dot."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((t, size, size, 3), np.uint8)
    goal = np.array([48, 48])
    start = rng.integers(4, 20, 2)
    for i in range(t):
        frac = i / (t - 1) if quality == "success" else -0.3 * i / (t - 1)
        pos = np.clip((start + frac * (goal - start)).astype(int), 0, size - 8)
        frames[i, pos[0] : pos[0] + 8, pos[1] : pos[1] + 8] = 255
        frames[i, 46:50, 46:50] = (255, 0, 0)
    progress = np.linspace(0, 1, t) if quality == "success" else np.zeros(t)
    success = (progress >= 1).astype(np.float32)
    return Trajectory(frames, "move the square to the red dot", quality, progress, success,
                      task_id="square", episode_id=f"{quality}_{seed}")


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("trajectories")
    for i in range(3):
        write_trajectory(square_episode("success", i), root)
    write_trajectory(square_episode("failure", 10), root)
    return root


def small_config(dataset_dir, out, **kw) -> TrainConfig:
    base = dict(data=str(dataset_dir), output_dir=str(out), steps=2, batch_size=2, pair_batch_size=1,
                max_frames=4, lr=3e-3, warmup_steps=1, checkpoint_every=1, log_every=1,
                distractor_instructions=["open the drawer"], tiny={"min_pixels": 4096, "max_pixels": 4096},
                threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_one_training_step_lowers_the_loss_on_a_fixed_batch(dataset_dir, tmp_path):
    trainer = Trainer(small_config(dataset_dir, tmp_path, batch_size=3, pair_batch_size=1))
    singles, pairs = trainer.sample_batch()
    rng_state = trainer.mixer.rng.bit_generator.state

    def eval_loss():
        trainer.model.eval()
        trainer.mixer.rng.bit_generator.state = rng_state  # same pair order every time
        with torch.no_grad():
            return trainer.compute_loss(singles, pairs).as_floats()["total"]

    before = eval_loss()
    trainer.mixer.rng.bit_generator.state = rng_state
    trainer.train_step(singles, pairs)
    after = eval_loss()
    assert after < before


def test_train_checkpoints_resume_and_export_upstream_layout(dataset_dir, tmp_path):
    cfg = small_config(dataset_dir, tmp_path)
    trainer = Trainer(cfg)
    model = trainer.train()
    assert trainer.step == 2 and trainer.checkpoint_path.exists()
    lines = (tmp_path / "train_log.jsonl").read_text().splitlines()
    assert len(lines) == 2
    exported = RobometerModel.from_pretrained(tmp_path / "model")
    q = RewardQuery(square_episode("success", 7).frames[::3], "move the square to the red dot")
    np.testing.assert_allclose(exported.score([q])[0].progress, model.score([q])[0].progress, atol=1e-5)
    # resume: a new trainer with more steps starts where the checkpoint left off
    resumed = Trainer(small_config(dataset_dir, tmp_path, steps=3))
    assert resumed.resume() and resumed.step == 2
    for a, b in zip(resumed.model.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    resumed.train()
    assert resumed.step == 3


def test_config_composes_with_overrides():
    d = load_train_config("demo", ["steps=5", "data=/x", "tiny.max_pixels=4096"])
    cfg = TrainConfig.from_dict(d)
    assert cfg.steps == 5 and cfg.data == "/x" and cfg.tiny["max_pixels"] == 4096
    lora = TrainConfig.from_dict(load_train_config("lora", ["data=/x"]))
    assert lora.lora == LoraSettings(rank=32, alpha=64, dropout=0.05)
    with pytest.raises(ValueError, match="unknown train config"):
        load_train_config("nope")
    with pytest.raises(ValueError, match="unknown train config keys"):
        TrainConfig.from_dict({"stepz": 3})


def test_linear_patch_embedding_gives_the_same_outputs():
    q = RewardQuery(square_episode("success", 1).frames[:3], "move the square to the red dot")
    stock = tiny_robometer(seed=0)
    assert use_conv3d_patch_embedding(stock) == 1  # RobometerModel uses the matmul form by default
    ref = stock.score([q])[0]
    fast = tiny_robometer(seed=0)
    assert use_linear_patch_embedding(fast) == 0  # already switched
    out = fast.score([q])[0]
    np.testing.assert_allclose(out.progress, ref.progress, atol=1e-5)
    np.testing.assert_allclose(out.success, ref.success, atol=1e-5)


def test_lora_trains_only_adapters_and_heads_and_round_trips(tmp_path):
    model = apply_lora(tiny_robometer(seed=0), LoraSettings(rank=4, alpha=8, dropout=0.0))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.split(".")[0].endswith("_head") for n in trainable)
    assert not any("visual" in n for n in trainable)
    adapted = {n.rsplit(".lora_", 1)[0].rsplit(".", 1)[-1] for n in trainable if "lora_" in n}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    with torch.no_grad():  # adapters start as a no-op (B = 0); make them matter
        for n, p in model.named_parameters():
            if "lora_B" in n or n.startswith("progress_head"):
                p.add_(torch.randn_like(p) * 0.5)
    q = RewardQuery(square_episode("success", 2).frames[:4], "move the square to the red dot")
    base_out = tiny_robometer(seed=0).score([q])[0].progress
    tuned_out = model.score([q])[0].progress
    assert not np.allclose(tuned_out, base_out, atol=1e-4)
    save_lora(model, tmp_path / "adapter")
    reloaded = load_lora(tiny_robometer(seed=0), tmp_path / "adapter")
    np.testing.assert_allclose(reloaded.score([q])[0].progress, tuned_out, atol=1e-6)
    merged = merge_lora(reloaded)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    np.testing.assert_allclose(merged.score([q])[0].progress, tuned_out, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_lora(tiny_robometer(seed=0), tmp_path)


def test_lora_training_run_exports_adapters_and_a_merged_upstream_model(dataset_dir, tmp_path):
    cfg = small_config(dataset_dir, tmp_path, steps=1, lora=LoraSettings(rank=4, alpha=8, dropout=0.0))
    trainer = Trainer(cfg)
    model = trainer.train()
    assert (tmp_path / "lora" / "adapter_model.safetensors").exists()
    q = RewardQuery(square_episode("success", 5).frames[::3], "move the square to the red dot")
    merged = RobometerModel.from_pretrained(tmp_path / "model")
    assert not any("lora_" in k for k in merged.state_dict())
    np.testing.assert_allclose(merged.score([q])[0].progress, model.score([q])[0].progress, atol=1e-5)
    adapters = load_lora(tiny_robometer(seed=0, max_frames=4, min_pixels=4096, max_pixels=4096), tmp_path / "lora")
    np.testing.assert_allclose(adapters.score([q])[0].progress, model.score([q])[0].progress, atol=1e-5)


def test_checkpoint_every_zero_saves_only_at_the_end_and_negative_is_refused(dataset_dir, tmp_path):
    model = Trainer(small_config(dataset_dir, tmp_path, steps=3, checkpoint_every=0, log_every=0)).train()
    assert model is not None
    assert (tmp_path / "checkpoint" / "trainer_state.pt").exists() and (tmp_path / "model").is_dir()
    logged = [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert logged == [3]  # log_every=0: the last step only
    with pytest.raises(ValueError, match="checkpoint_every >= 0"):
        Trainer(small_config(dataset_dir, tmp_path / "bad", checkpoint_every=-1))
