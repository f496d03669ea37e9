"""Final-score evaluation on the 1-5 scale: RoboRewardBench folders and rlrm's own trajectories, for any model.

* :class:`BenchExample` - one labelled episode: subset, video file (or frames), task, true 1-5 reward.
* :func:`read_roboreward_bench` - the RoboRewardBench layout: per subset folder a ``metadata.jsonl``
  (``file_name``, ``task``, ``reward`` 1-5) and the mp4s it names (a root holding ``metadata.jsonl`` is one
  subset).
* :func:`examples_from_trajectories` - rlrm trajectories as examples: true score 1 + 4 x final true progress,
  subset = task id.
* :func:`score_1to5` - a model's final progress on the 1-5 scale: 1 + 4p (Robometer; RoboReward with
  ``mapping="minus1_over4"``, where it is exactly the expected score), 5p for RoboReward's ``"over5"``.
* :func:`evaluate_final_scores` / :class:`FinalScoreReport` - MAE on the 1-5 scale per subset and overall
  (the mean over subsets, as RoboRewardBench reports it), and the reliability of the final success
  probability for "succeeded" (true reward 5).

Every model sees the same frames: :func:`rlrm.models.roboreward.video_frame_indices` (2 fps, 4 to
``max_frames`` frames, first and last kept), decoded with OpenCV.

>>> score_1to5(np.array([0.0, 0.5, 1.0]), ModelInfo("robometer")).tolist()
[1.0, 3.0, 5.0]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlrm.evaluate.metrics import mae_by_group, reliability
from rlrm.types import DescribedScorer, ModelInfo, RewardQuery

__all__ = [
    "BenchExample",
    "read_roboreward_bench",
    "examples_from_trajectories",
    "score_1to5",
    "FinalScoreReport",
    "evaluate_final_scores",
]

log = logging.getLogger(__name__)

METADATA = "metadata.jsonl"


@dataclass
class BenchExample:
    """One labelled episode.

    Args:
        subset: the group its MAE is averaged in (RoboRewardBench subset, or task id).
        name: file name or episode id.
        task: the instruction.
        reward: the true score on the 1-5 scale (an int on RoboRewardBench).
        video: the mp4 to decode (RoboRewardBench), or None when ``frames`` are given.
        frames: (T, H, W, 3) uint8 already in memory (rlrm trajectories), or None.
        fps: frame rate of ``frames`` / the video (read from the file when 0).
    """

    subset: str
    name: str
    task: str
    reward: float
    video: Path | None = None
    frames: np.ndarray | None = None
    fps: float = 0.0

    def load(self) -> tuple[np.ndarray, float]:
        """(frames (T, H, W, 3) uint8 RGB, fps); a video is decoded with OpenCV."""
        if self.frames is not None:
            return self.frames, self.fps or 10.0
        import cv2

        from rlrm.train.data import read_video

        frames = read_video(self.video)  # raises naming the file when OpenCV reads no frame
        capture = cv2.VideoCapture(str(self.video))
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        capture.release()
        return frames, fps if fps > 0 else 30.0


def read_roboreward_bench(root: str | Path) -> list[BenchExample]:
    """Every example of a RoboRewardBench folder (subset folders with ``metadata.jsonl``), sorted by subset.

    Raises:
        FileNotFoundError: no ``metadata.jsonl`` under ``root``, or a listed video is missing.
        ValueError: a metadata line without ``file_name`` / ``task`` / ``reward``, or a reward outside 1-5.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no RoboRewardBench folder at {root}")
    files = sorted(root.glob(f"*/{METADATA}")) + ([root / METADATA] if (root / METADATA).exists() else [])
    if not files:
        raise FileNotFoundError(f"{root} holds no {METADATA} (nor subset folders with one); expected the "
                                "RoboRewardBench layout: <subset>/metadata.jsonl + <subset>/<file_name>.mp4")
    examples = []
    for meta in files:
        subset = meta.parent.name
        for n, line in enumerate(meta.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [k for k in ("file_name", "task", "reward") if k not in row]
            if missing:
                raise ValueError(f"{meta}:{n} lacks {missing}; expected file_name, task and reward (1-5)")
            reward = float(row["reward"])
            if not 1 <= reward <= 5:
                raise ValueError(f"{meta}:{n} has reward {row['reward']!r}; expected a score in 1..5")
            video = meta.parent / row["file_name"]
            if not video.exists():
                raise FileNotFoundError(f"{meta}:{n} names {row['file_name']!r}, which is not in {meta.parent}")
            examples.append(BenchExample(subset, str(row["file_name"]), str(row["task"]), reward, video=video))
    return examples


def examples_from_trajectories(trajectories: Sequence[Any], fps: float = 10.0) -> list[BenchExample]:
    """rlrm :class:`~rlrm.train.data.Trajectory` objects as examples: score 1 + 4 x final true progress."""
    return [BenchExample(t.task_id or t.task, t.episode_id, t.task, 1.0 + 4.0 * float(t.progress_targets()[-1]),
                         frames=t.frames, fps=fps) for t in trajectories]


def score_1to5(progress: np.ndarray | float, info: ModelInfo) -> np.ndarray:
    """Final progress in [0, 1] on the 1-5 scale for the model ``info`` describes (see the module docstring)."""
    p = np.asarray(progress, np.float64)
    extra = info.extra or {}
    if extra.get("family") == "roboreward" and extra.get("mapping") == "over5":
        return 5.0 * p
    return 1.0 + 4.0 * p


@dataclass
class FinalScoreReport:
    """MAE on the 1-5 scale and success reliability of a model on labelled episodes.

    Args:
        model: the scorer's model name.
        num_examples: episodes scored.
        mae: the mean over subsets of each subset's MAE (RoboRewardBench's headline number).
        mae_per_subset: subset -> MAE.
        mae_all: MAE over all examples (large subsets weigh more).
        success_reliability: :func:`rlrm.evaluate.metrics.reliability` of the final success probability
            against "true reward is 5".
        examples: per example subset, name, task, true reward, predicted score, success probability.
    """

    model: str
    num_examples: int
    mae: float
    mae_per_subset: dict[str, float]
    mae_all: float
    success_reliability: dict[str, Any]
    examples: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The headline numbers (no per-example records)."""
        d = asdict(self)
        d.pop("examples")
        return d


def evaluate_final_scores(scorer: DescribedScorer, examples: Sequence[BenchExample], max_frames: int | None = None,
                          fps: float = 2.0, min_frames: int = 4, batch_size: int = 8) -> FinalScoreReport:
    """Score each example once (its video sampled with ``video_frame_indices``) and compute the report.

    Args:
        scorer: a RewardModel or any scorer with ``info()``.
        max_frames: frames per video (default: the model's ``max_frames``).
        fps / min_frames: the sampling rate and floor of :func:`~rlrm.models.roboreward.video_frame_indices`.
        batch_size: episodes per ``score`` call (videos are decoded batch by batch).
    """
    from rlrm.models.roboreward import video_frame_indices

    if not examples:
        raise ValueError("no examples to evaluate: the bench folder or dataset is empty")
    info = scorer.info()
    max_frames = int(max_frames or info.max_frames)
    predicted, success = [], []
    for start in range(0, len(examples), batch_size):
        queries = []
        for ex in examples[start : start + batch_size]:
            frames, source_fps = ex.load()
            idx = video_frame_indices(len(frames), source_fps, fps, min(min_frames, max_frames), max_frames)
            queries.append(RewardQuery(frames[idx], ex.task, ex.name, idx))
        for r in scorer.score(queries):
            predicted.append(float(score_1to5(r.progress[-1], info)))
            success.append(float(r.success[-1]))
    true = [ex.reward for ex in examples]
    subsets = [ex.subset for ex in examples]
    per_subset, mae = mae_by_group(predicted, true, subsets)
    labels = [float(t >= 5.0) for t in true]
    calib = reliability(success, labels)
    rows = [{"subset": ex.subset, "name": ex.name, "task": ex.task, "reward": ex.reward,
             "predicted": round(p, 4), "success_prob": round(s, 4)}
            for ex, p, s in zip(examples, predicted, success, strict=True)]
    return FinalScoreReport(model=info.name, num_examples=len(examples), mae=mae, mae_per_subset=per_subset,
                            mae_all=float(np.mean(np.abs(np.asarray(predicted) - np.asarray(true)))),
                            success_reliability=calib, examples=rows)
