"""rlrm.shaping: the progress terms, the reward sum, and SuccessDetector votes."""

import pytest

from rlrm.shaping import Shaping, SuccessDetector


@pytest.mark.parametrize(
    "mode, expected",
    [("absolute", 0.6), ("delta", 0.6 - 0.5), ("potential", 0.9 * 0.6 - 0.5)],
)
def test_progress_terms(mode, expected):
    s = Shaping(progress=mode, w_progress=2.0, gamma=0.9)
    terms = s.terms(progress=0.6, prev_progress=0.5, success=False, env_reward=3.0)
    assert terms["progress"] == pytest.approx(2.0 * expected)
    assert terms["env"] == 0.0 and terms["success"] == 0.0 and terms["step_cost"] == 0.0


def test_reward_is_sum_of_weighted_terms():
    s = Shaping(progress="delta", success_bonus=5.0, w_env=0.5, step_cost=0.1)
    terms = s.terms(progress=0.7, prev_progress=0.2, success=True, env_reward=-2.0)
    assert terms == pytest.approx({"progress": 0.5, "success": 5.0, "env": -1.0, "step_cost": -0.1})
    assert s.reward(terms) == pytest.approx(0.5 + 5.0 - 1.0 - 0.1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"progress": "linear"}, "one of ('delta', 'absolute', 'potential'), got 'linear'"),
        ({"gamma": 0.0}, "gamma must be in (0, 1], got 0.0"),
        ({"step_cost": -1.0}, "must be >= 0, got -1.0"),
        ({"w_env": float("nan")}, "w_env must be a finite number"),
    ],
)
def test_shaping_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        Shaping(**kwargs)


def test_detector_votes_in_window():
    d = SuccessDetector(threshold=0.65, window=3, min_votes=2)
    seen = []
    for p in (0.9, 0.1, 0.2, 0.7, 0.3, 0.66):
        d.update(p)
        seen.append((d.state()["votes"], d.detected))
    # windows: [.9] [.9,.1] [.9,.1,.2] [.1,.2,.7] [.2,.7,.3] [.7,.3,.66]
    assert seen == [(1, False), (1, False), (1, False), (1, False), (1, False), (2, True)]
    assert d.state()["recent"] == pytest.approx([0.7, 0.3, 0.66])


def test_detector_threshold_is_strict_and_latches_until_reset():
    d = SuccessDetector(threshold=0.5, window=2, min_votes=2)
    assert not d.update(0.5) and not d.update(0.5)  # equal to the threshold is not a vote
    assert not d.update(0.51) and d.update(0.8)
    assert d.update(0.0) and d.detected  # latched
    assert d.state()["detected_at_update"] == 3
    d.reset()
    assert not d.detected and d.votes == 0


def test_fresh_copies_do_not_share_history():
    proto = SuccessDetector(threshold=0.5, window=1, min_votes=1)
    a, b = proto.fresh(), proto.fresh()
    assert a.update(0.9) and not b.detected and not proto.detected


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"window": 0}, "window must be an int >= 1, got 0"),
        ({"window": 2, "min_votes": 3}, r"min_votes must be an int in \[1, window=2\], got 3"),
        ({"threshold": 1.0}, r"threshold must be in \[0, 1\), got 1.0"),
    ],
)
def test_detector_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SuccessDetector(**kwargs)


def test_detector_rejects_non_probabilities():
    with pytest.raises(ValueError, match=r"success_prob must be a probability in \[0, 1\], got 1.5"):
        SuccessDetector().update(1.5)


def test_success_termination_pays_the_value_of_staying_in_success():
    """Ending an episode on success is worth what staying would have been: the terminal step pays
    gamma / (1 - gamma) x the held-progress reward, so the discounted return of terminating equals that
    of staying in success forever (absolute: p every step; delta: 0; potential: (gamma - 1) p)."""
    from rlrm.shaping import RewardState, Shaping, SuccessDetector

    gamma, p = 0.95, 0.8
    for progress, stay_reward in (("absolute", p), ("delta", 0.0), ("potential", (gamma - 1) * p)):
        shaping = Shaping(progress=progress, gamma=gamma)
        assert shaping.stay_value(p, env_reward=0.0) == pytest.approx(gamma / (1 - gamma) * stay_reward)
        state = RewardState(shaping, SuccessDetector(threshold=0.5, window=1, min_votes=1), terminate_on_success=True)
        state.start()
        state.set_baseline(p)
        out = state.step(0.0, progress=p, success_prob=0.9)
        assert out.terminate and out.terms["terminal"] == pytest.approx(gamma / (1 - gamma) * stay_reward)
        staying = sum(gamma**k * stay_reward for k in range(1, 2000))  # the same state, never ending
        assert out.reward == pytest.approx(shaping.reward(shaping.terms(p, p, True, 0.0)) + staying, abs=1e-6)
    no_end = RewardState(Shaping(gamma=gamma), SuccessDetector(threshold=0.5, window=1, min_votes=1))
    no_end.start()
    out = no_end.step(0.0, progress=p, success_prob=0.9)
    assert out.detected and not out.terminate and out.terms["terminal"] == 0.0  # off by default: nothing paid
    with pytest.raises(ValueError, match="gamma=1.0.*infinite value"):
        RewardState(Shaping(gamma=1.0), SuccessDetector(), terminate_on_success=True)
