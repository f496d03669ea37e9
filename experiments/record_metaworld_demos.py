"""Record MetaWorld's scripted expert as a LeRobot v3 dataset, with rlrm's writer: demonstrations for ``demos=``.

The env is built exactly as ``run_rl.py env=metaworld_<task> reward=<reward>`` builds it
(:func:`rlrm.rl.environment.make_env`), so the state observation, the action units and ``next.reward``
(the run's reward: ``reward=env_dense`` records MetaWorld's dense reward, stored per episode as
``rlrm/reward = env:dense``) are what a run with ``demos=DIR`` expects. Each frame also carries the env
config's reward cameras (``observation.images.front`` / ``.side``), so a ``reward=robometer`` run can
score the demonstrations with its reward model, and ``rlrm train`` can train on them.

    python experiments/record_metaworld_demos.py --out outputs/demos/drawer_open --episodes 10
    python run_rl.py env=metaworld_drawer_open reward=env_dense demos=outputs/demos/drawer_open

:func:`record_demos` is the same as a function (the tests call it with a few episodes).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's rlrm and envs, also when run as a script
log = logging.getLogger("record_metaworld_demos")


def run_config(*overrides: str) -> dict[str, Any]:
    """The resolved ``run_rl.py`` config for ``overrides`` (what the runs that use the demonstrations compose)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from rlrm.config import CONFIG_DIR, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


def record_demos(out: str | Path, episodes: int = 10, env: str = "metaworld_drawer_open", reward: str = "env_dense",
                 seed: int = 1000, max_episode_steps: int | None = None, cameras: Any = "reward") -> dict[str, Any]:
    """Record ``episodes`` episodes of the task's scripted expert into the LeRobot dataset ``out``.

    Args:
        out: dataset folder (new, or one this function wrote: episodes are appended).
        episodes: episodes to record; each runs the env config's full length (MetaWorld never terminates).
        env / reward: the ``run_rl.py`` groups (``env=metaworld_<task>``, ``reward=env_dense``).
        seed: episode ``i`` resets with ``seed + i`` (a random one of MetaWorld's 50 layouts of the task);
            the runs evaluate on seeds from 10_000, so these layouts are drawn independently.
        max_episode_steps: shorter episodes (tests); None: the env config's.
        cameras: ``"reward"`` (the env config's reward cameras), None (``env.render()``) or camera names.

    Returns ``{dataset, episodes, frames, success_rate, reward}``; the expert's success per episode is
    MetaWorld's ``is_success`` at the last step.
    """
    import numpy as np

    from envs.metaworld_experts import expert_policy
    from rlrm.bridges.lerobot_dataset import LeRobotDatasetWriter, RecordEpisodes
    from rlrm.rl.demos import reward_name
    from rlrm.rl.environment import make_env, reward_camera

    overrides = [f"env={env}", f"reward={reward}"]
    if max_episode_steps is not None:
        overrides.append(f"env.max_episode_steps={int(max_episode_steps)}")
    cfg = run_config(*overrides)
    base = make_env(cfg)
    expert = expert_policy(base.unwrapped.task_name)
    writer = LeRobotDatasetWriter(out, fps=int(base.metadata.get("render_fps", 10)), robot_type="sawyer")
    recorder = RecordEpisodes(base, writer, cameras=reward_camera(cfg) if cameras == "reward" else cameras,
                              episode_meta={"reward": reward_name(cfg["reward"]), "source": "scripted expert"})
    successes = []
    try:
        for i in range(int(episodes)):
            obs, _ = recorder.reset(seed=int(seed) + i)
            done, info = False, {}
            while not done:
                obs, _, terminated, truncated, info = recorder.step(expert(obs))
                done = terminated or truncated
            successes.append(bool(info.get("is_success", False)))
    finally:
        recorder.close()
        writer.close()
    result = {"dataset": str(out), "episodes": len(successes), "frames": writer.total_frames,
              "success_rate": float(np.mean(successes)) if successes else None, "reward": reward_name(cfg["reward"])}
    log.info("recorded %s", result)
    return result


def main() -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="LeRobot dataset folder to write")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--env", default="metaworld_drawer_open", help="run_rl.py env group")
    parser.add_argument("--reward", default="env_dense", help="run_rl.py reward group (what next.reward holds)")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--max-episode-steps", type=int, default=None, help="shorter episodes (default: the env's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(record_demos(args.out, args.episodes, args.env, args.reward, args.seed, args.max_episode_steps),
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
