"""Real robots as safe gymnasium envs: Franka (franky), UFACTORY xArm, SO-101 (Feetech).

* :func:`make_robot_env` - build ``franka`` / ``xarm`` / ``so101`` from ``configs/robot/<name>.yaml``;
  ``sim=True`` builds the same env against the simulated backend used in the tests.
* :func:`load_robot_config` - the merged config dict (yaml + sim section + overrides).
* Re-exported: :class:`RobotEnv`, :class:`RobotEnvConfig`, :class:`SafetyConfig`, :class:`EEPose`.

Every env: ``env.unwrapped.task``, ``info["task"]``, dict observations (proprioception; uint8 camera
images too with ``policy_obs="images"``), camera frames from ``env.unwrapped.render_camera(name)``,
``info["intervention"]``, ``env.stop()`` from any thread.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import fields
from typing import Any

import yaml

from rlrm.config import CONFIG_DIR as RLRM_CONFIG_DIR
from robots.base import RobotEnv, RobotEnvConfig
from robots.geometry import EEPose
from robots.safety import SafetyConfig

__all__ = ["make_robot_env", "load_robot_config", "ROBOTS", "RobotEnv", "RobotEnvConfig", "SafetyConfig", "EEPose"]

logger = logging.getLogger(__name__)

ROBOTS = ("franka", "xarm", "so101")
CONFIG_DIR = RLRM_CONFIG_DIR / "robot"  # shipped inside the rlrm package: found from a wheel install too
_ENV_FIELDS = {f.name for f in fields(RobotEnvConfig)}
_PASSTHROUGH = {"clock", "sleep", "reset_callback", "teleop_device"}


def _merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_robot_config(name: str, sim: bool = False, config: dict | None = None, **overrides) -> dict:
    """Config dict ``{name, env, backend, cameras, teleop}`` for robot ``name``.

    ``config`` replaces the yaml (e.g. Hydra's ``cfg.robot``); ``overrides`` are RobotEnvConfig fields
    (``task=``, ``fps=``), or ``env=``/``backend=``/``cameras=``/``safety=`` dicts merged in.
    """
    if name not in ROBOTS:
        raise ValueError(f"robot must be one of {list(ROBOTS)}, got {name!r}")
    if config is None:
        path = CONFIG_DIR / f"{name}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"robot config {path} not found (run from a source checkout of rlrm)")
        config = yaml.safe_load(path.read_text())
    cfg = _merge({"env": {}, "backend": {}, "cameras": {}, "teleop": None}, dict(config))
    if sim:
        cfg = _merge(cfg, cfg.get("sim") or {})
        if "cameras" in (cfg.get("sim") or {}):
            cfg["cameras"] = copy.deepcopy(cfg["sim"]["cameras"])
    cfg.pop("sim", None)
    for key, value in overrides.items():
        if key in _ENV_FIELDS and key != "safety":
            cfg["env"][key] = value
        elif key == "safety":
            cfg["env"]["safety"] = _merge(cfg["env"].get("safety", {}), value)
        elif key in ("env", "backend"):
            cfg[key] = _merge(cfg[key], value)
        elif key in ("cameras", "teleop"):
            cfg[key] = value
        else:
            raise TypeError(
                f"unknown override {key!r} for make_robot_env; use a RobotEnvConfig field "
                f"({sorted(_ENV_FIELDS)}) or env=/backend=/cameras=/teleop=/safety= dicts"
            )
    return cfg


def _make_backend(name: str, sim: bool, backend_cfg: dict, env_cfg: RobotEnvConfig):
    """The robot backend (real SDK, or its simulator / emulated controller)."""
    if name == "franka":
        from robots.franka import FrankaConfig

        config = FrankaConfig(**backend_cfg)
        limits = {"safety": env_cfg.safety, "period_s": 1.0 / env_cfg.fps}  # what motion=velocity caps against
        if sim:
            from robots.sim.franky_sim import SimFrankaBackend

            return SimFrankaBackend(config, **limits)
        from robots.franka import FrankaBackend

        return FrankaBackend(config, **limits)
    if name == "xarm":
        from robots.xarm import XArmBackend, XArmConfig

        config = XArmConfig(
            **{**backend_cfg, "workspace_low": env_cfg.safety.workspace_low, "workspace_high": env_cfg.safety.workspace_high}
        )
        if sim:
            from robots.sim.fake_xarm import FakeXArmAPI

            return XArmBackend(config, api_factory=lambda ip: FakeXArmAPI(ip, servo_dt=1.0 / env_cfg.fps))
        return XArmBackend(config)
    from robots.so101 import SO101Backend, SO101Config

    config = SO101Config(**backend_cfg)
    _check_so101_reach(config, env_cfg)
    if sim:
        from robots.sim.so101_sim import sim_calibration, sim_port_at

        port = sim_port_at(config, env_cfg.home_pose[:3])  # resting where a person would leave it
        return SO101Backend(config, port=port, calibration=sim_calibration(), sleep=lambda s: None)
    return SO101Backend(config)


def _check_so101_reach(config, env_cfg: RobotEnvConfig) -> None:
    """Every corner of the workspace box must be reachable, or IK would fail mid-episode."""
    import itertools

    lo, hi = env_cfg.safety.workspace_low, env_cfg.safety.workspace_high
    for corner in itertools.product(*zip(lo, hi, strict=True)):
        try:
            config.kinematics.inverse(corner, 0.0)
        except ValueError as exc:
            raise ValueError(f"so101 workspace corner {list(corner)} is out of reach; shrink the box: {exc}") from exc


def make_robot_env(name: str, sim: bool = False, **overrides: Any) -> RobotEnv:
    """Build the gymnasium env of robot ``name`` (``franka``, ``xarm``, ``so101``).

    >>> env = make_robot_env("so101", sim=True, task="put the cube in the bowl")
    >>> obs, info = env.reset(seed=0)
    >>> sorted(obs), info["task"], env.unwrapped.render_camera("front").shape
    (['ee_pose', 'gripper', 'joints'], 'put the cube in the bowl', (128, 128, 3))
    >>> env.close()
    >>> env = make_robot_env("so101", sim=True, policy_obs="images")  # camera images for the policy as well
    >>> sorted(env.reset(seed=0)[0])
    ['ee_pose', 'front', 'gripper', 'joints']
    >>> env.close()

    Args:
        name: robot name.
        sim: use the simulated backend (franky-sim / fake xArm controller / emulated servo bus) and
            synthetic camera frames.
        overrides: RobotEnvConfig fields (``task``, ``fps``, ``action_mode``, ``policy_obs``...), ``env=``, ``backend=``,
            ``cameras=``, ``safety=``, ``teleop=`` dicts, ``config=`` a whole robot config (Hydra), or
            ``clock``/``sleep``/``reset_callback``/``teleop_device`` passed to :class:`RobotEnv`.
    """
    passthrough = {k: overrides.pop(k) for k in list(overrides) if k in _PASSTHROUGH}
    cfg = load_robot_config(name, sim=sim, config=overrides.pop("config", None), **overrides)
    env_cfg = RobotEnvConfig(**cfg["env"])
    backend = _make_backend(name, sim, cfg["backend"], env_cfg)
    from robots.cameras import make_camera
    from robots.sim.render import draw_tabletop

    def render_fn():
        state = backend.read_state()
        return draw_tabletop(state.pose.position, state.gripper, env_cfg.safety.low, env_cfg.safety.high)

    cameras = {cam_name: make_camera(c, render_fn if sim else None) for cam_name, c in (cfg["cameras"] or {}).items()}
    teleop = None
    device = passthrough.pop("teleop_device", None)
    if cfg.get("teleop"):
        from robots.teleop import make_teleop

        if env_cfg.action_mode == "joints":
            raise ValueError(
                f"teleop {cfg['teleop']} drives the end effector and cannot replace joint actions; with "
                "action_mode='joints' pass teleop=None (or use an end-effector action_mode)"
            )

        teleop = make_teleop(cfg["teleop"], action_mode=env_cfg.action_mode, device=device)
    return RobotEnv(backend, env_cfg, cameras=cameras, teleop=teleop, **passthrough)
