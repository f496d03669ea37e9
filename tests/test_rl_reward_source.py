"""run_rl's reward source: a remote worker behind CurveZMQ keys is reached with reward.curve_server_key;
without the key the source is refused when it opens."""

import numpy as np
import pytest

from rlrm.cli import main
from rlrm.rl.reward_source import RewardSourceError, open_reward_source
from rlrm.transport import RewardWorker
from rlrm.types import RewardQuery


def test_remote_source_with_curve_key_scores_and_without_key_is_refused_at_open(tiny_model, tmp_path):
    keys = tmp_path / "keys"
    assert main(["keys", str(keys)]) == 0
    query = RewardQuery(np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8), "reach")
    expected = tiny_model.score([query])[0]
    reward = {"kind": "robometer", "model": "tiny", "enc": "raw"}
    with RewardWorker(tiny_model, bind="tcp://127.0.0.1:0", curve_keys=keys) as worker:
        cfg = dict(reward, source=worker.url, curve_server_key=str(keys / "server.key"))
        with open_reward_source(cfg, {"name": "worker", "timeout_ms": 60000}) as scorer:
            got = scorer.score([query])[0]
        np.testing.assert_allclose(got.progress, expected.progress, atol=1e-6)
        cfg = dict(reward, source=worker.url, curve_server_key=None)
        with pytest.raises(RewardSourceError, match="curve_server_key"):  # refused at start-up, not mid-run
            with open_reward_source(cfg, {"name": "worker", "timeout_ms": 300}):
                pass
