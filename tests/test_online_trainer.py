"""The reward trainer: learns from labelled episodes with the Robometer objective and publishes versions;
in its own process, a crash of it leaves a real worker serving the last version."""

import json
import time

import numpy as np
import pytest

from rlrm.config import RewardTrainerConfig
from rlrm.rl.labels import LabelledEpisode
from rlrm.train.data import Trajectory, write_trajectory
from rlrm.train.online import (
    LabelInbox,
    OnlineRewardTrainer,
    RewardTrainerProcess,
    read_trainer_log,
    trainable_mode,
)
from rlrm.transport import RewardClient, spawn_worker
from rlrm.transport.versions import latest_version, version_dir
from rlrm.types import RewardQuery

TASK = "reach the target"


def episode(key, label, t=6):
    """A labelled episode: successes end bright, failures stay dark (something a tiny model can tell apart)."""
    rng = np.random.default_rng(key)
    frames = rng.integers(0, 40, (t, 32, 32, 3), dtype=np.uint8)
    if label == "success":
        frames[t // 2:] += np.linspace(60, 200, t - t // 2, dtype=np.uint8)[:, None, None, None]
    return LabelledEpisode(frames, TASK, label, key, "oracle", label)


def fresh_tiny():
    from rlrm.models import make_reward_model

    return make_reward_model("tiny", seed=0)


def final_success(model, labelled):
    return float(model.score([RewardQuery(labelled.frames, TASK)])[0].success[-1])


def test_trainer_learns_from_labels_and_publishes_a_version(tmp_path):
    from rlrm.models import make_reward_model

    inbox = LabelInbox(tmp_path)
    cfg = RewardTrainerConfig(min_labels=3, steps=40, lr=3e-3, batch_size=4, pair_batch_size=1)
    trainer = OnlineRewardTrainer("tiny", tmp_path, cfg, model=fresh_tiny())
    assert trainer.mode == "full"
    success, failure = episode(0, "success"), episode(1, "failure")
    before = final_success(trainer.model, success) - final_success(trainer.model, failure)
    inbox.write(success)
    inbox.write(failure)
    assert trainer.poll_inbox() == 2 and not trainer.ready()  # min_labels=3
    inbox.write(episode(2, "failure"))
    assert trainer.poll_inbox() == 1 and trainer.ready()
    assert trainer.train_round() == 1 and latest_version(tmp_path / "versions") == 1
    served = make_reward_model(str(version_dir(tmp_path / "versions", 1)))
    after = final_success(served, success) - final_success(served, failure)
    assert after > before + 0.1, (before, after)  # the success head learned the labels
    np.testing.assert_allclose(final_success(served, success), final_success(trainer.model, success), atol=1e-5)
    (line,) = read_trainer_log(tmp_path)
    assert line["version"] == 1 and line["labels"] == 3 and line["labels_success"] == 1 and line["mode"] == "full"
    assert not trainer.ready()  # no new labels since
    with pytest.raises(FileExistsError, match="labelled already"):
        inbox.write(success)


def test_heads_mode_leaves_the_backbone_and_replay_is_mixed_in(tmp_path):
    replay = tmp_path / "replay"
    for k in range(3):
        e = episode(10 + k, "success")
        write_trajectory(Trajectory(e.frames, TASK, "success", episode_id=f"orig{k}"), replay)
    model = fresh_tiny()
    backbone_before = {n: p.detach().clone() for n, p in model.named_parameters() if not n.endswith(("_head.weight",))
                       and "_head." not in n}
    heads_before = {n: p.detach().clone() for n, p in model.named_parameters() if "_head." in n}
    cfg = RewardTrainerConfig(mode="heads", min_labels=2, steps=3, batch_size=2, pair_batch_size=1,
                              replay=str(replay), replay_fraction=0.5)
    trainer = OnlineRewardTrainer("tiny", tmp_path / "adapt", cfg, model=model)
    inbox = LabelInbox(tmp_path / "adapt")
    inbox.write(episode(0, "success"))
    inbox.write(episode(1, "failure"))
    trainer.poll_inbox()
    trainer.train_round()
    params = dict(model.named_parameters())
    assert all(torch_equal(params[n], p) for n, p in backbone_before.items())
    assert not all(torch_equal(params[n], p) for n, p in heads_before.items())
    assert read_trainer_log(tmp_path / "adapt")[0]["replay_trajectories"] == 2


def torch_equal(a, b):
    import torch

    return bool(torch.equal(a.detach(), b))


def test_lora_mode_publishes_merged_weights(tmp_path):
    pytest.importorskip("peft")
    from rlrm.models import make_reward_model

    cfg = RewardTrainerConfig(mode="lora", min_labels=2, steps=2, batch_size=2, pair_batch_size=1)
    trainer = OnlineRewardTrainer("tiny", tmp_path, cfg, model=fresh_tiny())
    inbox = LabelInbox(tmp_path)
    inbox.write(episode(0, "success"))
    inbox.write(episode(1, "failure"))
    trainer.poll_inbox()
    assert trainer.train_round() == 1
    served = make_reward_model(str(version_dir(tmp_path / "versions", 1)))
    assert "lora" not in json.dumps(sorted(n for n, _ in served.named_parameters()))


def test_mode_and_model_checks():
    assert trainable_mode("auto", 10**6) == "full" and trainable_mode("auto", 4 * 10**9) == "lora"
    with pytest.raises(ValueError, match="reward.trainer.mode must be one of"):
        trainable_mode("partial", 10)

    class NotRobometer:
        def parameters(self):
            return iter(())

    with pytest.raises(TypeError, match="fine-tunes Robometer models"):
        OnlineRewardTrainer("x", "/tmp/rlrm-unused-adapt", RewardTrainerConfig(), model=NotRobometer())


def test_trainer_crash_keeps_the_last_version_serving(tmp_path):
    folder = tmp_path / "adapt"
    cfg = RewardTrainerConfig(min_labels=2, steps=2, batch_size=2, pair_batch_size=1, nice=0)
    inbox = LabelInbox(folder)
    with spawn_worker("tiny", seed=0, device="cpu", threads=1, watch=str(folder / "versions")) as worker, \
            RewardClient(worker.url, timeout_ms=120000) as client:
        trainer = RewardTrainerProcess("tiny", folder, cfg).start()
        q = [RewardQuery(episode(5, "success").frames, TASK)]
        v0 = client.score(q)[0]
        inbox.write(episode(0, "success"))
        inbox.write(episode(1, "failure"))
        deadline = time.monotonic() + 300
        while client.model_version() != 1:
            assert trainer.check(), f"trainer died:\n{(folder / 'trainer.log').read_text()}"
            assert time.monotonic() < deadline, "version 1 never served"
            time.sleep(0.5)
        v1 = client.score(q)[0]
        trainer.process.kill()  # the trainer crashes (SIGKILL: no clean-up of any kind)
        trainer.process.join(10)
        assert not trainer.check() and trainer.crashed == -9
        after = client.score(q)[0]  # still answered, by the last good version
        assert (v0.version, v1.version, after.version) == (0, 1, 1)
        np.testing.assert_allclose(after.progress, v1.progress, atol=1e-6)
        trainer.stop()


def test_trainer_that_cannot_start_is_reported(tmp_path):
    trainer = RewardTrainerProcess("no-such-model-spec", tmp_path, RewardTrainerConfig(nice=0)).start()
    trainer.process.join(120)
    assert not trainer.check() and trainer.crashed == 1
    assert "unknown reward model spec" in (tmp_path / "trainer.log").read_text()
