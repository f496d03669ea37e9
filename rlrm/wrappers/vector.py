"""Robometer rewards for vectorised envs, with one batched reward request per vector step.

* :class:`RobometerVecReward` - wraps a gymnasium ``VectorEnv`` or a Stable-Baselines3
  ``VecEnv`` (picks :class:`GymVecReward` or :class:`SB3VecReward`); every sub-env keeps its own
  episode (:class:`rlrm.wrappers.episode.EpisodeReward`) and all sub-envs due for a query are
  scored in one ``scorer.score`` call. Rewards equal those of :class:`RobometerReward` on each
  sub-env alone.
* :class:`FrameInInfo` - a sub-env wrapper putting ``env.render()`` into ``info["rlrm_frame"]``,
  so an SB3 ``VecEnv`` that resets sub-envs inside ``step`` still hands over the terminal frame.

Auto-reset:

* gymnasium 1.x ``AutoresetMode.NEXT_STEP`` (the default): a finished episode is scored with its
  last frame on the step that ends it; on the next step the sub-env resets, that step's frame
  starts the new episode and its reward is 0 (``infos["_rlrm"]`` is False there).
  ``DISABLED``: the caller resets finished sub-envs with ``reset(options={"reset_mask": mask})``,
  which restarts only those episodes. ``SAME_STEP`` is refused (the terminal frame is gone by then).
* SB3 ``VecEnv`` (auto-reset inside ``step``): the terminal frame comes from
  ``infos[i]["terminal_observation"][camera]``, or with ``camera=None`` from
  ``infos[i]["rlrm_frame"]`` (sub-envs wrapped in :class:`FrameInInfo`); the new episode starts
  from ``venv.reset_infos[i]["rlrm_frame"]`` / the returned observation.

Success is detected per sub-env and its bonus paid once. Ending the episode on success
(``terminate_on_success=True``, default False here) works on SB3 ``VecEnv`` only: the wrapper
sets ``dones[i]``, puts the observation in ``infos[i]["terminal_observation"]`` and resets the
sub-env itself (``env_method("reset")``), exactly as SB3's auto-reset would. A gymnasium
``VectorEnv`` gives a wrapper no way to reset one sub-env in NEXT_STEP mode, so there wrap each
sub-env in :class:`RobometerReward` (or :class:`SuccessTermination`) instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rlrm.shaping import Shaping, SuccessDetector
from rlrm.wrappers.episode import ON_TIMEOUT, EpisodeReward, score_timed
from rlrm.wrappers.frames import FrameSource, frame_from_observation
from rlrm.wrappers.reward import open_scorer

__all__ = ["RobometerVecReward", "GymVecReward", "SB3VecReward", "FrameInInfo"]

log = logging.getLogger(__name__)

FRAME_KEY = "rlrm_frame"


class FrameInInfo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds the rendered frame to ``info["rlrm_frame"]`` after every ``reset`` and ``step``.

    For SB3 vector envs, which reset a finished sub-env before returning, so that
    :class:`RobometerVecReward` still sees each episode's last frame with ``camera=None``.

    >>> from stable_baselines3.common.env_util import make_vec_env
    >>> venv = make_vec_env("CartPole-v1", n_envs=2, wrapper_class=FrameInInfo,
    ...                     env_kwargs={"render_mode": "rgb_array"})
    >>> _ = venv.reset(); venv.reset_infos[0]["rlrm_frame"].shape
    (400, 600, 3)
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset and add the reset frame to the info."""
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, FRAME_KEY: self.env.render()}

    def step(self, action):
        """Step and add the new frame to the info."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, FRAME_KEY: self.env.render()}


class RobometerVecReward:
    """Robometer rewards for all sub-envs of a vector env, scored in one batched request per step.

    ``RobometerVecReward(venv, ...)`` returns a :class:`GymVecReward` for a gymnasium
    ``VectorEnv`` and an :class:`SB3VecReward` for a Stable-Baselines3 ``VecEnv``; arguments
    mean what they mean for :class:`RobometerReward` (``task`` may also be one instruction per
    sub-env). Success is detected and its bonus paid; ``terminate_on_success=True`` also ends the
    sub-env's episode, on SB3 ``VecEnv`` only (see the module notes).

    >>> import gymnasium as gym
    >>> from rlrm.models import make_reward_model
    >>> venv = gym.make_vec("CartPole-v1", num_envs=2, render_mode="rgb_array")
    >>> venv = RobometerVecReward(venv, "balance the pole", make_reward_model("tiny"))
    >>> _ = venv.reset(seed=0)
    >>> obs, rewards, terms, truncs, infos = venv.step(venv.action_space.sample())
    >>> rewards.shape, infos["rlrm"]["progress"].shape
    ((2,), (2,))
    >>> venv.close()
    """

    def __new__(cls, venv: Any, *args: Any, **kwargs: Any):
        if cls is RobometerVecReward:
            if isinstance(venv, gym.vector.VectorEnv):
                cls = GymVecReward
            elif isinstance(venv, VecEnv):
                cls = SB3VecReward
            else:
                raise TypeError(
                    f"RobometerVecReward wraps a gymnasium VectorEnv or an SB3 VecEnv, got {type(venv).__name__}; "
                    "use RobometerReward for a single env"
                )
        return super().__new__(cls)

    def _setup_rewards(
        self,
        venv: Any,
        num_envs: int,
        task: str | Sequence[str] | None,
        source: Any,
        camera: str | None,
        max_frames: int,
        sampling: str,
        every: int,
        shaping: Shaping | None,
        success: SuccessDetector | None,
        on_timeout: str,
    ) -> None:
        if on_timeout not in ON_TIMEOUT:
            raise ValueError(f"on_timeout must be one of {ON_TIMEOUT}, got {on_timeout!r}")
        tasks = self._resolve_tasks(venv, task, num_envs)
        self.camera = camera
        self.on_timeout = on_timeout
        self.frame_source = FrameSource(venv, camera)
        self.episodes = [
            EpisodeReward(
                tasks[i],
                max_frames=max_frames,
                sampling=sampling,
                every=every,
                shaping=shaping if shaping is not None else Shaping(),
                success=success,
                name=f"env{i}",
            )
            for i in range(num_envs)
        ]
        self.scorer, self._owns_scorer = open_scorer(source)

    @staticmethod
    def _resolve_tasks(venv: Any, task: Any, num_envs: int) -> list[str]:
        if isinstance(task, str):
            return [task] * num_envs
        if task is None:
            raise ValueError("task is required for vector envs: one instruction, or one per sub-env")
        tasks = list(task)
        if len(tasks) != num_envs:
            raise ValueError(f"task must be one instruction or {num_envs} (one per sub-env), got {len(tasks)}")
        return tasks

    def _score_due(self, due: list[int]) -> tuple[dict[int, Any], float | None, bool]:
        """One batched scorer call for the episodes in ``due``; returns per-env results, latency, stale."""
        if not due:
            return {}, None, False
        spans, batch = [], []
        for i in due:
            queries = self.episodes[i].queries()
            spans.append((i, len(batch), len(batch) + len(queries)))
            batch.extend(queries)
        results, latency_ms = score_timed(self.scorer, batch, self.on_timeout)
        if results is None:
            return {i: None for i in due}, latency_ms, True
        return {i: results[a:b] for i, a, b in spans}, latency_ms, False

    def _finish(self, frames_after: list[np.ndarray | None], env_rewards: np.ndarray, dones: np.ndarray,
                restarting: np.ndarray) -> tuple[np.ndarray, list[dict | None], np.ndarray]:
        """Add frames, score due episodes in one batch; returns shaped rewards, per-env info, newly detected."""
        n = len(self.episodes)
        due = []
        for i in range(n):
            if restarting[i]:
                continue
            self.episodes[i].add_frame(frames_after[i])
            if self.episodes[i].wants_query(bool(dones[i])):
                due.append(i)
        results, latency_ms, stale = self._score_due(due)
        rewards = np.zeros(n, dtype=np.float32)
        newly = np.zeros(n, dtype=bool)
        infos: list[dict | None] = [None] * n
        for i in range(n):
            if restarting[i]:
                continue
            queried = i in results
            rewards[i], infos[i], newly[i] = self.episodes[i].finish_step(
                float(env_rewards[i]), results.get(i), latency_ms if queried else None, stale and queried
            )
        return rewards, infos, newly

    def _close_scorer(self) -> None:
        if self._owns_scorer:
            self.scorer.close()


_ARRAY_KEYS = ("progress", "success_prob", "success", "env_reward", "latency_ms", "queried", "frames_sent",
               "reset_progress", "stale", "step")


def _stack_infos(per_env: list[dict | None]) -> tuple[dict[str, Any], np.ndarray]:
    """Per-env info dicts -> gymnasium's vector layout: a dict of arrays plus the mask of envs that stepped."""
    mask = np.array([d is not None for d in per_env])
    out: dict[str, Any] = {}
    for key in _ARRAY_KEYS:
        vals = [d[key] if d is not None and d[key] is not None else math.nan for d in per_env]
        out[key] = np.asarray(vals, dtype=bool if key in ("success", "queried", "stale") else None)
    term_names = next((list(d["reward_terms"]) for d in per_env if d is not None), [])
    out["reward_terms"] = {
        t: np.array([d["reward_terms"][t] if d is not None else 0.0 for d in per_env]) for t in term_names
    }
    out["votes"] = np.array([d["detector"]["votes"] if d is not None and d["detector"] else 0 for d in per_env])
    out["frame_index"] = [d["frame_index"] if d is not None else None for d in per_env]
    return out, mask


class GymVecReward(RobometerVecReward, gym.vector.VectorWrapper):
    """:class:`RobometerVecReward` for gymnasium ``VectorEnv`` in ``AutoresetMode.NEXT_STEP`` or ``DISABLED``.

    ``infos["rlrm"]`` is a dict of per-env arrays (``progress``, ``success_prob``, ``success``,
    ``reward_terms``, ``votes``, ...) and ``infos["_rlrm"]`` marks the sub-envs that took a real
    step (False on a sub-env's auto-reset step, whose reward is 0).

    >>> import gymnasium as gym
    >>> from rlrm.models import make_reward_model
    >>> venv = GymVecReward(gym.make_vec("CartPole-v1", num_envs=2, render_mode="rgb_array"),
    ...                     "balance the pole", make_reward_model("tiny"))
    >>> len(venv.reset(seed=0)[0])
    2
    >>> venv.close()
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        task: str | Sequence[str] | None,
        source: Any,
        camera: str | None = None,
        max_frames: int = 8,
        sampling: str = "prefix",
        every: int = 1,
        shaping: Shaping | None = None,
        success: SuccessDetector | None = SuccessDetector(),  # noqa: B008 - copied per sub-env
        on_timeout: str = "raise",
        terminate_on_success: bool = False,
    ) -> None:
        gym.vector.VectorWrapper.__init__(self, env)
        if terminate_on_success:
            raise ValueError(
                "terminate_on_success=True is not possible on a gymnasium VectorEnv: its sub-envs decide their own "
                "resets. Wrap each sub-env in RobometerReward (terminate_on_success=True) instead, or use an SB3 "
                "VecEnv, where RobometerVecReward can reset a succeeded sub-env itself"
            )
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        if mode not in (gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.DISABLED):
            raise ValueError(
                f"RobometerVecReward supports autoreset_mode NEXT_STEP (gymnasium's default) or DISABLED, got "
                f"{mode}; SAME_STEP replaces the last frame by the reset one before the wrapper sees it. Create "
                "the vector env with vector_kwargs={'autoreset_mode': gym.vector.AutoresetMode.NEXT_STEP}"
            )
        self._next_step_reset = mode == gym.vector.AutoresetMode.NEXT_STEP
        self._setup_rewards(env, env.num_envs, task, source, camera, max_frames, sampling, every, shaping,
                            success, on_timeout)
        self._restarting = np.zeros(env.num_envs, dtype=bool)

    def _frames(self, obs: Any) -> list[np.ndarray]:
        if self.camera is None:
            images = self.env.render()
            if images is None:
                images = [None] * self.num_envs
        else:
            images = frame_from_observation(obs, self.camera)
        return [self.frame_source.check(images[i]) for i in range(self.num_envs)]

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """Reset the sub-envs (all, or those in ``options["reset_mask"]``) and start their episodes."""
        mask = np.ones(self.num_envs, dtype=bool)
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)  # read first: the vector env pops it
        obs, infos = self.env.reset(seed=seed, options=options)
        for i, frame in enumerate(self._frames(obs)):
            if mask[i]:
                self.episodes[i].start(frame)
        self._restarting[mask] = False
        return obs, infos

    def step(self, actions):
        """Step all sub-envs, score all due episodes in one request, return shaped rewards."""
        obs, env_rewards, terminated, truncated, infos = self.env.step(actions)
        frames = self._frames(obs)
        restarting = self._restarting.copy()
        for i in np.flatnonzero(restarting):
            self.episodes[i].start(frames[i])
        dones = np.logical_or(terminated, truncated)
        rewards, per_env, _ = self._finish(frames, env_rewards, dones, restarting)
        # NEXT_STEP: finished sub-envs reset on the next step; DISABLED: the caller resets them with reset_mask
        self._restarting = dones & ~restarting if self._next_step_reset else np.zeros_like(dones)
        infos = dict(infos)
        infos["rlrm"], infos["_rlrm"] = _stack_infos(per_env)
        return obs, rewards.astype(np.float64), terminated, truncated, infos

    def close(self, **kwargs: Any) -> None:
        """Close the vector env, and the scorer if this wrapper created it."""
        try:
            self.env.close(**kwargs)
        finally:
            self._close_scorer()


class SB3VecReward(RobometerVecReward, VecEnvWrapper):
    """:class:`RobometerVecReward` for Stable-Baselines3 ``VecEnv`` (auto-reset inside ``step``).

    ``infos[i]["rlrm"]`` is the same dict :class:`RobometerReward` publishes. With ``camera=None``
    the sub-envs must be wrapped in :class:`FrameInInfo` (``make_vec_env(..., wrapper_class=FrameInInfo)``).

    >>> from stable_baselines3.common.env_util import make_vec_env
    >>> from rlrm.models import make_reward_model
    >>> venv = make_vec_env("CartPole-v1", n_envs=2, wrapper_class=FrameInInfo,
    ...                     env_kwargs={"render_mode": "rgb_array"})
    >>> venv = SB3VecReward(venv, "balance the pole", make_reward_model("tiny"))
    >>> venv.reset().shape
    (2, 4)
    >>> venv.close()
    """

    def __init__(
        self,
        venv: Any,
        task: str | Sequence[str] | None,
        source: Any,
        camera: str | None = None,
        max_frames: int = 8,
        sampling: str = "prefix",
        every: int = 1,
        shaping: Shaping | None = None,
        success: SuccessDetector | None = SuccessDetector(),  # noqa: B008 - copied per sub-env
        on_timeout: str = "raise",
        terminate_on_success: bool = False,
    ) -> None:
        VecEnvWrapper.__init__(self, venv)
        self.terminate_on_success = bool(terminate_on_success) and success is not None
        if camera is None and not all(venv.env_is_wrapped(FrameInInfo)):
            raise ValueError(
                "an SB3 VecEnv resets finished sub-envs before returning, so env.render() cannot show their "
                "last frame: wrap the sub-envs with make_vec_env(..., wrapper_class=rlrm.wrappers.FrameInInfo) "
                "or pass camera=<image key of the observation>"
            )
        self._setup_rewards(venv, venv.num_envs, task, source, camera, max_frames, sampling, every, shaping,
                            success, on_timeout)

    def _frame(self, obs_i: Any, info_i: dict) -> np.ndarray:
        if self.camera is None:
            frame = info_i.get(FRAME_KEY)
            if frame is None:
                raise KeyError(f"info has no {FRAME_KEY!r}: wrap the sub-envs in rlrm.wrappers.FrameInInfo")
            return self.frame_source.check(frame)
        return self.frame_source.check(frame_from_observation(obs_i, self.camera))

    def _obs_at(self, obs: Any, i: int) -> Any:
        if isinstance(obs, dict):
            return {k: self._obs_at(v, i) for k, v in obs.items()}
        return obs[i]

    def reset(self):
        """Reset all sub-envs and start every episode with its reset frame."""
        obs = self.venv.reset()
        for i, ep in enumerate(self.episodes):
            ep.start(self._frame(self._obs_at(obs, i), self.venv.reset_infos[i]))
        return obs

    def step_wait(self):
        """Collect the step, score all due episodes in one request, start new episodes where sub-envs reset."""
        obs, env_rewards, dones, infos = self.venv.step_wait()
        n = self.num_envs
        frames = []
        for i in range(n):
            if dones[i] and self.camera is not None:
                frames.append(self._frame(infos[i]["terminal_observation"], infos[i]))
            else:
                frames.append(self._frame(self._obs_at(obs, i), infos[i]))
        dones = np.array(dones, dtype=bool)
        rewards, per_env, newly = self._finish(frames, env_rewards, dones, np.zeros(n, dtype=bool))
        infos = [dict(info) for info in infos]
        reset_infos = list(self.venv.reset_infos)
        for i in range(n):
            infos[i]["rlrm"] = per_env[i]
            if newly[i] and self.terminate_on_success and not dones[i]:
                reset_infos[i] = self._end_on_success(obs, infos[i], i)
                dones[i] = True
            if dones[i]:
                self.episodes[i].start(self._frame(self._obs_at(obs, i), reset_infos[i]))
        return obs, rewards, dones, infos

    def _end_on_success(self, obs: Any, info: dict, i: int) -> dict:
        """End sub-env ``i``'s episode the way SB3 auto-reset does: terminal obs in info, reset obs in ``obs``."""
        info["terminal_observation"] = self._obs_at(obs, i)
        info["TimeLimit.truncated"] = False
        reset_obs, reset_info = self.venv.env_method("reset", indices=[i])[0]
        if isinstance(obs, dict):
            for key, value in obs.items():
                value[i] = reset_obs[key]
        else:
            obs[i] = reset_obs
        return reset_info

    def close(self) -> None:
        """Close the vector env, and the scorer if this wrapper created it."""
        try:
            self.venv.close()
        finally:
            self._close_scorer()
