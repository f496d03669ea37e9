"""Robometer on the tiny Qwen3-VL: prompt/token placement, causality, decoding, batching, bad input."""

import numpy as np
import pytest
import torch

from rlrm.models import make_reward_model
from rlrm.models.processor import ROBOMETER_SPECIAL_TOKENS, progress_prompt, smart_resize
from rlrm.models.robometer import RobometerModel, decode_progress, decode_success
from rlrm.types import RewardQuery


def _frames(seed, t, h=64, w=64):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_tiny_is_a_real_qwen3_vl_robometer(tiny_model):
    from transformers import Qwen3VLModel

    assert isinstance(tiny_model, RobometerModel) and isinstance(tiny_model.model, Qwen3VLModel)
    tok = tiny_model.processor.tokenizer
    ids = tok.convert_tokens_to_ids(list(ROBOMETER_SPECIAL_TOKENS))
    assert ids == list(range(len(tok) - 5, len(tok)))  # appended last, in order
    assert tiny_model.model.get_input_embeddings().num_embeddings == len(tok)
    head = tiny_model.progress_head
    assert [type(m).__name__ for m in head] == ["Linear", "LayerNorm", "GELU", "Dropout", "Linear"]
    assert head[0].in_features == 64 and head[0].out_features == 32 and head[-1].out_features == 10
    assert tiny_model.frame_pool_attn.weight.shape == (1, 64)
    info = tiny_model.info()
    assert (info.name, info.progress_bins, info.device, info.dtype) == ("tiny", 10, "cpu", "float32")


def test_prompt_matches_chat_template_and_places_one_prog_token_per_frame(tiny_model):
    proc = tiny_model.processor
    tok = proc.tokenizer
    task = "put the cube in the bowl"
    messages = [{"role": "user", "content": [{"type": "text", "text": progress_prompt(task)}]}]
    content = messages[0]["content"]
    for _ in range(3):
        content += [{"type": "image"}, {"type": "text", "text": "<|prog_token|>"}]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_vision_id=True, add_generation_prompt=False)
    assert rendered == proc.progress_text(task, 3)
    assert "completed. If the robot is not performing the same task, predict 0 progress.Picture 1: " in rendered

    frames = _frames(0, 3, 64, 96)
    batch = proc.progress_inputs([RewardQuery(frames, task)])
    ids = batch.tensors["input_ids"][0].numpy()
    tid = proc.token_ids
    starts = np.flatnonzero(ids == tid["<|vision_start|>"])
    ends = np.flatnonzero(ids == tid["<|vision_end|>"])
    progs = np.flatnonzero(ids == tid["<|prog_token|>"])
    assert len(starts) == len(ends) == len(progs) == 3
    np.testing.assert_array_equal(progs, ends + 1)  # right after each image, in order
    np.testing.assert_array_equal(batch.prog_positions[0], progs)
    pads_per_image = (64 // 32) * (96 // 32)
    for s, e in zip(starts, ends, strict=True):
        assert e - s - 1 == pads_per_image and (ids[s + 1 : e] == proc.image_pad_id).all()
    assert (batch.tensors["mm_token_type_ids"][0].numpy() == (ids == proc.image_pad_id)).all()
    assert tok.decode(ids[-2:]) == "<|im_end|>\n" and tok.decode(ids[:3]).startswith("<|im_start|>user\n")
    assert batch.tensors["image_grid_thw"].tolist() == [[1, 4, 6]] * 3


def test_preference_prompt_structure(tiny_model):
    proc = tiny_model.processor
    a, b = RewardQuery(_frames(1, 2), "open the drawer"), RewardQuery(_frames(2, 3), "open the drawer")
    batch = proc.preference_inputs([(a, b)])
    ids = batch.tensors["input_ids"][0].numpy()
    split = np.flatnonzero(ids == proc.token_ids["<|split_token|>"])
    progs = batch.prog_positions[0]
    assert len(split) == 1 and len(progs) == 5
    assert (progs[:2] < split[0]).all() and (progs[2:] > split[0]).all()
    assert batch.pref_positions[0] == len(ids) - 3  # ... <|pref_token|><|im_end|>\n
    text = proc.preference_text("open the drawer", 2, 3)
    assert "Picture 3: " in text and text.index("This is Trajectory B. ") > text.index("<|split_token|>")
    p = tiny_model.preference(a, b)
    assert 0.0 < p < 1.0
    with pytest.raises(ValueError, match="share one task"):
        proc.preference_inputs([(a, RewardQuery(_frames(2, 3), "close the drawer"))])


def test_patchify_matches_hf_qwen2vl_image_processor(tiny_model):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    proc = tiny_model.processor
    frames = _frames(3, 2, 64, 96)
    ours, grid = proc.patchify(frames)
    hf = Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2,
                                  image_mean=[0.5] * 3, image_std=[0.5] * 3)
    ref = hf(images=list(frames), do_resize=False, return_tensors="np")
    np.testing.assert_allclose(ours, ref["pixel_values"], atol=1e-6)
    np.testing.assert_array_equal(grid, ref["image_grid_thw"])


def test_smart_resize_follows_qwen_vl_utils():
    assert smart_resize(128, 128) == (128, 128)
    assert smart_resize(100, 150) == (96, 160)  # nearest multiples of 32
    assert smart_resize(20, 20) == (64, 64)  # at least 4096 pixels
    h, w = smart_resize(480, 640, max_pixels=128 * 128)
    assert h % 32 == 0 and w % 32 == 0 and h * w <= 128 * 128 and abs(w / h - 4 / 3) < 0.2
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(1, 500)


def test_frames_are_resized_to_the_model_pixel_bounds(tiny_model):
    big = RewardQuery(_frames(4, 2, 240, 320), "reach")
    grid = tiny_model.processor.progress_inputs([big]).tensors["image_grid_thw"]
    gh, gw = grid[0, 1:].tolist()
    assert gh * gw * 16 * 16 <= tiny_model.config.image.max_pixels and gh % 2 == 0 and gw % 2 == 0


def test_causal_frame_i_depends_only_on_frames_up_to_i(tiny_model):
    frames = _frames(5, 5)
    changed = frames.copy()
    changed[3:] = 255 - changed[3:]
    a = tiny_model.score([RewardQuery(frames, "push the block")])[0]
    b = tiny_model.score([RewardQuery(changed, "push the block")])[0]
    np.testing.assert_allclose(a.progress[:3], b.progress[:3], atol=1e-6)
    np.testing.assert_allclose(a.success[:3], b.success[:3], atol=1e-6)
    assert np.abs(a.progress[3:] - b.progress[3:]).max() + np.abs(a.success[3:] - b.success[3:]).max() > 1e-5
    prefix = tiny_model.score([RewardQuery(frames[:2], "push the block")])[0]
    np.testing.assert_allclose(prefix.progress, a.progress[:2], atol=1e-6)


def test_decoding_on_known_logits(tiny_model):
    one_hot = torch.full((3, 10), -1e4)
    one_hot[0, 0] = one_hot[1, 9] = one_hot[2, 3] = 0.0
    np.testing.assert_allclose(decode_progress(one_hot).numpy(), [0.0, 1.0, 3 / 9], atol=1e-6)
    assert decode_progress(torch.zeros(10)).item() == pytest.approx(0.5)
    np.testing.assert_allclose(decode_success(torch.tensor([0.0, 2.0])).numpy(), [0.5, 1 / (1 + np.exp(-2))], rtol=1e-6)

    # End to end: heads whose last layer ignores the hidden state emit the known logits.
    model = make_reward_model("tiny", seed=3)
    bins = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0])
    with torch.no_grad():
        model.progress_head[-1].weight.zero_()
        model.progress_head[-1].bias.copy_(bins)
        model.success_head[-1].weight.zero_()
        model.success_head[-1].bias.fill_(-1.5)
    res = model.score([RewardQuery(_frames(6, 3), "reach")])[0]
    expected = float((torch.softmax(bins, 0) * torch.linspace(0, 1, 10)).sum())
    np.testing.assert_allclose(res.progress, [expected] * 3, rtol=1e-5)
    np.testing.assert_allclose(res.success, [1 / (1 + np.exp(1.5))] * 3, rtol=1e-5)


def test_mixed_batch_equals_one_by_one(tiny_model):
    queries = [
        RewardQuery(_frames(10, 1), "reach the red target"),
        RewardQuery(_frames(11, 5, 64, 96), "push the green block to the goal"),
        RewardQuery(_frames(12, 3, 128, 128), "open the drawer"),
        RewardQuery(_frames(13, 8, 96, 64), "reach the red target"),
    ]
    batched = tiny_model.score(queries)
    for q, r in zip(queries, batched, strict=True):
        single = tiny_model.score([q])[0]
        assert r.progress.shape == (q.num_frames,) and r.progress.dtype == np.float32
        np.testing.assert_allclose(r.progress, single.progress, atol=1e-5)
        np.testing.assert_allclose(r.success, single.success, atol=1e-5)
        assert ((r.progress >= 0) & (r.progress <= 1) & (r.success >= 0) & (r.success <= 1)).all()
    split = tiny_model.score(queries, max_batch=3)
    for r, s in zip(batched, split, strict=True):
        np.testing.assert_allclose(r.progress, s.progress, atol=1e-5)


def test_forward_heads_gives_trainable_logits(tiny_model):
    model = make_reward_model("tiny", seed=1)
    model.train()
    q = [RewardQuery(_frames(20, 2), "reach"), RewardQuery(_frames(21, 3), "reach")]
    out = model.forward_heads(q, pairs=[(q[0], q[1])])
    assert [t.shape for t in out["progress_logits"]] == [(2, 10), (3, 10)]
    assert [t.shape for t in out["success_logits"]] == [(2,), (3,)]
    assert out["pref_logits"].shape == (1,)
    loss = sum(t.sum() for t in out["progress_logits"]) + out["pref_logits"].sum() + out["success_logits"][0].sum()
    loss.backward()
    assert model.progress_head[0].weight.grad is not None and model.preference_head[0].weight.grad is not None
    assert model.model.language_model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    assert not tiny_model.training  # the shared fixture stays in eval mode
    first, second = model.score(q[:1]), model.score(q[:1])  # dropout is off while scoring ...
    np.testing.assert_array_equal(first[0].progress, second[0].progress)
    assert model.training  # ... and train mode comes back afterwards
    model.eval()
    with torch.no_grad():  # inputs may be pre-built, e.g. in a DataLoader worker
        direct = model.forward_heads(q)["progress_logits"][1]
        prebuilt = model.forward_heads(model.processor.progress_inputs(q))["progress_logits"][1]
    torch.testing.assert_close(direct, prebuilt)


def test_seeded_models_are_reproducible_and_distinct(tiny_model):
    q = [RewardQuery(_frames(30, 3), "reach")]
    again = make_reward_model("tiny", seed=0).score(q)[0]
    np.testing.assert_array_equal(again.progress, tiny_model.score(q)[0].progress)
    other = make_reward_model("tiny", seed=1).score(q)[0]
    assert np.abs(other.progress - again.progress).max() > 1e-4


def test_bad_input_raises_value_error_naming_the_problem(tiny_model):
    with pytest.raises(ValueError, match=r"uint8 \(T,H,W,3\), got float32"):
        tiny_model.score([RewardQuery(np.zeros((2, 8, 8, 3), np.float32), "reach")])
    with pytest.raises(ValueError, match="T=0"):
        tiny_model.score([RewardQuery(np.zeros((0, 8, 8, 3), np.uint8), "reach")])
    with pytest.raises(ValueError, match="non-empty"):
        tiny_model.score([RewardQuery(_frames(0, 2), " ")])
    bad = RewardQuery(_frames(0, 2), "reach")
    bad.frames = np.zeros((2, 3, 8, 8), np.uint8)  # mutated after construction
    with pytest.raises(ValueError, match="channel-first"):
        tiny_model.score([bad])
    with pytest.raises(ValueError, match="list of RewardQuery"):
        tiny_model.score(RewardQuery(_frames(0, 2), "reach"))
    with pytest.raises(ValueError, match=r"queries\[0\] must be a RewardQuery"):
        tiny_model.score([_frames(0, 2)])
    with pytest.raises(ValueError, match="neither"):
        tiny_model.forward_heads()
    assert tiny_model.score([]) == []


def test_eager_and_sdpa_attention_agree_on_a_padded_batch(tiny_model):
    queries = [RewardQuery(_frames(40, 1), "reach"), RewardQuery(_frames(41, 4, 64, 96), "push the block")]
    eager = make_reward_model("tiny", seed=0, attn_implementation="eager")
    for a, b in zip(tiny_model.score(queries), eager.score(queries), strict=True):
        np.testing.assert_allclose(a.progress, b.progress, atol=1e-5)
        np.testing.assert_allclose(a.success, b.success, atol=1e-5)
