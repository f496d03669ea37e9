"""``reward.adapt=true``: the reward model learns from labels while the policy trains (the run's side).

* :func:`adaptation_folder` - where labels and versions go (``reward.trainer.folder`` or
  ``<run folder>/reward_adapt``); :func:`adaptation_summary` - its part of ``summary.json``.
* :class:`RewardAdaptation` - everything a run adds: the labeller (``labels=oracle|human``) writing into the
  trainer's inbox, the reward trainer process, the re-scorer of stored transitions, the episode collector
  that feeds both, and the record of versions and labels for ``summary.json``.
* :class:`AdaptationLoggingCallback` - SB3 callback: TensorBoard scalars ``reward_model/version``,
  ``reward_model/labels``, ``reward_model/rescored_episodes``, ``reward_model/trainer_alive``; notices a
  trainer crash (logged once; RL goes on with the last version) and notes the version over env steps.

>>> with RewardAdaptation(cfg, run_dir, scorer) as adapt:          # doctest: +SKIP
...     env = adapt.wrap(env)                                        # labels + re-scoring from finished episodes
...     adapt.attach(model.replay_buffer)
...     model.learn(5000, callback=[adapt.callback()])
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from rlrm.rl.episodes import EpisodeCollector
from rlrm.rl.labels import make_labeller
from rlrm.rl.rescoring import Rescorer

__all__ = ["adaptation_folder", "adaptation_summary", "RewardAdaptation", "AdaptationLoggingCallback"]

log = logging.getLogger(__name__)


def adaptation_folder(cfg: dict[str, Any], run_dir: str | Path) -> Path:
    """``reward.trainer.folder``, else ``<run_dir>/reward_adapt``."""
    folder = cfg["reward"]["trainer"].get("folder")
    return Path(folder) if folder else Path(run_dir) / "reward_adapt"


def adaptation_summary(adaptation: RewardAdaptation | None) -> dict[str, Any]:
    """``{"reward_adaptation": ...}`` for ``summary.json`` (empty without ``reward.adapt``)."""
    return {} if adaptation is None else {"reward_adaptation": adaptation.summary()}


def _served_version(scorer: Any) -> int | None:
    version = getattr(scorer, "version", None)
    return int(version) if version is not None else None


class RewardAdaptation:
    """The run's part of ``reward.adapt``: labeller -> inbox -> trainer process -> versions -> re-scoring.

    Args:
        cfg: the resolved run config (``reward.trainer``, ``labels``, ``reward.success.threshold``).
        run_dir: the run folder (the default adaptation folder is inside it).
        scorer: the run's reward source (it swaps versions: opened with ``watch=`` the versions folder).
        model_spec: the model the run serves as version 0 (the trainer starts from it).
    """

    def __init__(self, cfg: dict[str, Any], run_dir: str | Path, scorer: Any, model_spec: str) -> None:
        from rlrm.train.online import VERSIONS, LabelInbox, RewardTrainerProcess

        self.cfg = cfg
        self.folder = adaptation_folder(cfg, run_dir)
        self.versions_dir = self.folder / VERSIONS
        self.scorer = scorer
        trainer_cfg = cfg["reward"]["trainer"]
        self.inbox = LabelInbox(self.folder)
        self.labeller = make_labeller(cfg["labels"], self.inbox.write,
                                      threshold=float(cfg["reward"]["success"]["threshold"]))
        if self.labeller is None:
            raise ValueError("reward.adapt=true needs labels=oracle or labels=human")
        self.trainer = RewardTrainerProcess(model_spec, self.folder, trainer_cfg)
        self.rescorer: Rescorer | None = None
        self.rescore = bool(trainer_cfg.get("rescore", True))
        self.rescore_episodes = int(trainer_cfg.get("rescore_episodes", 200))
        self.timeline: list[tuple[int, int]] = []  # (env step, version) each time the served version changed

    def start(self) -> RewardAdaptation:
        """Start the trainer process."""
        self.trainer.start()
        return self

    def wrap(self, env: Any) -> EpisodeCollector:
        """Put the episode collector on ``env`` (above its reward wrapper): finished episodes go to the labeller
        and, with ``reward.trainer.rescore``, to the re-scorer."""
        sinks = [self.labeller.consider]
        if self.rescore:
            template = env.get_wrapper_attr("episode_reward")
            self.rescorer = Rescorer(self.scorer, template, max_episodes=self.rescore_episodes).start()
            sinks.append(self.rescorer.add_episode)
        return EpisodeCollector(env, sinks=sinks)

    def attach(self, replay_buffer: Any) -> None:
        """Let ``replay_buffer`` (a relabelling buffer) take the re-scored rewards."""
        if self.rescorer is None:
            return
        if not callable(getattr(replay_buffer, "attach_rescorer", None)):
            log.warning("the algorithm's %s cannot take re-scored rewards (not a relabelling buffer); stored "
                        "transitions keep the rewards they were stored with", type(replay_buffer).__name__)
            return
        replay_buffer.attach_rescorer(self.rescorer)

    def note(self, env_step: int) -> int | None:
        """Record the served version at ``env_step`` when it changed; returns it."""
        version = _served_version(self.scorer)
        if version is not None and (not self.timeline or self.timeline[-1][1] != version):
            self.timeline.append((int(env_step), version))
            if len(self.timeline) > 1:
                log.info("env step %d: rewards now from reward model version %d", env_step, version)
        return version

    def callback(self) -> AdaptationLoggingCallback:
        """The SB3 callback that logs versions and labels and watches the trainer."""
        return AdaptationLoggingCallback(self)

    def summary(self) -> dict[str, Any]:
        """``summary.json``'s ``reward_adaptation``: versions over env steps, labels used, trainer state."""
        from rlrm.train.online import read_trainer_log
        from rlrm.transport.versions import published_versions

        return {
            "folder": str(self.folder),
            "versions_published": published_versions(self.versions_dir),
            "version_timeline": [{"env_step": s, "version": v} for s, v in self.timeline],
            "final_version": self.timeline[-1][1] if self.timeline else None,
            "labels": self.labeller.summary(),
            "rescored_episodes": self.rescorer.rescored if self.rescorer is not None else 0,
            "trainer_crashed": self.trainer.crashed,
            "trainer_log": read_trainer_log(self.folder),
        }

    def close(self) -> None:
        """Stop the re-scorer and the trainer."""
        if self.rescorer is not None:
            self.rescorer.stop()
        self.trainer.stop()

    def __enter__(self) -> RewardAdaptation:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AdaptationLoggingCallback(BaseCallback):
    """Logs the reward model's version and the labels used to TensorBoard; watches the trainer process.

    Scalars (every step, as the last value): ``reward_model/version``, ``reward_model/labels``,
    ``reward_model/rescored_episodes``, ``reward_model/trainer_alive`` (1 / 0 after a crash).
    """

    def __init__(self, adaptation: RewardAdaptation, check_every: int = 50) -> None:
        super().__init__()
        self.adaptation = adaptation
        self.check_every = int(check_every)
        self._alive = True

    def _on_step(self) -> bool:
        a = self.adaptation
        version = a.note(self.num_timesteps)
        if self.n_calls % self.check_every == 0:
            self._alive = a.trainer.check()
        if version is not None:
            self.logger.record("reward_model/version", version)
        self.logger.record("reward_model/labels", a.labeller.used)
        self.logger.record("reward_model/rescored_episodes", a.rescorer.rescored if a.rescorer is not None else 0)
        self.logger.record("reward_model/trainer_alive", int(self._alive))
        return True
