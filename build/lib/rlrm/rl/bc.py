"""Behaviour cloning: a small MLP policy learned from demonstrations, used as a frozen residual base.

* :class:`BCPolicy` - a state -> action MLP with its observation normalisation; ``act(obs)`` for one
  observation (a :class:`~rlrm.rl.residual.BasePolicy`), ``save`` / ``load`` as a small ``.pt`` file.
* :func:`train_bc` - fit one by mean-squared error on ``(observation, action)`` pairs.
* :func:`rollout` - run a policy in an env and report success (``info["is_success"]``) per episode.

This is how many users get their first manipulation policy: imitation on a handful of demonstrations,
which works sometimes. ``run_rl.py algo=residual_sac`` then learns a correction on top of it with the
reward model's reward.

>>> import numpy as np
>>> obs = np.random.default_rng(0).normal(size=(256, 6)).astype(np.float32)
>>> policy = train_bc(obs, np.tanh(obs[:, :2]), epochs=5, seed=0)
>>> policy.act(obs[0]).shape
(2,)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

__all__ = ["BCPolicy", "train_bc", "rollout"]

log = logging.getLogger(__name__)

_FORMAT = "rlrm-bc/1"


def _mlp(obs_dim: int, act_dim: int, hidden: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = obs_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers += [nn.Linear(width, act_dim), nn.Tanh()]
    return nn.Sequential(*layers)


class BCPolicy:
    """A behaviour-cloned MLP policy: ``action = tanh(MLP((obs - mean) / std))``, actions in [-1, 1].

    Args:
        net: the MLP (``obs_dim -> act_dim`` with a final tanh).
        obs_mean, obs_std: (obs_dim,) normalisation of the observation.
        meta: anything JSON-like about how it was made (task, demos, epochs, measured success).
    """

    def __init__(self, net: nn.Sequential, obs_mean: np.ndarray, obs_std: np.ndarray, meta: dict | None = None) -> None:
        self.net = net.eval()
        self.obs_mean = np.asarray(obs_mean, np.float32)
        self.obs_std = np.asarray(obs_std, np.float32)
        self.meta = dict(meta or {})
        self.obs_dim = int(self.obs_mean.shape[0])

    def act(self, obs: Any) -> np.ndarray:
        """The action for one flat observation (obs_dim,)."""
        x = np.asarray(obs, np.float32).reshape(-1)
        if x.shape[0] != self.obs_dim:
            raise ValueError(f"BCPolicy expects a flat observation of {self.obs_dim} values, got shape {np.shape(obs)}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"BCPolicy got a non-finite observation: {x}")
        with torch.no_grad():
            out = self.net(torch.from_numpy((x - self.obs_mean) / self.obs_std)[None])
        return out[0].numpy().astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write weights, normalisation and meta to one ``.pt`` file (loadable with ``weights_only=True``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        hidden = [m.out_features for m in self.net if isinstance(m, nn.Linear)][:-1]
        torch.save({"format": _FORMAT, "state_dict": self.net.state_dict(), "hidden": hidden,
                    "obs_mean": torch.from_numpy(self.obs_mean), "obs_std": torch.from_numpy(self.obs_std),
                    "meta": self.meta}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> BCPolicy:
        """Read a policy written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no BC policy file at {path}; train one with experiments/metaworld_demo/base_policies.py")
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
            raise ValueError(f"{path} is not an rlrm BC policy (expected format {_FORMAT!r})")
        state = blob["state_dict"]
        weights = [k for k in state if k.endswith(".weight")]
        obs_dim = int(state[weights[0]].shape[1])
        act_dim = int(state[weights[-1]].shape[0])
        net = _mlp(obs_dim, act_dim, tuple(int(h) for h in blob["hidden"]))
        net.load_state_dict(state)
        return cls(net, blob["obs_mean"].numpy(), blob["obs_std"].numpy(), blob.get("meta"))


def train_bc(
    observations: np.ndarray,
    actions: np.ndarray,
    hidden: tuple[int, ...] = (256, 256),
    epochs: int = 50,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    meta: dict | None = None,
) -> BCPolicy:
    """Fit a :class:`BCPolicy` on (N, obs_dim) observations and (N, act_dim) actions in [-1, 1] by MSE."""
    obs = np.asarray(observations, np.float32)
    act = np.asarray(actions, np.float32)
    if obs.ndim != 2 or act.ndim != 2 or len(obs) != len(act) or len(obs) == 0:
        raise ValueError(f"train_bc needs (N, obs_dim) observations and (N, act_dim) actions with N > 0, "
                         f"got {obs.shape} and {act.shape}")
    if not (np.all(np.isfinite(obs)) and np.all(np.isfinite(act))):
        raise ValueError("train_bc got non-finite observations or actions")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean, std = obs.mean(0), obs.std(0) + 1e-3
    net = _mlp(obs.shape[1], act.shape[1], tuple(hidden))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x_all = torch.from_numpy((obs - mean) / std)
    y_all = torch.from_numpy(np.clip(act, -1.0, 1.0))
    net.train()
    for epoch in range(int(epochs)):
        order = rng.permutation(len(obs))
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = torch.from_numpy(order[start:start + batch_size])
            loss = ((net(x_all[idx]) - y_all[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if epoch == epochs - 1:
            log.info("BC epoch %d: mse %.4f", epoch + 1, total / len(order))
    return BCPolicy(net, mean, std, meta)


def rollout(env: gym.Env, act: Callable[[Any], np.ndarray], episodes: int, seed: int = 0,
            stop_on_success: bool = False) -> list[dict[str, Any]]:
    """Run ``act`` for ``episodes`` episodes (seeds ``seed``, ``seed+1``, ...); per episode: observations,
    actions, final ``success`` (``info["is_success"]`` at the last step, or ever if ``stop_on_success``)."""
    results = []
    for i in range(int(episodes)):
        obs, info = env.reset(seed=seed + i)
        observations, actions, success = [], [], False
        while True:
            action = np.asarray(act(obs), np.float32)
            observations.append(np.asarray(obs, np.float32))
            actions.append(action)
            obs, _, terminated, truncated, info = env.step(action)
            success = bool(info.get("is_success", False))
            if (stop_on_success and success) or terminated or truncated:
                break
        results.append({"observations": np.stack(observations), "actions": np.stack(actions), "success": success})
    return results
