"""Checkpoint layouts: upstream and LeRobot round-trips, layout detection, and loud failures."""

import json

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file, save_file

from rlrm.models import make_reward_model
from rlrm.models.checkpoint import detect_layout
from rlrm.models.robometer import RobometerModel
from rlrm.models.tiny import tiny_robometer
from rlrm.types import RewardQuery


@pytest.fixture(scope="module")
def small_res_model():
    """A tiny model with non-default resolution and frame count, to check they survive saving."""
    return tiny_robometer(seed=7, max_frames=6, max_pixels=96 * 96)


@pytest.fixture(scope="module")
def queries():
    rng = np.random.default_rng(0)
    return [
        RewardQuery(rng.integers(0, 256, (3, 128, 128, 3), dtype=np.uint8), "reach the red target"),
        RewardQuery(rng.integers(0, 256, (5, 64, 96, 3), dtype=np.uint8), "open the drawer"),
    ]


@pytest.fixture(scope="module")
def saved(small_res_model, tmp_path_factory):
    out = {}
    for layout in ("upstream", "lerobot"):
        d = tmp_path_factory.mktemp(layout)
        small_res_model.save_pretrained(d, layout=layout, max_shard_bytes=600_000)
        out[layout] = d
    return out


@pytest.mark.parametrize("layout", ["upstream", "lerobot"])
def test_round_trip_gives_identical_outputs(layout, small_res_model, saved, queries):
    d = saved[layout]
    assert detect_layout(d) == layout
    loaded = make_reward_model(str(d), seed=0)  # registry kwargs work for directories too
    assert isinstance(loaded, RobometerModel) and loaded.layout == layout
    info = loaded.info()
    assert info.max_frames == 6 and info.extra["max_pixels"] == 96 * 96
    for a, b in zip(small_res_model.score(queries), loaded.score(queries), strict=True):
        np.testing.assert_array_equal(a.progress, b.progress)
        np.testing.assert_array_equal(a.success, b.success)
    a, b = queries[0], RewardQuery(queries[1].frames, queries[0].task)
    assert loaded.preference(a, b) == pytest.approx(small_res_model.preference(a, b), abs=1e-6)


def test_upstream_layout_files_and_keys(saved):
    d = saved["upstream"]
    shards = sorted(d.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2
    index = json.loads((d / "model.safetensors.index.json").read_text())
    keys = set(index["weight_map"])
    assert any(k.startswith("model.visual.") for k in keys)
    assert any(k.startswith("model.language_model.") for k in keys)
    assert {"progress_head.0.weight", "success_head.4.bias", "preference_head.1.weight", "frame_pool_attn.weight"} <= keys
    assert json.loads((d / "config.json").read_text())["model_type"] == "qwen3_vl"
    train_cfg = yaml.safe_load((d / "config.yaml").read_text())
    assert train_cfg["model"]["progress_discrete_bins"] == 10 and train_cfg["data"]["max_frames"] == 6


def test_lerobot_layout_files_and_keys(saved):
    d = saved["lerobot"]
    keys = set(load_file(str(d / "model.safetensors")))
    assert any(k.startswith("model.model.visual.") for k in keys)
    assert "model.model.language_model.embed_tokens.weight" in keys
    assert "progress_head.4.weight" in keys and not any(k.startswith("model.visual.") for k in keys)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["type"] == "robometer" and cfg["vlm_config"]["model_type"] == "qwen3_vl"
    rows = load_file(str(d / "model.safetensors"))["model.model.language_model.embed_tokens.weight"].shape[0]
    assert cfg["vlm_config"]["text_config"]["vocab_size"] == rows


def test_lerobot_embedding_stored_only_as_tied_lm_head(small_res_model, saved, queries, tmp_path):
    # safetensors keeps one name of a tied pair; LeRobot exports may hold the embedding as lm_head.
    tensors = load_file(str(saved["lerobot"] / "model.safetensors"))
    tensors["model.lm_head.weight"] = tensors.pop("model.model.language_model.embed_tokens.weight")
    _copy_with(saved["lerobot"], tmp_path, tensors)
    loaded = RobometerModel.from_pretrained(tmp_path)
    np.testing.assert_array_equal(loaded.score(queries)[0].progress, small_res_model.score(queries)[0].progress)


def _copy_with(src, dst, tensors):
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            (dst / f.name).write_bytes(f.read_bytes())
    save_file(tensors, str(dst / "model.safetensors"))


def test_missing_heads_raise(saved, tmp_path):
    tensors = {k: v for k, v in load_file(str(saved["lerobot"] / "model.safetensors")).items()
               if not k.startswith("success_head.")}
    _copy_with(saved["lerobot"], tmp_path, tensors)
    with pytest.raises(ValueError, match=r"heads are missing: \['success_head"):
        RobometerModel.from_pretrained(tmp_path)


def test_unexpected_keys_raise(saved, tmp_path):
    tensors = load_file(str(saved["lerobot"] / "model.safetensors"))
    tensors["value_head.weight"] = tensors["frame_pool_attn.weight"].clone()
    _copy_with(saved["lerobot"], tmp_path, tensors)
    with pytest.raises(ValueError, match=r"unexpected keys: \['value_head.weight'\]"):
        RobometerModel.from_pretrained(tmp_path)


def test_wrong_vocab_size_raises(saved, tmp_path):
    tensors = load_file(str(saved["lerobot"] / "model.safetensors"))
    key = "model.model.language_model.embed_tokens.weight"
    tensors[key] = tensors[key][:-5].clone()  # as if the 5 Robometer rows were never added
    _copy_with(saved["lerobot"], tmp_path, tensors)
    with pytest.raises(ValueError, match=r"embedding of \d+ rows but its tokenizer has \d+ tokens"):
        RobometerModel.from_pretrained(tmp_path)


def test_not_a_checkpoint_and_bad_layout(tmp_path, small_res_model):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"not a Robometer checkpoint: found \['notes.txt'\]"):
        RobometerModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="layout must be one of"):
        small_res_model.save_pretrained(tmp_path / "x", layout="hf")


def test_hub_id_offline_without_cache_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="hf download robometer/Robometer-4B"):
        make_reward_model("robometer/Robometer-4B")


def test_load_in_bfloat16(saved, queries, small_res_model):
    model = RobometerModel.from_pretrained(saved["upstream"], dtype="bfloat16")
    assert model.info().dtype == "bfloat16"
    res = model.score(queries[:1])[0]
    assert res.progress.dtype == np.float32
    np.testing.assert_allclose(res.progress, small_res_model.score(queries[:1])[0].progress, atol=0.05)
