"""``rlrm train [--config NAME|PATH] [key=value ...]``: train or LoRA fine-tune a Robometer reward model.

The config is a Hydra config from ``configs/train/`` (``default``, ``demo``, ``lora``) or a YAML
path, composed with Hydra's override grammar, then checked against
:class:`~rlrm.train.trainer.TrainConfig`::

    rlrm train --config demo data=outputs/demo_model/data/train output_dir=outputs/demo_model/run
    rlrm train --config lora model=robometer/Robometer-4B data=my_trajectories steps=2000
    rlrm train --config demo steps=20 max_minutes=5           # quick smoke run
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from rlrm.config import CONFIG_DIR as RLRM_CONFIG_DIR

__all__ = ["add_arguments", "run", "load_train_config", "CONFIG_DIR"]

log = logging.getLogger(__name__)

#: ``rlrm/configs/train``, shipped inside the package (a wheel install finds it too).
CONFIG_DIR = RLRM_CONFIG_DIR / "train"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rlrm train``."""
    parser.add_argument("--config", default="default",
                        help=f"config name in {CONFIG_DIR} (default, demo, lora) or a YAML file path")
    parser.add_argument("--eval-data", default=None,
                        help="after training, run `rlrm eval` on this folder and write <output_dir>/eval.json")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. steps=500 lr=3e-4 tiny.text_hidden_size=128")


def load_train_config(config: str = "default", overrides: list[str] | None = None) -> dict[str, Any]:
    """Compose a train config (name in :data:`CONFIG_DIR` or a YAML path) with Hydra overrides."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    path = Path(config)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise FileNotFoundError(f"train config file {path} does not exist")
        config_dir, name = path.resolve().parent, path.stem
    else:
        config_dir, name = CONFIG_DIR, config
        if not (config_dir / f"{name}.yaml").exists():
            known = sorted(p.stem for p in config_dir.glob("*.yaml"))
            raise ValueError(f"unknown train config {config!r}: expected one of {known} or a .yaml path")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        cfg = compose(config_name=name, overrides=list(overrides or []))
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    """Train, export the model in the upstream layout, optionally evaluate."""
    import yaml

    from rlrm.train.trainer import TrainConfig, Trainer

    cfg = TrainConfig.from_dict(load_train_config(args.config, args.overrides))
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    trainer = Trainer(cfg)
    trainer.train()
    log.info("model saved to %s (upstream layout)", Path(cfg.output_dir) / "model")
    if args.eval_data:
        from rlrm.evaluate import cli as eval_cli

        eval_args = argparse.Namespace(
            data=args.eval_data, model=str(Path(cfg.output_dir) / "model"),
            json_out=str(Path(cfg.output_dir) / "eval.json"), plots=str(Path(cfg.output_dir) / "plots"),
            mode="full", max_frames=None, threshold=0.5, instructions=cfg.distractor_instructions,
            no_confusion=False, limit=None, batch_size=16, device=None,
        )
        return eval_cli.run(eval_args)
    return 0
