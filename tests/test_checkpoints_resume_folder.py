"""``run_rl.py resume=RUN`` reads RUN's checkpoint and writes only into its own new folder (issue 17)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# FetchReach at 64 px, 10-step episodes, the tiny reward model in-process, one evaluation episode with a video
TINY = ["env.max_episode_steps=10", "env.kwargs.image_size=64", "eval_episodes=1", "eval_video_episodes=1",
        "progress_bar=false", "algo.net_arch=[16]", "algo.learning_starts=10", "algo.batch_size=8",
        "transport=local", "reward.model=tiny", "reward.max_frames=2", "eval_every=10", "curve_episodes=1"]


def _run(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_rl.py"), *overrides], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _fingerprint(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resumed_run_writes_its_own_folder_and_leaves_the_earlier_run_untouched(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    proc = _run(*TINY, "total_steps=20", "checkpoint_every=0", f"hydra.run.dir={first}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    before = _fingerprint(first)
    assert "summary.json" in before and any(name.startswith("videos/") for name in before)

    proc = _run(f"resume={first}", "total_steps=30", f"hydra.run.dir={second}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert _fingerprint(first) == before  # nothing of the earlier run was rewritten, nothing added

    summary = json.loads((second / "summary.json").read_text())
    checkpoint = first / "checkpoints" / "step_000000020"
    assert summary["resumed_from"] == str(checkpoint)
    assert summary["env_steps"] == 30 and summary["trained_steps"] == 10
    assert [Path(v).parent for v in summary["videos"]] == [second / "videos"] * 2  # mp4 + png
    assert (second / "checkpoints" / "step_000000030" / "model.zip").exists()
    assert (second / "run_rl.log").exists() and (second / "tb").is_dir()
    assert "resume: " + str(first) in (second / "config.yaml").read_text()
    curve = json.loads((second / "learning_curve.json").read_text())["points"]
    assert [p["env_steps"] for p in curve] == [10, 20, 30]  # the earlier run's points, continued

    # resuming into the folder being resumed is refused in one line, before anything is touched
    proc = _run(f"resume={first}", "total_steps=30", f"hydra.run.dir={first}")
    assert proc.returncode == 1
    assert "is this run's own folder" in proc.stderr and "Traceback" not in proc.stderr
    def results(fingerprint: dict[str, str]) -> dict[str, str]:  # Hydra itself rewrites .hydra/ and its log there
        return {k: v for k, v in fingerprint.items() if not k.startswith(".hydra/") and k != "run_rl.log"}

    assert results(_fingerprint(first)) == results(before)
