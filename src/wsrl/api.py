"""The Python API: the same three jobs as the command line.

    from wsrl import PretrainConfig, FinetuneConfig, pretrain, finetune, run
    ckpt_run = pretrain(PretrainConfig(task="pointmaze-umaze-v0", steps=20_000))
    finetune(FinetuneConfig(task="pointmaze-umaze-v0", method="wsrl", checkpoint=str(ckpt_run / "checkpoint")))
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from wsrl.config import (PRESETS, ConfigError, FinetuneConfig, PretrainConfig, learner_config_for_pretrain,
                         needs_pretraining, pretrain_algorithm, pretrain_config_for, resolve_finetune,
                         validate_pretrain)
from wsrl.io.checkpoint import architecture_problems
from wsrl.io.runlog import CONFIG_FILE
from wsrl.tasks import get_task
from wsrl.train.common import default_run_dir
from wsrl.train.offline import CHECKPOINT_DIR, pretrain
from wsrl.train.online import finetune

__all__ = ["pretrain", "finetune", "run", "PretrainConfig", "FinetuneConfig"]


def check_stages_fit(cfg: FinetuneConfig, pre: PretrainConfig) -> None:
    """Before any pre-training: the checkpoint `pre` will produce must be one fine-tuning `cfg` accepts."""
    task = get_task(cfg.task)
    preset = PRESETS[task.preset]
    validate_pretrain(pre)
    resolved = resolve_finetune(dataclasses.replace(cfg, checkpoint="<pre-training>"), preset,
                                task.max_episode_steps)
    if resolved.learner is None or resolved.init == "none":
        return
    problems = architecture_problems(learner_config_for_pretrain(pre, preset), resolved.learner, resolved.init)
    if problems:
        raise ConfigError(f"method {cfg.method!r} cannot start from the {pretrain_algorithm(pre, preset)} "
                          f"pre-training these options give:\n  - " + "\n  - ".join(problems))


def run(cfg: FinetuneConfig, algorithm: str | None = None,
        pretrain_steps: int | None = None) -> tuple[Path | None, Path]:
    """Pre-train what the method starts from (unless it starts from scratch or a finished checkpoint is already
    there), then fine-tune. Runs go to <run_dir>/pretrain and <run_dir>/finetune; `cfg.resume` continues
    either. Every common option (discount, sizes, temperature, ...) reaches both stages."""
    pretrain_dir, pre = None, None
    if needs_pretraining(cfg):
        pre = pretrain_config_for(cfg, algorithm, pretrain_steps)
        check_stages_fit(cfg, pre)
    label = pretrain_algorithm(pre, PRESETS[get_task(cfg.task).preset]) if pre else "scratch"
    base = default_run_dir(cfg, f"{label}+{cfg.method}")
    if pre is not None:
        pretrain_dir = base / "pretrain"
        if not (pretrain_dir / CHECKPOINT_DIR / "checkpoint.json").exists():
            pretrain(dataclasses.replace(pre, run_dir=str(pretrain_dir),
                                         resume=(pretrain_dir / CONFIG_FILE).exists()))
    finetune_dir = base / "finetune"
    finetune(dataclasses.replace(
        cfg, run_dir=str(finetune_dir), resume=(finetune_dir / CONFIG_FILE).exists(),
        checkpoint=str(pretrain_dir / CHECKPOINT_DIR) if pretrain_dir else None))
    return pretrain_dir, finetune_dir
