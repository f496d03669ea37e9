"""Seeing the target: the success ball, several camera views per frame, and token grids that follow the model."""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import envs  # noqa: F401  (registers rlrm/Fetch*-v0)
from rlrm.models import make_reward_model
from rlrm.models.checkpoint import save_checkpoint
from rlrm.models.tiny import tiny_robometer
from rlrm.transport import RewardClient, RewardWorker
from rlrm.types import ModelInfo, RewardQuery, RewardResult
from rlrm.views import ViewMeanScorer, merge_view_results, split_views, tile_views
from rlrm.wrappers import RobometerReward
from rlrm.wrappers.frames import FrameSource

TASK = "move the gripper to the red target"


# ------------------------------------------------------------------ goal marker


@pytest.mark.parametrize("env_id", ["rlrm/FetchReach-v0", "rlrm/FetchPush-v0"])
def test_success_ball_radius_is_the_success_distance(env_id):
    env = gym.make(env_id, goal_marker="success_ball", image_size=64)
    base = env.unwrapped
    site = mujoco.mj_name2id(base.model, mujoco.mjtObj.mjOBJ_SITE, "target0")
    threshold = base._fetch.distance_threshold
    assert threshold == pytest.approx(0.05)
    assert base.model.site_size[site, 0] == pytest.approx(threshold)
    assert base.model.site_type[site] == mujoco.mjtGeom.mjGEOM_SPHERE
    assert 0 < base.model.site_rgba[site, 3] < 1  # translucent: the gripper inside stays visible
    env.close()


def test_success_ball_is_bigger_in_the_frame_than_the_site_dot():
    def red_pixels(marker: str) -> int:
        env = gym.make("rlrm/FetchReach-v0", goal_marker=marker, image_size=128)
        env.reset(seed=1)
        frame = env.unwrapped.render_camera("front").astype(int)
        env.close()
        return int(((frame[..., 0] > 120) & (frame[..., 1] < 90) & (frame[..., 2] < 90)).sum())

    assert red_pixels("success_ball") > 3 * max(red_pixels("site"), 1)


def test_goal_marker_and_camera_errors_name_the_choices():
    with pytest.raises(ValueError, match="goal_marker must be one of"):
        gym.make("rlrm/FetchReach-v0", goal_marker="cube")
    env = gym.make("rlrm/FetchReach-v0", image_size=32)
    with pytest.raises(ValueError, match="available"):
        env.unwrapped.render_camera("left")
    assert {"front", "side", "top", "default"} <= set(env.unwrapped.camera_names)
    env.close()


# ------------------------------------------------------------------ tiling


def test_tiled_frames_have_the_expected_shape_and_layout():
    env = gym.make("rlrm/FetchReach-v0", goal_marker="success_ball", image_size=64)
    obs, _ = env.reset(seed=0)
    source = FrameSource(env, ["front", "side"])
    frame = source.read(obs)
    assert frame.shape == (64, 128, 3) and frame.dtype == np.uint8
    assert source.view_widths == [64, 64]
    np.testing.assert_array_equal(frame[:, :64], env.unwrapped.render_camera("front"))
    np.testing.assert_array_equal(frame[:, 64:], env.unwrapped.render_camera("side"))
    assert not np.array_equal(frame[:, :64], frame[:, 64:])  # two different views
    env.close()


def test_cameras_mix_observation_keys_and_render_cameras():
    class WithImage(gym.ObservationWrapper):
        def __init__(self, env):
            super().__init__(env)
            self.observation_space = gym.spaces.Dict(
                {**env.observation_space.spaces, "wrist": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)}
            )

        def observation(self, obs):
            return {**obs, "wrist": np.full((64, 64, 3), 7, np.uint8)}

    env = WithImage(gym.make("rlrm/FetchReach-v0", image_size=64))
    obs, _ = env.reset(seed=0)
    frame = FrameSource(env, ["wrist", "top"]).read(obs)
    assert frame.shape == (64, 128, 3)
    assert (frame[:, :64] == 7).all()
    with pytest.raises(KeyError, match="neither an image key of the observation"):
        FrameSource(env, ["wrist", "nope"]).read(obs)
    env.close()


def test_tile_and_split_are_inverse_and_check_heights():
    a = np.zeros((4, 8, 3), np.uint8)
    b = np.ones((4, 6, 3), np.uint8)
    tiled = tile_views([a, b])
    assert tiled.shape == (4, 14, 3)
    left, right = split_views(tiled[None], [8, 6])
    np.testing.assert_array_equal(left[0], a)
    np.testing.assert_array_equal(right[0], b)
    with pytest.raises(ValueError, match="share their height"):
        tile_views([a, np.zeros((5, 8, 3), np.uint8)])
    with pytest.raises(ValueError, match="view widths"):
        split_views(tiled[None], [8, 8])
    with pytest.raises(ValueError, match="camera must be None"):
        FrameSource(None, [])


# ------------------------------------------------------------------ views="mean"


class RecordingScorer:
    """Progress = mean pixel value of each frame / 255 (so each view scores differently); records queries."""

    def __init__(self):
        self.calls: list[list[RewardQuery]] = []

    def score(self, queries):
        self.calls.append(list(queries))
        out = []
        for q in queries:
            p = q.frames.reshape(len(q.frames), -1).mean(axis=1).astype(np.float32) / 255
            out.append(RewardResult(progress=p, success=(p > 0.5).astype(np.float32)))
        return out

    def info(self):
        return ModelInfo(name="recording", max_frames=8, image_size=None)

    def close(self):
        pass


def test_views_mean_scores_each_view_and_averages():
    left = np.full((3, 8, 8, 3), 40, np.uint8)
    right = np.full((3, 8, 8, 3), 200, np.uint8)
    query = RewardQuery(np.concatenate([left, right], axis=2), TASK)
    inner = RecordingScorer()
    (merged,) = ViewMeanScorer(inner, [8, 8]).score([query])
    assert len(inner.calls) == 1 and len(inner.calls[0]) == 2  # both views in one batch
    assert inner.calls[0][0].frames.shape == (3, 8, 8, 3)
    np.testing.assert_allclose(merged.progress, (40 / 255 + 200 / 255) / 2, rtol=1e-6)
    np.testing.assert_allclose(merged.success, 0.5)  # one view of two says success
    both = merge_view_results([RewardResult(np.ones(2, np.float32), np.ones(2, np.float32))] * 2)
    np.testing.assert_allclose(both.success, 1.0)


def test_wrapper_views_mean_averages_the_per_view_scores():
    env = gym.make("rlrm/FetchReach-v0", goal_marker="success_ball", image_size=64)
    scorer = RecordingScorer()
    wrapped = RobometerReward(env, task=TASK, source=scorer, camera=["front", "side"], views="mean", success=None)
    obs, _ = wrapped.reset(seed=0)
    obs, reward, *_, info = wrapped.step(np.zeros(4, np.float32))
    front, side = env.unwrapped.render_camera("front"), env.unwrapped.render_camera("side")
    expected = (front.mean() + side.mean()) / 2 / 255
    assert info["rlrm"]["progress"] == pytest.approx(expected, rel=1e-5)
    assert all(q.frames.shape[1:] == (64, 64, 3) for q in scorer.calls[-1])
    assert wrapped.frame_buffer.last.shape == (64, 128, 3)  # videos keep the tiled frame
    with pytest.raises(ValueError, match="views must be one of"):
        RobometerReward(env, task=TASK, source=scorer, camera=["front", "side"], views="max")
    wrapped.close()


# ------------------------------------------------------------------ token grid


def test_token_grid_follows_the_vision_config():
    p8 = tiny_robometer(vision_patch_size=8, max_pixels=64 * 64)
    p16 = tiny_robometer(max_pixels=64 * 64)
    assert p8.processor.image.factor == 16 and p16.processor.image.factor == 32
    frames = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    _, grid8 = p8.processor.patchify(frames)
    _, grid16 = p16.processor.patchify(frames)
    assert grid8[0].tolist() == [1, 8, 8] and grid16[0].tolist() == [1, 4, 4]
    with pytest.raises(ValueError, match="smaller than one vision token"):
        p16.processor.patchify(np.zeros((1, 16, 64, 3), np.uint8))


def test_the_4b_token_factor_stays_32(tmp_path):
    # The published checkpoint's vision tower: patch 16, merge 2 -> 32 px tokens. Built small here from
    # the same config fields and reloaded through the checkpoint loader, which must derive the same factor.
    model = tiny_robometer(max_pixels=64 * 64)
    save_checkpoint(model, tmp_path / "ckpt")
    loaded = make_reward_model(str(tmp_path / "ckpt"))
    assert loaded.processor.image.factor == 32
    assert (loaded.processor.image.patch_size, loaded.processor.image.merge_size) == (16, 2)
    from rlrm.models.processor import ImageSettings

    assert ImageSettings().factor == 32  # the default (the 4B model's) geometry


@pytest.mark.parametrize("patch", [8, 16])
def test_patch_8_and_16_models_score_through_the_worker(tmp_path, patch):
    model = tiny_robometer(vision_patch_size=patch, max_pixels=64 * 128)
    save_checkpoint(model, tmp_path / f"p{patch}")
    loaded = make_reward_model(str(tmp_path / f"p{patch}"))
    assert loaded.processor.image.patch_size == patch
    frames = np.random.default_rng(patch).integers(0, 255, (4, 64, 128, 3), dtype=np.uint8)
    local = loaded.score([RewardQuery(frames, TASK)])[0]
    with RewardWorker(loaded, bind="tcp://127.0.0.1:0") as worker, RewardClient(worker.url) as client:
        remote = client.score([RewardQuery(frames, TASK)])[0]
    np.testing.assert_allclose(remote.progress, local.progress, atol=1e-6)
    np.testing.assert_allclose(remote.success, local.success, atol=1e-6)
    assert remote.progress.shape == (4,)


def test_mismatched_processor_geometry_is_refused():
    from rlrm.models.processor import ImageSettings, RobometerProcessor
    from rlrm.models.robometer import RobometerModel
    from rlrm.models.tiny import tiny_backbone_config, tiny_tokenizer

    tok = tiny_tokenizer()
    backbone = tiny_backbone_config(tok, vision_patch_size=8)
    with pytest.raises(ValueError, match="does not match the vision tower"):
        RobometerModel(backbone, RobometerProcessor(tok, ImageSettings(patch_size=16)))


def test_views_mean_through_a_real_client_async_and_deferred(tiny_model):
    """The async paths of a RewardClient (score_async, score_deferred) split the views too."""
    rng = np.random.default_rng(3)
    left = rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    right = rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    query = RewardQuery(np.concatenate([left, right], axis=2), TASK)
    want = merge_view_results(tiny_model.score([RewardQuery(left, TASK), RewardQuery(right, TASK)]))
    with RewardWorker(tiny_model, bind="tcp://127.0.0.1:0") as worker, RewardClient(worker.url) as client:
        scorer = ViewMeanScorer(client, [64, 64])
        for got in (scorer.score([query])[0], scorer.score_async([query]).result()[0],
                    scorer.score_deferred(lambda: [query]).result()[0]):
            np.testing.assert_allclose(got.progress, want.progress, atol=1e-5)
            np.testing.assert_allclose(got.success, want.success, atol=1e-5)


def test_views_mean_gives_each_view_its_own_streaming_episode():
    inner = RecordingScorer()
    query = RewardQuery(np.zeros((2, 8, 16, 3), np.uint8), TASK, episode_id="env:3", frame_index=np.arange(2))
    ViewMeanScorer(inner, [8, 8]).score([query])
    assert [q.episode_id for q in inner.calls[0]] == ["env:3#view0", "env:3#view1"]
    assert all(q.frame_index.tolist() == [0, 1] for q in inner.calls[0])


def test_vector_wrappers_tile_the_same_cameras_as_the_single_env():
    """gymnasium and SB3 vector envs read render cameras per sub-env and score what a single env scores."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlrm.wrappers import FrameInInfo, RobometerSB3VecReward, RobometerVecReward

    def make():
        return gym.make("rlrm/FetchReach-v0", goal_marker="success_ball", image_size=64, max_episode_steps=3)

    actions = [np.full((2, 4), a, np.float32) for a in (0.3, -0.2, 0.5)]
    single = RobometerReward(make(), TASK, RecordingScorer(), camera=["front", "side"], success=None)
    single.reset(seed=7)
    want = [single.step(a[0])[4]["rlrm"]["progress"] for a in actions]
    single.close()

    scorer = RecordingScorer()
    venv = RobometerVecReward(gym.vector.SyncVectorEnv([make, make]), TASK, scorer, camera=["front", "side"],
                              success=None)
    venv.reset(seed=[7, 8])
    got = [venv.step(a)[4]["rlrm"]["progress"][0] for a in actions]
    assert all(q.frames.shape[1:] == (64, 128, 3) for q in scorer.calls[-1])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    venv.close()

    base = DummyVecEnv([lambda: FrameInInfo(make(), camera=["front", "side"])] * 2)
    base.seed(7)
    sb3 = RobometerSB3VecReward(base, TASK, RecordingScorer(), camera=["front", "side"], success=None)
    sb3.reset()
    got = [sb3.step(a)[3][0]["rlrm"]["progress"] for a in actions]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    sb3.close()
