"""Training samples drawn from trajectories: single views for progress/success, pairs for preference.

* :class:`ProgressSample` - frames + task + per-frame targets for the progress and success heads.
* :class:`PreferenceSample` - a preferred (chosen) and a dispreferred (rejected) view of one task.
* :func:`forward_view` - a prefix of an episode subsampled like the dense reward sends it.
* :func:`rewind_view` - an episode played forward to a point, then backwards (a "rewound" copy).
* :func:`different_instruction_view` - an episode paired with another task's instruction (progress 0).
* :func:`suboptimal_pair` / :func:`rewind_pair` / :func:`different_task_pair` - the three
  published preference strategies for a successful episode.
* :class:`SampleMixer` - draws batches of both kinds from a dataset at configured ratios.

All samplers take a ``numpy.random.Generator`` so a seed fixes the whole data stream.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rlrm.sampling import sample_indices
from rlrm.train.data import Trajectory

__all__ = [
    "ProgressSample",
    "PreferenceSample",
    "forward_view",
    "rewind_view",
    "different_instruction_view",
    "suboptimal_pair",
    "rewind_pair",
    "different_task_pair",
    "SampleMixer",
    "PROGRESS_TARGETS",
]

log = logging.getLogger(__name__)


@dataclass
class ProgressSample:
    """One trajectory view with per-frame targets.

    Args:
        frames: (T, H, W, 3) uint8 sent frames.
        task: the instruction the model is given.
        target_progress: (T,) float32 in [0, 1].
        success: (T,) float32 0/1 per-frame success labels.
        progress_is_target: whether the progress loss uses this sample (successful, rewound or
            different-instruction views; not failed/suboptimal episodes, whose progress is unknown).
        unsuccessful: the episode failed or was suboptimal (all its frames train the success head).
        strategy: how it was made: ``forward``, ``rewind`` or ``different_instruction``.
        frame_index: (T,) int64 indices of the sent frames in the source episode.
    """

    frames: np.ndarray
    task: str
    target_progress: np.ndarray
    success: np.ndarray
    progress_is_target: bool
    unsuccessful: bool
    strategy: str
    frame_index: np.ndarray


@dataclass
class PreferenceSample:
    """A pair of views of one task where ``chosen`` made more progress than ``rejected``."""

    chosen: ProgressSample
    rejected: ProgressSample
    strategy: str

    def ordered(self, rng: np.random.Generator) -> tuple[ProgressSample, ProgressSample, float]:
        """(A, B, label) in random order; label is 1.0 when A is the chosen view."""
        if rng.random() < 0.5:
            return self.chosen, self.rejected, 1.0
        return self.rejected, self.chosen, 0.0


#: Which episodes are progress targets: ``"success"`` (published recipe: successful and rewound
#: views only) or ``"labelled"`` (also failed/suboptimal episodes that store true progress, e.g. sim data).
PROGRESS_TARGETS = ("success", "labelled")


def _is_progress_target(traj: Trajectory, progress_on: str) -> bool:
    if progress_on not in PROGRESS_TARGETS:
        raise ValueError(f"progress_on must be one of {PROGRESS_TARGETS}, got {progress_on!r}")
    return traj.quality == "success" or (progress_on == "labelled" and traj.progress is not None)


def _view(
    traj: Trajectory, idx: np.ndarray, strategy: str, task: str | None = None, progress_on: str = "success"
) -> ProgressSample:
    idx = np.asarray(idx, dtype=np.int64)
    progress = traj.progress_targets()[idx]
    success = traj.success_labels()[idx]
    return ProgressSample(
        frames=traj.frames[idx],
        task=task or traj.task,
        target_progress=progress.astype(np.float32),
        success=success.astype(np.float32),
        progress_is_target=_is_progress_target(traj, progress_on),
        unsuccessful=traj.quality != "success",
        strategy=strategy,
        frame_index=idx,
    )


def forward_view(
    traj: Trajectory,
    rng: np.random.Generator,
    max_frames: int = 8,
    full_prob: float = 0.3,
    progress_on: str = "success",
) -> ProgressSample:
    """A prefix ``o_0..o_t`` subsampled to ``max_frames`` with the ``"prefix"`` rule of the dense reward.

    ``t`` is the last frame with probability ``full_prob``, else uniform over the episode, so the
    model sees the same kinds of queries the RL wrapper sends at every step. ``progress_on``
    (see :data:`PROGRESS_TARGETS`) decides whether a failed/suboptimal episode is a progress target.
    """
    t = traj.num_frames - 1 if rng.random() < full_prob else int(rng.integers(0, traj.num_frames))
    return _view(traj, sample_indices(t + 1, max_frames, "prefix"), "forward", progress_on=progress_on)


def rewind_view(traj: Trajectory, rng: np.random.Generator, max_frames: int = 8) -> ProgressSample:
    """The episode forward to a random frame ``m``, then backwards to an earlier frame ``r``.

    Progress targets follow the frames (they rise, then fall back); the view is a progress
    target, as in the published recipe. Needs at least 3 frames.
    """
    if traj.num_frames < 3:
        raise ValueError(f"a rewind needs at least 3 frames, episode {traj.episode_id!r} has {traj.num_frames}")
    turn = int(rng.integers(2, traj.num_frames))
    back_to = int(rng.integers(0, turn - 1))
    played = np.concatenate([np.arange(0, turn + 1), np.arange(turn - 1, back_to - 1, -1)])
    pos = sample_indices(len(played), max_frames, "prefix")
    if turn not in pos and len(pos) > 2:  # keep the turning point so the view really goes forward, then back
        inner = np.arange(1, len(pos) - 1)
        pos[inner[np.argmin(np.abs(pos[inner] - turn))]] = turn
    view = _view(traj, played[pos], "rewind")
    view.progress_is_target = True
    return view


def different_instruction_view(
    traj: Trajectory, instruction: str, rng: np.random.Generator, max_frames: int = 8
) -> ProgressSample:
    """A forward view of ``traj`` given an instruction of another task: progress 0 and no success."""
    if instruction == traj.task:
        raise ValueError(f"the different instruction must differ from the episode's task {traj.task!r}")
    view = forward_view(traj, rng, max_frames)
    view.task = instruction
    view.target_progress = np.zeros_like(view.target_progress)
    view.success = np.zeros_like(view.success)
    view.progress_is_target = True
    view.unsuccessful = True
    view.strategy = "different_instruction"
    return view


def _full_view(traj: Trajectory, max_frames: int, task: str | None = None) -> ProgressSample:
    return _view(traj, sample_indices(traj.num_frames, max_frames, "prefix"), "forward", task=task)


def _require_success(traj: Trajectory) -> None:
    if traj.quality != "success":
        raise ValueError(f"the chosen episode must be successful, {traj.episode_id!r} is {traj.quality!r}")


def suboptimal_pair(chosen: Trajectory, rejected: Trajectory, max_frames: int = 8) -> PreferenceSample:
    """A successful episode preferred over a failed/suboptimal episode of the same task (whole episodes)."""
    _require_success(chosen)
    if rejected.quality == "success":
        raise ValueError(f"the rejected episode must be failed or suboptimal, {rejected.episode_id!r} is a success")
    if rejected.task_id != chosen.task_id:
        raise ValueError(f"suboptimal pairs need the same task_id, got {chosen.task_id!r} and {rejected.task_id!r}")
    return PreferenceSample(
        _full_view(chosen, max_frames), _full_view(rejected, max_frames, task=chosen.task), "suboptimal"
    )


def rewind_pair(chosen: Trajectory, rng: np.random.Generator, max_frames: int = 8) -> PreferenceSample:
    """A successful episode preferred over a rewound copy of itself."""
    _require_success(chosen)
    return PreferenceSample(_full_view(chosen, max_frames), rewind_view(chosen, rng, max_frames), "rewind")


def different_task_pair(chosen: Trajectory, other: Trajectory, max_frames: int = 8) -> PreferenceSample:
    """A successful episode preferred over an episode of a different task shown with the chosen's
    instruction (progress target 0)."""
    _require_success(chosen)
    if other.task_id == chosen.task_id:
        raise ValueError(f"different-task pairs need another task_id than {chosen.task_id!r}")
    rejected = _full_view(other, max_frames, task=chosen.task)
    rejected.target_progress = np.zeros_like(rejected.target_progress)
    rejected.success = np.zeros_like(rejected.success)
    rejected.progress_is_target = True
    rejected.unsuccessful = True
    rejected.strategy = "different_task"
    return PreferenceSample(_full_view(chosen, max_frames), rejected, "different_task")


class SampleMixer:
    """Draws progress samples and preference pairs from a trajectory dataset at fixed ratios.

    Args:
        dataset: trajectories (a :class:`~rlrm.train.data.TrajectoryDataset` or a list).
        max_frames: frames per view.
        progress_ratios: weights of ``forward``, ``rewind``, ``different_instruction`` views.
        pair_ratios: weights of ``suboptimal``, ``rewind``, ``different_task`` pairs; a strategy
            the data cannot support (no failures, a single task) is dropped with a log line.
        distractor_instructions: extra instructions of other tasks for different-instruction
            views, besides the instructions of other task ids found in the dataset.
        paraphrase_prob: chance a forward view swaps its instruction for another phrasing of
            the same task id found in the dataset.
        progress_on: ``"success"`` (published recipe) or ``"labelled"``: failed/suboptimal
            episodes with stored true progress are progress targets too.
        seed: seeds the generator.

    >>> mixer = SampleMixer(trajectories, max_frames=8, seed=0)  # doctest: +SKIP
    >>> singles, pairs = mixer.progress_batch(8), mixer.pair_batch(4)  # doctest: +SKIP
    """

    def __init__(
        self,
        dataset: Sequence[Trajectory],
        max_frames: int = 8,
        progress_ratios: dict[str, float] | None = None,
        pair_ratios: dict[str, float] | None = None,
        distractor_instructions: Sequence[str] = (),
        paraphrase_prob: float = 0.0,
        progress_on: str = "success",
        seed: int = 0,
    ) -> None:
        if progress_on not in PROGRESS_TARGETS:
            raise ValueError(f"progress_on must be one of {PROGRESS_TARGETS}, got {progress_on!r}")
        self.progress_on = progress_on
        self.dataset = dataset
        self.max_frames = max_frames
        self.paraphrase_prob = paraphrase_prob
        self.rng = np.random.default_rng(seed)
        metas = self._metas()
        self.by_quality: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.phrasings: dict[str, list[str]] = defaultdict(list)
        for i, (task, task_id, quality) in enumerate(metas):
            self.by_quality[(task_id, quality)].append(i)
            if task not in self.phrasings[task_id]:
                self.phrasings[task_id].append(task)
        self.task_id_of = [m[1] for m in metas]
        self.successes = [i for i, m in enumerate(metas) if m[2] == "success"]
        if not self.successes:
            raise ValueError("the dataset has no successful episodes: progress and preference need some")
        self.task_ids = sorted(self.phrasings)
        self.distractors = [d for d in distractor_instructions if d]
        self.progress_ratios = self._normalise(
            progress_ratios or {"forward": 0.6, "rewind": 0.2, "different_instruction": 0.2},
            {"forward": True, "rewind": True,
             "different_instruction": len(self.task_ids) > 1 or bool(self.distractors)},
        )
        has_unsuccessful = any(q != "success" and idx for (_, q), idx in self.by_quality.items())
        self.pair_ratios = self._normalise(
            pair_ratios or {"suboptimal": 1.0, "rewind": 1.0, "different_task": 1.0},
            {"suboptimal": has_unsuccessful, "rewind": True, "different_task": len(self.task_ids) > 1},
        )

    def _metas(self) -> list[tuple[str, str, str]]:
        if hasattr(self.dataset, "metas"):
            return [(m["task"], m.get("task_id") or m["task"], m["quality"]) for m in self.dataset.metas]
        return [(t.task, t.task_id, t.quality) for t in self.dataset]

    @staticmethod
    def _normalise(ratios: dict[str, float], supported: dict[str, bool]) -> dict[str, float]:
        unknown = set(ratios) - set(supported)
        if unknown:
            raise ValueError(f"unknown sampling strategies {sorted(unknown)}, expected some of {sorted(supported)}")
        kept = {k: float(v) for k, v in ratios.items() if v > 0 and supported[k]}
        for k in ratios:
            if ratios[k] > 0 and not supported[k]:
                log.info("sampling strategy %r dropped: the data cannot support it", k)
        total = sum(kept.values())
        if total <= 0:
            raise ValueError(f"no usable sampling strategy among {ratios}")
        return {k: v / total for k, v in kept.items()}

    def _choose(self, ratios: dict[str, float]) -> str:
        names = list(ratios)
        return names[int(self.rng.choice(len(names), p=[ratios[n] for n in names]))]

    def _other_instruction(self, task_id: str) -> str:
        pool = [p for tid in self.task_ids if tid != task_id for p in self.phrasings[tid]] + self.distractors
        return pool[int(self.rng.integers(len(pool)))]

    def progress_sample(self) -> ProgressSample:
        """One single-trajectory view, strategy drawn from ``progress_ratios``."""
        strategy = self._choose(self.progress_ratios)
        if strategy == "rewind":
            traj = self.dataset[self.successes[int(self.rng.integers(len(self.successes)))]]
            return rewind_view(traj, self.rng, self.max_frames)
        traj = self.dataset[int(self.rng.integers(len(self.dataset)))]
        if strategy == "different_instruction":
            return different_instruction_view(traj, self._other_instruction(traj.task_id), self.rng, self.max_frames)
        view = forward_view(traj, self.rng, self.max_frames, progress_on=self.progress_on)
        phrasings = self.phrasings[traj.task_id]
        if len(phrasings) > 1 and self.rng.random() < self.paraphrase_prob:
            view.task = phrasings[int(self.rng.integers(len(phrasings)))]
        return view

    def pair_sample(self) -> PreferenceSample:
        """One preference pair, strategy drawn from ``pair_ratios`` (retrying if a task lacks failures)."""
        for _ in range(100):
            strategy = self._choose(self.pair_ratios)
            chosen = self.dataset[self.successes[int(self.rng.integers(len(self.successes)))]]
            if strategy == "rewind":
                return rewind_pair(chosen, self.rng, self.max_frames)
            if strategy == "suboptimal":
                pool = self.by_quality[(chosen.task_id, "suboptimal")] + self.by_quality[(chosen.task_id, "failure")]
                if pool:
                    other = self.dataset[pool[int(self.rng.integers(len(pool)))]]
                    return suboptimal_pair(chosen, other, self.max_frames)
            else:
                others = [i for i, tid in enumerate(self.task_id_of) if tid != chosen.task_id]
                other = self.dataset[others[int(self.rng.integers(len(others)))]]
                return different_task_pair(chosen, other, self.max_frames)
        raise RuntimeError("could not draw a preference pair in 100 tries: no task has both successes and failures")

    def progress_batch(self, n: int) -> list[ProgressSample]:
        """``n`` single-trajectory views."""
        return [self.progress_sample() for _ in range(n)]

    def pair_batch(self, n: int) -> list[PreferenceSample]:
        """``n`` preference pairs."""
        return [self.pair_sample() for _ in range(n)]
