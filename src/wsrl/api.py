"""The Python API: the same three jobs as the command line.

    from wsrl import PretrainConfig, FinetuneConfig, pretrain, finetune, run
    ckpt_run = pretrain(PretrainConfig(task="pointmaze-umaze-v0", steps=20_000))
    finetune(FinetuneConfig(task="pointmaze-umaze-v0", method="wsrl", checkpoint=str(ckpt_run / "checkpoint")))
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from wsrl.config import CHECKPOINT_ALGORITHM, ConfigError, FinetuneConfig, METHOD_TABLE, PretrainConfig, choose, \
    METHODS
from wsrl.train.common import STATE_DIR, default_run_dir
from wsrl.train.offline import CHECKPOINT_DIR, pretrain
from wsrl.train.online import finetune

__all__ = ["pretrain", "finetune", "run", "PretrainConfig", "FinetuneConfig"]


def needs_pretraining(cfg: FinetuneConfig) -> bool:
    method = METHOD_TABLE[choose("method", cfg.method, METHODS)]
    init = cfg.init or method.init
    source = cfg.warmup_source or method.warmup_source
    return init != "none" or source == "policy"


def run(cfg: FinetuneConfig, algorithm: str | None = None, pretrain_steps: int | None = None) -> tuple[Path | None, Path]:
    """Pre-train (unless the method starts from scratch or a finished checkpoint is already there), then
    fine-tune. Runs go to <run_dir>/pretrain and <run_dir>/finetune; `cfg.resume` continues either."""
    expected = CHECKPOINT_ALGORITHM.get(cfg.method)
    if expected and algorithm not in (None, expected):
        raise ConfigError(f"method {cfg.method!r} continues {expected} training; drop --algorithm {algorithm}")
    algorithm = algorithm or expected or "cal-ql"
    base = default_run_dir(cfg, f"{algorithm}+{cfg.method}")
    pretrain_dir = None
    if needs_pretraining(cfg):
        pretrain_dir = base / "pretrain"
        if not (pretrain_dir / CHECKPOINT_DIR / "checkpoint.json").exists():
            layer_norm = True if cfg.layer_norm is None else cfg.layer_norm
            pretrain(PretrainConfig(
                task=cfg.task, seed=cfg.seed, run_dir=str(pretrain_dir), dataset=cfg.dataset,
                eval_interval=cfg.eval_interval, eval_episodes=cfg.eval_episodes, batch_size=cfg.batch_size,
                save_interval=cfg.save_interval, resume=(pretrain_dir / STATE_DIR).exists(), progress=cfg.progress,
                critic_hidden_dims=cfg.critic_hidden_dims, actor_hidden_dims=cfg.actor_hidden_dims,
                algorithm=algorithm, steps=pretrain_steps, num_critics=cfg.num_critics or 10,
                critic_layer_norm=layer_norm, actor_layer_norm=layer_norm))
    finetune_dir = base / "finetune"
    finetune(dataclasses.replace(
        cfg, run_dir=str(finetune_dir), resume=(finetune_dir / STATE_DIR / "loop.json").exists(),
        checkpoint=str(pretrain_dir / CHECKPOINT_DIR) if pretrain_dir else None))
    return pretrain_dir, finetune_dir
