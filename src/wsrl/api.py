"""The Python API: the same three jobs as the command line.

    from wsrl import PretrainConfig, FinetuneConfig, pretrain, finetune, run
    ckpt_run = pretrain(PretrainConfig(task="pointmaze-umaze-v0", steps=20_000))
    finetune(FinetuneConfig(task="pointmaze-umaze-v0", method="wsrl", checkpoint=str(ckpt_run / "checkpoint")))

Each also takes objects instead of names (docs/your-own-environment.md): `env=` a Gymnasium id or a function of
no arguments returning the environment (`lambda: gym.make("InvertedPendulum-v5")`), `data=` a
`wsrl.data.Transitions` (actions in [-1, 1]) instead of a dataset file:

    pretrain(PretrainConfig(family="locomotion", steps=5_000), env=make_env, data=transitions)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from wsrl.agents import architecture_problems
from wsrl.config import (PRESETS, ConfigError, FinetuneConfig, PretrainConfig, learner_config_for_pretrain,
                         needs_pretraining, pretrain_algorithm, pretrain_config_for, resolve_finetune, run_seeds,
                         validate_pretrain)
from wsrl.io.runlog import CONFIG_FILE
from wsrl.tasks import resolve_task
from wsrl.train.common import Inputs, with_inputs
from wsrl.train.offline import pretrain, pretrain_seeds
from wsrl.train.online import finetune
from wsrl.train.run import CHECKPOINT_DIR, has_checkpoint

__all__ = ["pretrain", "finetune", "run", "PretrainConfig", "FinetuneConfig"]


def check_stages_fit(cfg: FinetuneConfig, pre: PretrainConfig, inputs: Inputs | None = None) -> None:
    """Before any pre-training: the checkpoint `pre` will produce must be one fine-tuning `cfg` accepts."""
    task = resolve_task(cfg, inputs.env_factory if inputs else None)
    preset = PRESETS[task.preset]
    validate_pretrain(pre)
    plan = resolve_finetune(dataclasses.replace(cfg, checkpoint="<pre-training>"), preset, task.max_episode_steps)
    if plan.learner is None or plan.init == "none":
        return
    problems = architecture_problems(learner_config_for_pretrain(pre, preset), plan.learner, plan.init)
    if problems:
        raise ConfigError(f"method {cfg.method!r} cannot start from the {pretrain_algorithm(pre, preset)} "
                          f"pre-training these options give:\n  - " + "\n  - ".join(problems))


def stage_template(cfg: FinetuneConfig, name: str) -> str:
    """The folder holding a seed's pre-training and fine-tuning runs, with {seed} where the seed goes."""
    if cfg.run_dir is None:
        return f"runs/{cfg.task_label}/{name}/seed{{seed}}"
    if cfg.seeds is not None and "{seed}" not in cfg.run_dir:
        return f"{cfg.run_dir}/seed{{seed}}"
    return cfg.run_dir


def run(cfg: FinetuneConfig, algorithm: str | None = None, pretrain_steps: int | None = None, env=None,
        data=None) -> tuple[Path | list[Path] | None, Path | list[Path]]:
    """Pre-train what the method starts from (unless it starts from scratch or a finished checkpoint is already
    there), then fine-tune from the pre-trained agents in memory. Runs go to <run_dir>/pretrain and
    <run_dir>/finetune (with `cfg.seeds`, <run_dir>/seed<s>/...); `cfg.resume` continues either. Every common
    option (discount, sizes, temperature, ...) reaches both stages. `env` (a Gymnasium id or a function making
    the environment) and `data` (Transitions) are objects in place of names, for both stages."""
    cfg, inputs = with_inputs(cfg, env, data)
    pre = None
    if needs_pretraining(cfg):
        pre = pretrain_config_for(cfg, algorithm, pretrain_steps)
        check_stages_fit(cfg, pre, inputs)
    label = pretrain_algorithm(pre, PRESETS[resolve_task(cfg, inputs.env_factory).preset]) if pre else "scratch"
    seeds, template = run_seeds(cfg), stage_template(cfg, f"{label}+{cfg.method}")
    base = {seed: Path(template.replace("{seed}", str(seed))) for seed in seeds}
    pretrain_dirs, pretrained = None, {}
    if pre is not None:
        todo = [s for s in seeds if not has_checkpoint(base[s] / "pretrain")]
        if todo:
            started = [s for s in todo if (base[s] / "pretrain" / CONFIG_FILE).exists()]
            result = pretrain_seeds(dataclasses.replace(
                pre, seeds=tuple(todo) if cfg.seeds is not None else None, seed=todo[0], run_dir=f"{template}/pretrain",
                resume=bool(started)), inputs=inputs)
            pretrained = result.agents
        pretrain_dirs = [base[s] / "pretrain" for s in seeds]
    finetune_dirs = [base[s] / "finetune" for s in seeds]
    result = finetune(dataclasses.replace(
        cfg, run_dir=f"{template}/finetune", resume=(finetune_dirs[0] / CONFIG_FILE).exists(),
        checkpoint=f"{template}/pretrain/{CHECKPOINT_DIR}" if pre else None), pretrained=pretrained, inputs=inputs)
    if cfg.seeds is not None:
        return pretrain_dirs, result
    return (pretrain_dirs[0] if pretrain_dirs else None), result
