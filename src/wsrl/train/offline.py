"""Offline pre-training (Cal-QL, CQL, IQL) on a dataset; writes a checkpoint that fine-tuning starts from."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from wsrl import agents
from wsrl.config import (PRESETS, PretrainConfig, learner_config_for_pretrain, pretrain_algorithm, to_jsonable,
                         validate_pretrain)
from wsrl.data.replay import offline_batch
from wsrl.io import checkpoint
from wsrl.io.runlog import MetricsLog, Progress
from wsrl.tasks import get_task
from wsrl.train import common, rundir

CHECKPOINT_DIR = "checkpoint"


def pretrain(cfg: PretrainConfig) -> Path:
    """Run (or resume) offline pre-training; returns the run directory (checkpoint in `<run>/checkpoint`)."""
    with contextlib.ExitStack() as lock:
        return _pretrain(cfg, lock)


def _pretrain(cfg: PretrainConfig, lock: contextlib.ExitStack) -> Path:
    validate_pretrain(cfg)
    task = get_task(cfg.task)
    preset = PRESETS[task.preset]
    learner = learner_config_for_pretrain(cfg, preset)
    algorithm = pretrain_algorithm(cfg, preset)
    steps = cfg.steps or preset.pretrain_steps
    run_dir = common.default_run_dir(cfg, algorithm)
    record = common.run_record("pretrain", cfg, task, method=algorithm, algorithm=algorithm, steps=steps,
                               learner=to_jsonable(learner), pretrain_run=None, pretrain_steps=steps)
    start = rundir.prepare(run_dir, cfg.resume, record)
    eval_env = task.make_env(cfg.seed + 10_000)
    obs_dim, action_dim = common.env_dims(eval_env)
    data = common.load_training_data(task, cfg.dataset, obs_dim, action_dim, learner.discount)

    rundir.enter(lock, run_dir, start)
    if start == "continue":
        snapshot_dir = rundir.current_snapshot(run_dir)
        agent, _ = checkpoint.load(snapshot_dir / "agent")
        loop = json.loads((snapshot_dir / "loop.json").read_text())
        step, rng = loop["step"], common.rng_from_state(loop["rng"])
    else:
        common.write_run_config(run_dir, {**record, "dataset_size": len(data)})
        agent = agents.create(learner, obs_dim, action_dim, cfg.seed)
        step, rng = 0, np.random.default_rng(cfg.seed)

    log = MetricsLog(run_dir)
    log.truncate_after(step)
    progress = Progress(steps, start=step, enabled=cfg.progress, label=f"pretrain {algorithm}")
    info = {}
    while step < steps:
        indices = rng.integers(0, len(data), size=(1, cfg.batch_size))
        agent, info = agents.update(agent, offline_batch(data, indices))
        step += 1
        if step % cfg.eval_interval == 0 or step == steps:
            result = common.evaluate(task, eval_env, agent, cfg.eval_episodes, seed=cfg.seed * 1_000_003 + step)
            progress.last_score = result["score"]
            log.write({"step": step, "phase": "pretrain", **result,
                       **{f"train/{k}": float(v) for k, v in info.items()}})
        if step % cfg.save_interval == 0 and step < steps:
            snapshot(run_dir, agent, obs_dim, step, rng)
        progress.update(step, "pretrain")
    progress.close(step, "pretrain")
    log.close()
    checkpoint.save(run_dir / CHECKPOINT_DIR, agent, obs_dim=obs_dim,
                    extra={"task": task.name, "algorithm": algorithm, "pretrain_steps": steps,
                           "pretrain_run": str(run_dir.resolve())})
    rundir.remove_state(run_dir)
    return run_dir


def snapshot(run_dir: Path, agent, obs_dim: int, step: int, rng: np.random.Generator) -> None:
    def write(directory: Path) -> None:
        checkpoint.save(directory / "agent", agent, obs_dim=obs_dim)
        (directory / "loop.json").write_text(json.dumps({"step": step, "rng": common.rng_state(rng)}))

    rundir.write_snapshot(run_dir, step, write)
