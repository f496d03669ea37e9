"""Typed configs: the one source of every default of a run, the reward wrappers and the worker.

* :class:`ShapingConfig`, :class:`SuccessConfig` - defaults of :class:`rlrm.shaping.Shaping` and
  :class:`rlrm.shaping.SuccessDetector` (those classes read theirs from here).
* :class:`RewardTrainerConfig` - ``reward.trainer``: how the reward model learns from labels during RL
  (``reward.adapt=true``; :mod:`rlrm.train.online`).
* :class:`LabelsConfig` - the ``labels`` group: who labels finished episodes (``none | human | oracle``).
* :class:`RewardConfig` - the ``reward`` group: the model, where it runs, which frames a query sends,
  shaping and success detection. The wrappers (:class:`~rlrm.wrappers.RobometerReward`,
  :class:`~rlrm.wrappers.AsyncRobometerReward`, both vector wrappers) take their defaults from it.
* :class:`WorkerConfig` - ``rlrm worker``'s settings; :data:`CLIENT_TIMEOUT_MS` - a client's wait per attempt.
* :class:`TransportConfig` and its options :class:`WorkerTransportConfig`, :class:`LocalTransportConfig`,
  :class:`RayTransportConfig` - the ``transport`` group (:data:`TRANSPORTS` maps ``name`` to the class).
* :class:`EnvConfig` - the ``env`` group (a registered sim env).
* :class:`DistributedConfig` - the ``distributed`` block (Ray env runners and learner).
* :class:`RecordConfig` - the ``record`` block (episodes written as a LeRobot dataset).
* :class:`RunConfig` - a whole ``run_rl.py`` / ``rlrm run`` config. ``algo`` and ``robot`` stay open
  mappings: their keys are the SB3 class's and the robot config's own, checked by
  :func:`rlrm.rl.run_config.validate_run_config` and :func:`robots.make_robot_env`.
* :func:`register_configs` - register all of them with Hydra's ``ConfigStore``: the root as
  ``rlrm_run``, group schemas as ``reward/base_reward``, ``env/base_env``, ``labels/base_labels``,
  ``transport/base_<name>``.
  The YAML files in :data:`CONFIG_DIR` list those in their ``defaults`` and only override values.
* :data:`CONFIG_DIR` - the config folder shipped inside the package (``rlrm/configs``).

Unknown keys and wrong types are refused when Hydra composes a config (``+total_stpes=100`` names the
key that nothing reads); plain dicts get the same check through :func:`typed_run_config`.

>>> RewardConfig().shaping.progress, RewardConfig().terminate_on_success
('absolute', False)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional  # noqa: UP035 - OmegaConf reads these annotations at run time

__all__ = ["ShapingConfig", "SuccessConfig", "RewardTrainerConfig", "LabelsConfig", "RewardConfig", "WorkerConfig", "CLIENT_TIMEOUT_MS", "TransportConfig",
           "WorkerTransportConfig", "LocalTransportConfig", "RayTransportConfig", "TRANSPORTS", "EnvConfig",
           "DistributedConfig", "RecordConfig", "RunConfig", "register_configs", "typed_run_config", "CONFIG_DIR"]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""The Hydra config folder: ``config.yaml`` and the groups ``env/ algo/ reward/ transport/ robot/ train/``."""

CLIENT_TIMEOUT_MS = 30000.0
"""How long a reward client waits for each attempt's reply (ms), everywhere a client is made."""


@dataclass
class ShapingConfig:
    """How progress, detected success and the env's reward combine (:class:`rlrm.shaping.Shaping`).

    The default is the measured best on FetchReach (README, "Evidence on FetchReach"): absolute
    progress p_t every step, no success bonus; delta + bonus + termination reached 0.00 there.
    """

    progress: str = "absolute"
    """``absolute`` (p_t) | ``delta`` (p_t - p_{t-1}) | ``potential`` (gamma * p_t - p_{t-1})."""
    w_progress: float = 1.0
    """Weight of the progress term."""
    gamma: float = 0.99
    """Discount of the potential term and of the success-termination payment; set it to the RL algorithm's
    (run configs do: ``${algo.gamma}``)."""
    success_bonus: float = 0.0
    """Paid once, on the step success is first detected."""
    w_env: float = 0.0
    """Weight of the wrapped env's own reward."""
    step_cost: float = 0.0
    """Subtracted every step (>= 0)."""


@dataclass
class SuccessConfig:
    """Success detection (:class:`rlrm.shaping.SuccessDetector`): ``min_votes`` of the last ``window``
    success probabilities above ``threshold``."""

    threshold: float = 0.65
    window: int = 2
    min_votes: int = 2


@dataclass
class RewardTrainerConfig:
    """``reward.trainer``: the reward trainer that fine-tunes the reward model on labelled episodes during RL
    (``reward.adapt=true``), in its own process, publishing numbered versions the reward source swaps in."""

    mode: str = "auto"
    """``auto`` (``full`` below 50 M parameters, else ``lora``) | ``full`` | ``heads`` (progress/success/preference
    heads only) | ``lora`` (adapters on the language model + heads; needs peft: ``pip install 'rlrm[train]'``)."""
    steps: int = 100
    """Optimizer steps per published version."""
    min_labels: int = 3
    """New labelled episodes that start the next round of training."""
    lr: float = 3e-4
    """AdamW learning rate (constant)."""
    batch_size: int = 8
    """Single views per step (progress + success heads)."""
    pair_batch_size: int = 2
    """Preference pairs per step (a success against a failure of the same task, or a rewound copy)."""
    replay: Optional[str] = None
    """A trajectory folder (or LeRobot dataset) of the model's original training data, mixed in so old
    scenes are not forgotten; None: labelled episodes only."""
    replay_fraction: float = 0.5
    """Share of the trajectories of each round drawn from ``replay`` (with ``replay`` set), in [0, 1)."""
    folder: Optional[str] = None
    """Where labelled episodes (``inbox/``) and versions (``versions/``) go; None: ``<run folder>/reward_adapt``.
    With ``reward.source`` the worker must watch ``<folder>/versions`` (``rlrm worker --watch``)."""
    rescore: bool = True
    """Re-score stored transitions with each new version (in the background)."""
    rescore_episodes: int = 200
    """Newest finished episodes kept for re-scoring (their frames stay in RAM)."""
    threads: int = 1
    """Torch threads of the trainer process."""
    nice: int = 5
    """The trainer process's CPU priority is lowered by this much (the control loop goes first)."""
    seed: int = 0


@dataclass
class LabelsConfig:
    """The ``labels`` group: who labels finished episodes for the reward trainer (``reward.adapt=true``)."""

    source: str = "none"
    """``none`` | ``human`` (the ``y``/``n`` keys and takeovers) | ``oracle`` (simulation: the env's own success)."""
    budget: int = 30
    """Most episodes labelled (oracle; for a person 0 means no limit)."""
    select: str = "every_k"
    """Oracle: which episode of each block of ``every`` gets the label: ``every_k`` (the last) | ``uncertain``
    (the one whose success probability was nearest the threshold, or whose progress and success disagreed most)."""
    every: int = 5
    """Oracle: one label per this many episodes."""
    noise: float = 0.0
    """Oracle: probability a label is flipped (a person's mistakes)."""
    takeovers: bool = True
    """Human: an episode with a takeover teaches that its frames before the takeover were not yet a success."""
    seed: int = 0
    """Seeds the label noise."""


@dataclass
class RewardConfig:
    """The ``reward`` group: where rewards come from and how they are shaped.

    ``kind=env`` keeps the env's own reward (baselines); then only ``env_kwargs`` is read.
    """

    kind: str = "robometer"
    """``robometer`` (the reward model) | ``env`` (the env's own reward)."""
    model: Optional[str] = "auto"
    """``auto`` (the env config's ``reward_model``, else ``demo``) | ``demo`` (trained tiny model, FetchReach) |
    ``demo_mw`` (MetaWorld) | ``tiny`` | a checkpoint dir | a hub id (``robometer/Robometer-4B``)."""
    source: Optional[str] = None
    """``tcp://host:5555``: a running worker instead of starting one."""
    curve_server_key: Optional[str] = None
    """With ``source``: the worker's public key file (``rlrm keys DIR`` -> ``DIR/server.key``)."""
    enc: str = "raw"
    """With ``source``: frame encoding on the wire, ``raw`` | ``jpeg`` (smaller requests on slow links)."""
    mode: str = "auto"
    """``sync``: wait for each reward | ``async``: placeholder reward, relabelled in the replay buffer |
    ``auto``: ``async`` when rewards come at episode end (``when``) and the algorithm is off-policy, else ``sync``."""
    when: str = "auto"
    """When to score: ``prefix`` (a query every ``every`` steps: dense progress) | ``episode_end`` (one query on
    each episode's last step, paid as its final reward) | ``auto``: the model's own (``episode_end`` for
    RoboReward, which judges whole episodes; ``prefix`` for Robometer)."""
    max_frames: int = 8
    """Frames per query (Robometer's training length)."""
    sampling: str = "prefix"
    """``prefix`` (first + current + linspace) | ``window`` (the last ``max_frames``)."""
    views: str = "tile"
    """Several cameras: ``tile`` (side by side, one query) | ``mean`` (a query per view, averaged)."""
    every: int = 1
    """Query every k steps and hold progress in between."""
    on_timeout: str = "raise"
    """``raise`` | ``hold`` (keep the last progress, flag ``info["rlrm"]["stale"]``)."""
    terminate_on_success: bool = False
    """End the episode when the detector fires, paying the value of staying in success
    (:meth:`rlrm.shaping.Shaping.stay_value`); false positives then end episodes early."""
    shaping: ShapingConfig = field(default_factory=ShapingConfig)
    success: SuccessConfig = field(default_factory=SuccessConfig)
    env_kwargs: Dict[str, Any] = field(default_factory=dict)
    """Extra env kwargs this reward needs (``reward=env_dense``: ``{reward_type: dense}``)."""
    adapt: bool = False
    """Fine-tune the reward model on labelled episodes during RL and hot-swap each new version into the reward
    source (needs ``labels=human|oracle``; settings in ``trainer``)."""
    trainer: RewardTrainerConfig = field(default_factory=RewardTrainerConfig)


@dataclass
class WorkerConfig:
    """Settings of ``rlrm worker`` (its command-line defaults)."""

    bind: str = "tcp://127.0.0.1:5555"
    """ZeroMQ endpoint; port 0 = any free port; non-loopback addresses need CurveZMQ keys."""
    max_batch: int = 16
    """Queries per model call (1 = no batching)."""
    max_wait_ms: float = 0.0
    """Extra wait for a batch to fill; 0: an idle model runs a request at once, requests arriving while it is
    busy form the next batch."""
    max_queue: int = 256
    """Queries allowed to wait before the worker answers ``busy``."""


@dataclass
class TransportConfig:
    """The ``transport`` group: where the reward model runs. ``name`` picks the option."""

    name: str = "local"
    """``worker`` (spawn ``rlrm worker`` on loopback) | ``local`` (in this process) | ``ray`` (an actor pool)."""
    timeout_ms: float = CLIENT_TIMEOUT_MS
    """A client's wait for each attempt's reply (with ``reward.source`` or ``transport=worker``)."""


@dataclass
class LocalTransportConfig(TransportConfig):
    """``transport=local``: the model is loaded in the training process (no sockets)."""

    name: str = "local"


@dataclass
class WorkerTransportConfig(TransportConfig):
    """``transport=worker``: ``rlrm worker`` as a subprocess on loopback, stopped at the end of the run."""

    name: str = "worker"
    bind: str = "tcp://127.0.0.1:0"
    """Port 0: the OS picks a free port (a standalone ``rlrm worker`` defaults to 5555)."""
    max_batch: int = WorkerConfig.max_batch
    max_wait_ms: float = WorkerConfig.max_wait_ms
    threads: Optional[int] = 1
    """Torch threads of the worker (``OMP_NUM_THREADS``); more oversubscribes a small CPU box."""


@dataclass
class RayTransportConfig(TransportConfig):
    """``transport=ray``: replicas of ``reward.model`` on Ray actors (:class:`rlrm.transport.RayRewardPool`)."""

    name: str = "ray"
    num_actors: int = 2
    num_cpus: float = 1.0
    """Ray CPUs reserved per actor."""
    num_gpus: float = 0.0
    """1 puts each replica on its own GPU."""
    address: Optional[str] = None
    """None: start (or reuse) a local Ray runtime; ``auto`` / ``ray://head:10001`` joins a cluster."""
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    """Passed to ``make_reward_model`` in each actor (``device``, ``dtype``, ``seed``, ...)."""


TRANSPORTS: dict[str, type[TransportConfig]] = {
    "worker": WorkerTransportConfig, "local": LocalTransportConfig, "ray": RayTransportConfig}
"""Transport name -> its config class."""


@dataclass
class EnvConfig:
    """The ``env`` group: a registered gymnasium env (``envs`` registers the ``rlrm/*`` ids)."""

    id: str = "rlrm/FetchReach-v0"
    kwargs: Dict[str, Any] = field(default_factory=dict)
    """Passed to ``gym.make``."""
    reward_camera: Any = None
    """What the reward model sees: None = ``env.render()``; render cameras / observation keys (a list is tiled)."""
    max_episode_steps: int = 50
    reward_model: Optional[str] = None
    """The reward model made for what this env renders; ``reward.model=auto`` uses it (None: ``demo``)."""
    base_policy: Any = None
    """The base policy made for this task; ``algo=residual_sac`` with ``algo.base_policy.kind=env`` uses it."""


@dataclass
class DistributedConfig:
    """Actor/learner settings (``distributed:``; docs/distributed.md).

    Args:
        runners: env-runner actors; 0 runs everything in one process, >= 1 runs on Ray.
        address: Ray cluster: None starts a local one on this machine, ``"auto"`` joins the one
            ``ray start`` runs here, ``"ray://host:10001"`` (Ray client) or ``"host:6379"`` joins a remote one.
        sync_every: gradient steps between weight publications to the runners.
        rollout_steps: env steps a runner collects per batch it sends to the learner.
        max_pending_batches: batches of one runner the learner may hold untrained before that runner
            waits (keeps the update-to-data ratio of single-process SAC and bounds policy lag).
        max_restarts: how often Ray restarts a runner that died (SIGKILL, env exception).
        runner_resources / learner_resources: Ray resources per actor, e.g. ``{robot_franka: 1}`` or
            ``{GPU: 1}``; ``CPU``/``GPU`` become ``num_cpus``/``num_gpus``; empty reserves nothing.
    """

    runners: int = 0
    address: Optional[str] = None
    sync_every: int = 50
    rollout_steps: int = 50
    max_pending_batches: int = 2
    max_restarts: int = 3
    runner_resources: Any = None
    learner_resources: Any = None


@dataclass
class RecordConfig:
    """``record``: every training and evaluation episode as a LeRobot v3 dataset (needs pyarrow;
    :func:`rlrm.bridges.lerobot_dataset.open_recording`)."""

    dataset: Optional[str] = None
    """The dataset folder (appended to if it holds one); None: no recording."""
    fps: Optional[int] = None
    """The dataset's fps; None: the robot's control rate (``robot.env.fps``), else 10."""
    robot_type: Optional[str] = None
    """The dataset's ``robot_type``; None: the robot config's name."""


@dataclass
class RunConfig:
    """A whole run (``python run_rl.py`` / ``rlrm run``); ``config.yaml`` picks the groups."""

    env: EnvConfig = field(default_factory=EnvConfig)
    algo: Dict[str, Any] = field(default_factory=dict)
    """``name`` (sac | ppo | residual_sac), ``policy``, ``net_arch``, ``normalize_obs``, the residual's
    ``residual_scale`` / ``base_policy``; every other key is an argument of the SB3 class."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    transport: Any = None
    """The transport option (:data:`TRANSPORTS`), picked by the ``transport`` group."""
    robot: Any = None
    """A robot config (``robot=franka|xarm|so101``): the env is then ``robots.make_robot_env``."""
    task: Optional[str] = None
    """Instruction text; None = the env's (or robot's) own task."""
    robot_sim: bool = False
    """With ``robot``: the robot's simulated backend instead of the real one."""
    reward_camera: Any = None
    """Camera(s) the reward model sees; None = the env config's / the first robot camera."""
    seed: int = 0
    total_steps: int = 5000
    """Env steps of training."""
    eval_episodes: int = 20
    """Evaluation episodes after training (the env's own success signal)."""
    eval_video_episodes: int = 2
    """Of those, how many get a reward video."""
    eval_every: int = 1000
    """Env steps between learning-curve points (bare sim env; 0: off; never on a real robot)."""
    curve_episodes: int = 10
    checkpoint_every: int = 1000
    """Env steps between checkpoints of policy + replay buffer (0: only at the end)."""
    checkpoint_keep: int = 2
    heartbeat_every: int = 10
    """Env steps between heartbeats (how much a SIGKILL can cost is reported at resume)."""
    torch_threads: int = 1
    """Intra-op threads for the policy (more oversubscribes a small CPU box)."""
    device: str = "cpu"
    progress_bar: bool = True
    resume: Optional[str] = None
    """An earlier run folder: continue from its last checkpoint."""
    demos: Optional[str] = None
    """Demonstrations for SAC / residual SAC: a LeRobot v3 dataset folder, or a hub repo id already in the local
    Hugging Face cache; half of each training batch comes from them (RLPD, :mod:`rlrm.rl.demos`)."""
    record: RecordConfig = field(default_factory=RecordConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    """Who labels finished episodes for ``reward.adapt`` (the ``labels`` group: none | human | oracle)."""


_registered = False


def register_configs() -> None:
    """Register the schemas with Hydra's ``ConfigStore`` (idempotent); the YAML files' defaults name them."""
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="rlrm_run", node=RunConfig)
    cs.store(group="env", name="base_env", node=EnvConfig)
    cs.store(group="reward", name="base_reward", node=RewardConfig)
    cs.store(group="labels", name="base_labels", node=LabelsConfig)
    for name, cls in TRANSPORTS.items():
        cs.store(group="transport", name=f"base_{name}", node=cls)
    _registered = True


def _schema_for(cfg: Any) -> Any:
    """The structured schema of a plain run config: :class:`RunConfig` with the transport its ``name`` picks."""
    from omegaconf import OmegaConf

    from rlrm.rl.run_config import RunConfigError

    schema = OmegaConf.structured(RunConfig)
    transport = cfg.get("transport") if hasattr(cfg, "get") else None
    name = transport.get("name", "worker") if hasattr(transport, "get") else "worker"
    if name not in TRANSPORTS:
        raise RunConfigError(f"unknown transport {name!r}; expected one of {list(TRANSPORTS)} (transport=<name>)")
    schema.transport = OmegaConf.structured(TRANSPORTS[name])
    return schema


def typed_run_config(cfg: Any) -> dict[str, Any]:
    """``cfg`` (a plain mapping) merged onto :class:`RunConfig`: every default filled in, types converted.

    Raises ``rlrm.rl.run_config.RunConfigError`` naming an unknown key (with the keys that exist there) or
    a value of the wrong type (with the expected type).

    >>> typed_run_config({"total_steps": "300"})["total_steps"]
    300
    >>> typed_run_config({"total_stpes": 300})
    Traceback (most recent call last):
    ...
    rlrm.rl.run_config.RunConfigError: unknown config key 'total_stpes': nothing reads it; ...
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    from rlrm.rl.run_config import RunConfigError

    schema = _schema_for(cfg)
    try:
        merged = OmegaConf.merge(schema, cfg)
    except ConfigKeyError as e:
        raise RunConfigError(unknown_key_message(schema, str(e.full_key or e.key))) from None
    except OmegaConfBaseException as e:
        raise RunConfigError(f"invalid config value at {e.full_key}: {str(e).splitlines()[0]}") from None
    return OmegaConf.to_container(merged, resolve=True)


def unknown_key_message(schema: Any, full_key: str) -> str:
    """``unknown config key 'a.b': nothing reads it; keys at 'a': [...]`` for a key missing from ``schema``."""
    from omegaconf import OmegaConf

    parent, _, _ = full_key.rpartition(".")
    node = OmegaConf.select(schema, parent) if parent else schema
    known = sorted(node.keys()) if hasattr(node, "keys") else []
    where = f"'{parent}'" if parent else "the top level"
    return f"unknown config key {full_key!r}: nothing reads it; keys at {where}: {known}"
