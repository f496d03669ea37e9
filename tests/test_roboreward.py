"""RoboReward (generative Qwen3-VL): loading, the soft score's fidelity to transformers, settings, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlrm.models import make_reward_model
from rlrm.models.roboreward import (
    ANSWER_PREFIX,
    ROBOREWARD_PROMPT,
    RoboRewardConfig,
    RoboRewardModel,
    parse_answer,
    tiny_roboreward,
    video_frame_indices,
)
from rlrm.types import RewardQuery


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tiny_roboreward(seed=0)


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    return model.save_pretrained(tmp_path_factory.mktemp("roboreward_tiny"))


def _queries(n: int, seed: int = 0) -> list[RewardQuery]:
    """``n`` queries of mixed lengths (1-9 frames) and sizes; smooth images so frames differ in content."""
    rng = np.random.default_rng(seed)
    tasks = ["open the drawer", "push the green block to the goal", "reach the red target"]
    out = []
    for i in range(n):
        t = int(rng.integers(1, 10))
        h, w = [(64, 64), (64, 96), (96, 64)][i % 3]
        base = rng.integers(0, 255, (t, h // 8, w // 8, 3)).astype(np.uint8)
        frames = np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)
        out.append(RewardQuery(frames, tasks[i % 3], frame_index=np.arange(t)))
    return out


def _plain_generator(saved):
    from transformers import Qwen3VLForConditionalGeneration

    return Qwen3VLForConditionalGeneration.from_pretrained(str(saved), dtype=torch.float32).eval()


def _plain_inputs(model, video, answer_prefix=True):
    """One unpadded query the way transformers' Qwen3-VL takes a video: one grid row of (T/2, gh, gw)."""
    batch = model.processor.batch([video], answer_prefix=answer_prefix)
    t, gh, gw = model.processor.pair_grid(*video.frames.shape[1:3])
    return {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "mm_token_type_ids": batch["mm_token_type_ids"],
        "pixel_values_videos": torch.from_numpy(model.processor.pixels(video)),
        "video_grid_thw": torch.tensor([[len(video.seconds), gh, gw]]),
    }


def test_prompt_is_the_model_cards(model):
    video = model.processor.videos(_queries(1)[0], None)[-1]
    text = model.processor.text("open the drawer", video.seconds, 4)
    assert ROBOREWARD_PROMPT.format(task="open the drawer") in text
    assert ROBOREWARD_PROMPT.startswith("Given the task, assign a discrete progress score reward (1,2,3,4,5)")
    assert ROBOREWARD_PROMPT.endswith("5 - Perfect Completion: Final state satisfies all requirements.\n\nTask: {task}")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n" + ANSWER_PREFIX)
    assert text.startswith("<|im_start|>user\n<0.2 seconds><|vision_start|><|video_pad|>")
    text_first = tiny_roboreward(seed=0, order="text_first").processor.text("x", [0.25], 1)
    assert text_first.startswith("<|im_start|>user\n" + ROBOREWARD_PROMPT.format(task="x") + "<0.2 seconds>")


def test_fidelity_soft_score_matches_transformers_forward_and_greedy_generate(model, saved):
    """>= 50 queries of mixed lengths in one batch: digit logits == a plain transformers forward (1e-5), and the
    soft score's argmax == the digit transformers' greedy ``generate`` writes after the same prompt."""
    queries = _queries(52)
    ours = model.digit_logits(queries, max_batch=64)  # one padded batch
    plain = _plain_generator(saved)
    digits = model.processor.digit_ids
    parsed = []
    for q, row in zip(queries, ours, strict=True):
        video = model.processor.videos(q, None)[-1]
        inputs = _plain_inputs(model, video)
        with torch.no_grad():
            ref = plain(**inputs).logits[0, -1, digits].numpy()
        np.testing.assert_allclose(row, ref, atol=1e-5, rtol=0)
        out = plain.generate(**inputs, max_new_tokens=2, do_sample=False, pad_token_id=model.processor.pad_id)
        text = ANSWER_PREFIX + model.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:])
        parsed.append(parse_answer(text))
    assert np.argmax(ours, axis=1).tolist() == [s - 1 for s in parsed]
    assert len(set(parsed)) >= 3, f"the tiny model should not answer one score for everything: {parsed}"
    # the soft score of score() is the expectation under the softmax of exactly these logits
    probs = torch.softmax(torch.from_numpy(ours), -1).numpy()
    results = model.score(queries)
    np.testing.assert_allclose([r.progress[-1] for r in results], (probs @ np.arange(1, 6) - 1) / 4, atol=1e-5)
    np.testing.assert_allclose([r.success[-1] for r in results], probs[:, 4], atol=1e-5)


def test_batched_equals_one_by_one_and_per_frame_semantics(model):
    queries = _queries(6, seed=1)
    batched = model.score(queries)
    for q, r in zip(queries, batched, strict=True):
        alone = model.score([q])[0]
        np.testing.assert_allclose(r.progress, alone.progress, atol=1e-5)
        first = model.score([RewardQuery(q.frames[:1], q.task)])[0]
        np.testing.assert_allclose(r.progress[:-1], first.progress[0], atol=1e-5)  # held first-frame value
    every = tiny_roboreward(seed=0, per_frame="all")
    q = queries[0] if queries[0].num_frames > 2 else _queries(1, seed=5)[0]
    res = every.score([q])[0]
    for i in range(q.num_frames):
        prefix = every.score([RewardQuery(q.frames[: i + 1], q.task)])[0]
        assert abs(prefix.progress[-1] - res.progress[i]) < 1e-5


def test_generate_decode_is_transformers_generate_and_unparseable_text_is_an_error(model, saved):
    q = _queries(1, seed=3)[0]
    plain = _plain_generator(saved)
    video = model.processor.videos(q, None)[0]
    inputs = _plain_inputs(model, video, answer_prefix=False)
    out = plain.generate(**inputs, max_new_tokens=model.config.max_new_tokens, do_sample=False,
                         pad_token_id=model.processor.pad_id)
    expected = model.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    # the tiny model only ever writes digits: no 'ANSWER:', so the authors' parsing must refuse it
    with pytest.raises(ValueError, match="holds no 'ANSWER: <1-5>'") as err:
        model.score([q], decode="generate")
    assert repr(expected) in str(err.value)


def test_parse_answer_and_mappings():
    assert parse_answer("ANSWER: 5") == 5
    assert parse_answer("The robot ... ANSWER :3.") == 3
    with pytest.raises(ValueError, match="expected a score in 1..5"):
        parse_answer("ANSWER: 7")
    with pytest.raises(ValueError, match="holds no"):
        parse_answer("four")
    assert RoboRewardConfig().progress(np.array([1.0, 3.0, 5.0])).tolist() == [0.0, 0.5, 1.0]
    assert RoboRewardConfig(mapping="over5").progress(np.array([1.0, 5.0])).tolist() == [0.2, 1.0]
    with pytest.raises(ValueError, match="mapping must be one of"):
        RoboRewardConfig(mapping="linear")
    assert video_frame_indices(100, source_fps=10).tolist() == [0, 14, 28, 42, 57, 71, 85, 99]
    assert len(video_frame_indices(10, source_fps=10)) == 4  # 1 s at 2 fps: 2 frames, at least 4
    assert len(video_frame_indices(2, source_fps=10)) == 2


def test_video_patches_of_a_still_pair_equal_image_patches(model):
    """A pair of one frame twice is patchified exactly like Qwen3-VL's image path (which repeats the frame)."""
    from rlrm.models.processor import RobometerProcessor

    frame = np.random.default_rng(0).integers(0, 255, (1, 64, 96, 3), dtype=np.uint8)
    image = RobometerProcessor.patchify(_ImageOnly(model.processor.image), frame)[0]
    np.testing.assert_array_equal(model.processor.patchify_pair(np.concatenate([frame, frame])), image)


class _ImageOnly:
    """Just enough of a RobometerProcessor for its patchify (image settings)."""

    def __init__(self, image):
        self.image = image

    def target_size(self, height, width):
        from rlrm.models.processor import smart_resize

        s = self.image
        return smart_resize(height, width, s.factor, s.min_pixels, s.max_pixels)


def test_loading_by_spec_and_from_a_directory(model, saved):
    loaded = make_reward_model(f"roboreward:{saved}")
    assert isinstance(loaded, RoboRewardModel) and loaded.info().extra["family"] == "roboreward"
    q = _queries(3, seed=2)
    np.testing.assert_allclose(loaded.digit_logits(q), model.digit_logits(q), atol=1e-6)
    assert make_reward_model(f"roboreward:{saved}", order="text_first").config.order == "text_first"
    assert make_reward_model("roboreward:tiny").info().name == "roboreward:tiny"
    with pytest.raises(ValueError, match="needs a checkpoint"):
        make_reward_model("roboreward:")


def test_missing_checkpoint_offline_says_how_to_fetch(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="hf download teetone/RoboReward-4B"):
        make_reward_model("roboreward:teetone/RoboReward-4B")


def test_not_a_qwen3_vl_directory_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ValueError, match="not a Qwen3-VL checkpoint"):
        make_reward_model(f"roboreward:{tmp_path}")


def test_bad_input_is_named(model):
    with pytest.raises(ValueError, match="uint8"):
        model.score([_bad_query(np.zeros((2, 64, 64, 3), np.float32))])
    with pytest.raises(ValueError, match="T>=1"):
        model.score([_bad_query(np.zeros((0, 64, 64, 3), np.uint8))])
    with pytest.raises(ValueError, match="smaller than one vision token"):
        model.score([RewardQuery(np.zeros((2, 16, 16, 3), np.uint8), "reach")])
    with pytest.raises(ValueError, match="must be a RewardQuery"):
        model.score([np.zeros((2, 64, 64, 3), np.uint8)])
    with pytest.raises(ValueError, match="decode must be one of"):
        model.score(_queries(1), decode="beam")
    assert model.score([]) == []


def _bad_query(frames):
    """A query whose frames were replaced after construction (the model re-checks them)."""
    q = RewardQuery(np.zeros((1, 64, 64, 3), np.uint8), "reach")
    q.frames = frames
    return q


def test_feature_cache_is_exact_and_hits(model):
    model.feature_cache.clear()
    q = _queries(1, seed=7)[0]
    keys = [("ep", i) for i in range(q.num_frames)]
    plain = model.score([q])[0]
    first = model.score([q], feature_keys=[keys])[0]
    again = model.score([q], feature_keys=[keys])[0]
    np.testing.assert_allclose(first.progress, plain.progress, atol=1e-6)
    np.testing.assert_allclose(again.progress, plain.progress, atol=1e-6)
    assert model.feature_cache_stats()["hits"] >= 1
    model.forget_features(keys)
    assert model.feature_cache_stats()["frames"] == 0
