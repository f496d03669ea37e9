"""Labels for the reward trainer: the oracle's budget and selection rule, label noise, a person's keys and takeovers."""

import numpy as np
import pytest

from rlrm.rl.episodes import EpisodeRecord
from rlrm.rl.labels import HumanLabeller, OracleLabeller, make_labeller, uncertainty


def record(key, success=True, prob=0.9, progress=0.9, human=None, takeover_at=None, steps=4):
    """A finished episode of ``steps`` steps ending with the given model outputs."""
    takeovers = np.zeros(steps, bool)
    if takeover_at is not None:
        takeovers[takeover_at:] = True
    return EpisodeRecord(
        key=key, frames=np.full((steps + 1, 8, 8, 3), key % 255, np.uint8), task="reach the target",
        env_rewards=np.zeros(steps, np.float32), progress=np.full(steps, progress, np.float32),
        success_prob=np.full(steps, prob, np.float32), versions=np.zeros(steps, np.int64), env_success=success,
        human_label=human, takeovers=takeovers)


def test_oracle_every_k_labels_the_last_of_each_block_within_budget():
    sent = []
    oracle = OracleLabeller(sent.append, budget=3, select="every_k", every=4)
    for k in range(40):
        oracle.consider(record(k, success=k % 3 == 0))
    assert [e.episode for e in sent] == [3, 7, 11]  # then the budget is spent
    assert oracle.used == 3 and oracle.left == 0 and oracle.seen == 40
    assert [e.label for e in sent] == ["success" if k % 3 == 0 else "failure" for k in (3, 7, 11)]
    assert oracle.summary()["flipped"] == 0


def test_oracle_uncertain_labels_the_least_certain_of_each_block():
    sent = []
    oracle = OracleLabeller(sent.append, budget=2, select="uncertain", every=3, threshold=0.65)
    # block 1: the model is sure twice (0.99 / 0.01 with matching progress), unsure once (0.6, near 0.65)
    for k, prob in enumerate([0.99, 0.6, 0.01]):
        oracle.consider(record(k, prob=prob, progress=prob))
    # block 2: calibrated success probabilities, but progress disagrees with success in episode 4
    for k, (prob, progress) in enumerate([(0.98, 0.97), (0.97, 0.1), (0.02, 0.03)], start=3):
        oracle.consider(record(k, prob=prob, progress=progress))
    assert [e.episode for e in sent] == [1, 4]
    assert uncertainty(record(0, prob=0.65, progress=0.65), 0.65) == pytest.approx(1.0)
    assert uncertainty(record(0, prob=1.0, progress=1.0), 0.65) == pytest.approx(0.0)


def test_oracle_label_noise_flips_at_its_rate():
    sent = []
    oracle = OracleLabeller(sent.append, budget=400, every=1, noise=0.25, seed=3)
    for k in range(400):
        oracle.consider(record(k, success=True))
    flipped = sum(e.label == "failure" for e in sent)
    assert 60 < flipped < 140  # 100 expected
    assert oracle.summary()["flipped"] == flipped and all(e.true_label == "success" for e in sent)


def test_oracle_refuses_bad_settings_and_envs_without_success():
    with pytest.raises(ValueError, match="labels.budget must be an int >= 1"):
        OracleLabeller(print, budget=0)
    with pytest.raises(ValueError, match="labels.select must be one of"):
        OracleLabeller(print, budget=3, select="random")
    with pytest.raises(ValueError, match=r"labels.noise must lie in \[0, 1\)"):
        OracleLabeller(print, budget=3, noise=1.0)
    with pytest.raises(ValueError, match="needs the env's own success"):
        OracleLabeller(print, budget=3, every=1).consider(record(0, success=None))


def test_human_labels_keys_and_takeovers():
    sent = []
    person = HumanLabeller(sent.append)
    person.consider(record(0, human="success"))
    person.consider(record(1))  # no key, no takeover: nothing to learn
    person.consider(record(2, takeover_at=2))
    person.consider(record(3, takeover_at=0))  # taken over at once: no policy frames
    assert [(e.episode, e.label, e.source) for e in sent] == [(0, "success", "human"), (2, "failure", "takeover")]
    assert sent[1].frames.shape[0] == 3  # reset frame + the two policy steps before the takeover
    assert person.summary()["takeover"] == 1


def test_make_labeller_reads_the_labels_config():
    assert make_labeller({"source": "none"}, print, 0.65) is None
    oracle = make_labeller({"source": "oracle", "budget": 30, "select": "uncertain", "every": 5, "noise": 0.1,
                            "seed": 0}, print, 0.65)
    assert (oracle.budget, oracle.select, oracle.every, oracle.noise) == (30, "uncertain", 5, 0.1)
    with pytest.raises(ValueError, match="labels.source must be one of"):
        make_labeller({"source": "crowd"}, print, 0.65)
