"""The scorer contract: one query-list validation, the Scorer protocols, one list of worker URL schemes,
and the lazy top-level names of ``rlrm``."""

import subprocess
import sys

import numpy as np
import pytest

import rlrm
from rlrm.models.base import RewardModel
from rlrm.transport import (
    URL_SCHEMES,
    LocalScorer,
    RayRewardPool,
    RewardClient,
    RewardWorker,
    is_scorer,
    make_scorer,
    protocol,
)
from rlrm.types import (
    AsyncScorer,
    BaseScorer,
    DeferredScorer,
    DescribedScorer,
    InvalidQueriesError,
    ModelInfo,
    ResultsMismatchError,
    RewardQuery,
    RewardResult,
    Scorer,
    validate_queries,
)
from rlrm.views import ViewMeanScorer

FRAMES = np.random.default_rng(3).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
QUERY = RewardQuery(FRAMES, "open the drawer")
UNREACHABLE = "tcp://127.0.0.1:1"  # validation must fail before anything is sent


# ------------------------------------------------------------------ validate_queries


def test_validate_queries_returns_a_list_of_the_same_queries():
    assert validate_queries([]) == []
    out = validate_queries((QUERY, QUERY))
    assert isinstance(out, list) and len(out) == 2 and out[0] is QUERY


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (QUERY, r"queries must be a list of RewardQuery, got a single RewardQuery; wrap it in a list: \[query\]"),
        (FRAMES, "queries must be a list of RewardQuery, got ndarray"),
        ("open the drawer", "queries must be a list of RewardQuery, got str"),
        (None, "queries must be a list of RewardQuery, got NoneType"),
        (iter([QUERY]), "queries must be a list of RewardQuery, got list_iterator"),
        ([QUERY, FRAMES], r"queries\[1\] must be a RewardQuery, got ndarray \(wrap frames in RewardQuery\(frames, task\)\)"),
        ([{"frames": FRAMES}], r"queries\[0\] must be a RewardQuery, got dict"),
    ],
)
def test_validate_queries_names_the_bad_value_and_the_expected_one(bad, message):
    with pytest.raises(InvalidQueriesError, match=message) as err:
        validate_queries(bad)
    # both exception types the earlier per-scorer copies raised keep catching it
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)


def test_validate_queries_rechecks_fields_reassigned_after_construction():
    channel_first = RewardQuery(FRAMES, "open the drawer")
    channel_first.frames = np.zeros((2, 3, 32, 32), np.uint8)
    with pytest.raises(ValueError, match=r"queries\[1\]\.frames must be uint8 \(T,H,W,3\), got uint8 \(2, 3, 32, 32\).*channel-first"):
        validate_queries([QUERY, channel_first])
    blank = RewardQuery(FRAMES, "open the drawer")
    blank.task = "  "
    with pytest.raises(ValueError, match=r"queries\[0\]\.task must be a non-empty instruction string, got '  '"):
        validate_queries([blank])


@pytest.fixture
def scorers(tiny_model):
    local = LocalScorer(tiny_model)
    client = RewardClient(UNREACHABLE, timeout_ms=100, retries=0)
    yield {"LocalScorer": local, "RewardClient": client}
    local.close()
    client.close()


@pytest.mark.parametrize("name", ["LocalScorer", "RewardClient"])
@pytest.mark.parametrize("method", ["score", "score_async"])
def test_every_scorer_rejects_a_bad_list_with_the_same_error(scorers, name, method):
    call = getattr(scorers[name], method)
    for bad in (QUERY, [QUERY, FRAMES]):
        with pytest.raises(InvalidQueriesError) as got:
            call(bad)
        with pytest.raises(InvalidQueriesError) as expected:
            validate_queries(bad)
        assert str(got.value) == str(expected.value)


# ------------------------------------------------------------------ Scorer protocols


def test_local_scorer_and_a_model_meet_their_protocols(tiny_model):
    assert isinstance(tiny_model, RewardModel)
    assert not isinstance(tiny_model, AsyncScorer)  # a model is wrapped, not passed through
    with make_scorer(tiny_model) as local:
        assert isinstance(local, LocalScorer)
        assert isinstance(local, Scorer) and isinstance(local, AsyncScorer) and is_scorer(local)
        assert make_scorer(local) is local


def test_ray_pool_and_view_mean_scorer_meet_their_protocols(tiny_model):
    # a real pool needs a Ray runtime (tests/test_transport_ray.py, slow); the class is enough here
    assert issubclass(RayRewardPool, AsyncScorer)
    assert isinstance(ViewMeanScorer(LocalScorer(tiny_model), widths=[16, 16]), Scorer)


def test_every_scorer_is_a_base_scorer_and_its_abilities_are_named_protocols(tiny_model):
    from rlrm.distributed.shared_reward import SharedRewardClient

    for cls in (LocalScorer, RewardClient, RayRewardPool, SharedRewardClient):
        assert issubclass(cls, BaseScorer) and issubclass(cls, AsyncScorer) and issubclass(cls, DescribedScorer)
    assert issubclass(RewardClient, DeferredScorer) and issubclass(ViewMeanScorer, DeferredScorer)
    assert not issubclass(LocalScorer, DeferredScorer)  # builds no queries of its own


class _Miscounting(BaseScorer):
    """A scorer whose backend answers with one value too few per query, or one result too few."""

    def __init__(self, short: str) -> None:
        self.short = short

    def _score(self, queries, timeout_ms):
        if self.short == "results":
            return [RewardResult(np.zeros(q.num_frames), np.zeros(q.num_frames)) for q in queries[1:]]
        return [RewardResult(np.zeros(q.num_frames - 1), np.zeros(q.num_frames - 1)) for q in queries]

    def _score_async(self, queries, timeout_ms):
        from concurrent.futures import Future

        done = Future()
        done.set_result(self._score(queries, timeout_ms))
        return done

    def info(self):
        return ModelInfo("miscounting")

    def __repr__(self):
        return "Miscounting()"


@pytest.mark.parametrize("short, message", [
    ("results", r"Miscounting\(\) returned 1 results for 2 queries; expected one RewardResult per query"),
    ("values", r"Miscounting\(\) returned 1 values for query 0 of 2 frames; expected one per sent frame"),
])
def test_base_scorer_checks_every_answer_with_one_error(short, message):
    scorer = _Miscounting(short)
    with pytest.raises(ResultsMismatchError, match=message):
        scorer.score([QUERY, QUERY])
    with pytest.raises(ResultsMismatchError, match=message):
        scorer.score_async([QUERY, QUERY]).result()
    assert scorer.score([]) == [] and scorer.score_async([]).result() == []
    scorer.close()
    with pytest.raises(RuntimeError, match=r"Miscounting\(\) is closed"):
        scorer.score([QUERY])


def test_an_object_without_close_is_not_a_scorer(tiny_model):
    class ScoreOnly:
        def score(self, queries):
            return [RewardResult(np.zeros(q.num_frames), np.zeros(q.num_frames)) for q in queries]

    assert not isinstance(ScoreOnly(), Scorer)
    with pytest.raises(TypeError, match="cannot make a scorer from ScoreOnly"):
        make_scorer(ScoreOnly())


@pytest.mark.parametrize("scheme", URL_SCHEMES)
def test_reward_client_on_every_url_scheme_is_a_scorer_against_a_real_worker(tiny_model, tmp_path, scheme):
    bind = {"tcp://": "tcp://127.0.0.1:0", "ipc://": f"ipc://{tmp_path}/worker.sock"}[scheme]
    with RewardWorker(tiny_model, bind=bind, max_wait_ms=0) as worker:
        assert worker.url.startswith(scheme)
        with make_scorer(worker.url, timeout_ms=30000) as client:
            assert isinstance(client, RewardClient)
            assert isinstance(client, Scorer) and isinstance(client, AsyncScorer) and is_scorer(client)
            (got,) = client.score([QUERY])
            (expected,) = tiny_model.score([QUERY])
            np.testing.assert_allclose(got.progress, expected.progress, atol=1e-5)
            np.testing.assert_allclose(got.success, expected.success, atol=1e-5)
            assert client.info().name == tiny_model.info().name


# ------------------------------------------------------------------ URL schemes


def test_one_list_of_url_schemes():
    assert URL_SCHEMES is protocol.URL_SCHEMES
    assert URL_SCHEMES == ("tcp://", "ipc://")


@pytest.mark.parametrize("url", ["localhost:5555", "http://127.0.0.1:5555", "", 5555])
def test_non_worker_urls_are_refused_naming_the_schemes(url):
    with pytest.raises(ValueError, match=r"url must be a ZeroMQ endpoint starting with one of \['tcp://', 'ipc://'\]"):
        RewardClient(url)


def test_inproc_is_refused_with_the_reason():
    # a RewardClient and a RewardWorker each own their ZeroMQ context, and inproc:// joins only
    # sockets of one context: such a client would time out on every request
    with pytest.raises(ValueError, match=r"got 'inproc://rlrm'; inproc:// never reaches a RewardWorker"):
        RewardClient("inproc://rlrm")
    with pytest.raises(ValueError, match=r"reward source must be a ZeroMQ endpoint .* got 'inproc://rlrm'; inproc://"):
        make_scorer("inproc://rlrm")
    with pytest.raises(ValueError, match="is not a worker URL"):
        make_scorer("tiny")


# ------------------------------------------------------------------ top-level names


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {m.split(".")[0] for m in out.stdout.split()}


def test_import_rlrm_stays_light():
    loaded = _modules_after("import rlrm")
    assert not loaded & {"torch", "gymnasium", "transformers", "zmq", "stable_baselines3", "ray"}


def test_transport_and_model_registry_do_not_import_torch():
    loaded = _modules_after("import rlrm.transport\nfrom rlrm import make_reward_model, RewardClient")
    assert "zmq" in loaded
    assert not loaded & {"torch", "transformers", "gymnasium"}


def test_top_level_names_resolve_lazily_to_the_library_objects():
    from rlrm import RewardClient as TopClient
    from rlrm import RobometerReward, SuccessTermination, make_reward_model
    from rlrm.models.base import make_reward_model as base_make
    from rlrm.wrappers import RobometerReward as WrapperReward
    from rlrm.wrappers import SuccessTermination as WrapperTermination

    assert TopClient is RewardClient
    assert RobometerReward is WrapperReward and SuccessTermination is WrapperTermination
    assert make_reward_model is base_make
    assert {"RobometerReward", "SuccessTermination", "make_reward_model", "RewardClient"} <= set(dir(rlrm))
    with pytest.raises(AttributeError, match="module 'rlrm' has no attribute 'RobometerRewards'"):
        rlrm.RobometerRewards  # noqa: B018


@pytest.mark.parametrize("value, advice", [(0.5, r"\* 255"), (128.0, r"np.clip\(frames, 0, 255\).astype")])
def test_float_frames_hint_follows_the_value_range(value, advice):
    """Frames already in 0..255 must not be told to scale by 255 (that saturates every pixel)."""
    from rlrm.types import validate_frames

    with pytest.raises(ValueError, match=advice) as caught:
        validate_frames(np.full((2, 8, 8, 3), value, np.float32))
    assert (value > 1) == ("* 255" not in str(caught.value))
