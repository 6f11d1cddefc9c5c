"""Offline pre-training (Cal-QL, CQL, IQL) on a dataset, for one seed or a group of seeds trained together on one
copy of the data; each seed writes a checkpoint that fine-tuning starts from."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import numpy as np

from wsrl import agents
from wsrl.config import (PRESETS, PretrainConfig, for_seed, learner_config_for_pretrain, pretrain_algorithm,
                         run_seeds, seed_run_dir, to_jsonable, validate_pretrain)
from wsrl.data.replay import BATCH_KEYS, offline_batch
from wsrl.io import checkpoint
from wsrl.io.runlog import progress_bar
from wsrl.tasks import get_task
from wsrl.train import common
from wsrl.train.run import Run, resume_step


@dataclasses.dataclass
class Pretrained:
    """What pre-training hands to fine-tuning: each seed's run directory and, in memory, its final agent with
    the metadata its checkpoint records."""

    run_dirs: dict[int, Path]
    agents: dict[int, tuple]  # seed -> (agent, checkpoint metadata)


def pretrain(cfg: PretrainConfig) -> Path | list[Path]:
    """Run (or resume) offline pre-training; returns the run directory (checkpoint in `<run>/checkpoint`), or
    with `cfg.seeds` one per seed."""
    dirs = list(pretrain_seeds(cfg).run_dirs.values())
    return dirs if cfg.seeds is not None else dirs[0]


def pretrain_seeds(cfg: PretrainConfig) -> Pretrained:
    with contextlib.ExitStack() as stack:
        return _pretrain(cfg, stack)


def _pretrain(cfg: PretrainConfig, stack: contextlib.ExitStack) -> Pretrained:
    validate_pretrain(cfg)
    task = get_task(cfg.task)
    preset = PRESETS[task.preset]
    learner = learner_config_for_pretrain(cfg, preset)
    algorithm = pretrain_algorithm(cfg, preset)
    steps = cfg.steps or preset.pretrain_steps
    seeds = run_seeds(cfg)
    members = [for_seed(cfg, seed, seed_run_dir(cfg, algorithm, seed)) for seed in seeds]
    runs = [Run(Path(m.run_dir), cfg.resume, common.run_record(
        "pretrain", m, task, method=algorithm, algorithm=algorithm, steps=steps, learner=to_jsonable(learner),
        pretrain_run=None, pretrain_steps=steps)) for m in members]
    start = resume_step(runs)
    eval_envs = [common.eval_envs(task, seed, cfg.eval_episodes) for seed in seeds]
    obs_dim, action_dim = common.env_dims(eval_envs[0][0])
    data = common.load_training_data(task, cfg.dataset, obs_dim, action_dim, learner.discount)

    for run in runs:
        run.open(stack, start)
    if start:
        snapshots = [run.snapshot_dir(start) for run in runs]
        stacked = agents.seeds.stack([checkpoint.load(s / "agent")[0] for s in snapshots])
        rngs = [common.rng_from_state(json.loads((s / "loop.json").read_text())["rng"]) for s in snapshots]
    else:
        for run in runs:
            run.write_config({"dataset_size": len(data)})
        stacked = agents.seeds.stack([agents.create(learner, obs_dim, action_dim, seed) for seed in seeds])
        rngs = [np.random.default_rng(seed) for seed in seeds]

    step = start
    with progress_bar(steps, start, cfg.progress, f"pretrain {algorithm}") as bar:
        while step < steps:
            batches = [offline_batch(data, rng.integers(0, len(data), size=(1, cfg.batch_size))) for rng in rngs]
            stacked, info = agents.seeds.update(stacked, {k: np.stack([b[k] for b in batches]) for k in BATCH_KEYS})
            step += 1
            if step % cfg.eval_interval == 0 or step == steps:
                results = common.evaluate(task, eval_envs, stacked, cfg.eval_episodes,
                                          [common.episode_seed(seed, step) for seed in seeds])
                for i, (run, result) in enumerate(zip(runs, results)):
                    run.log({"step": step, "phase": "pretrain", **result,
                             **{f"train/{k}": float(v[i]) for k, v in info.items()}})
                bar.set_postfix_str(f"score {np.mean([r['score'] for r in results]):.1f}", refresh=False)
            if step % cfg.save_interval == 0 and step < steps:
                for i, (run, rng) in enumerate(zip(runs, rngs)):
                    run.snapshot(step, lambda d, i=i, rng=rng: write_snapshot(d, stacked, i, obs_dim, step, rng))
            bar.update(1)

    finished = {}
    for i, (seed, run) in enumerate(zip(seeds, runs)):
        agent = agents.seeds.member(stacked, i)
        meta = {"task": task.name, "algorithm": algorithm, "pretrain_steps": steps,
                "pretrain_run": str(run.path.resolve())}
        run.finish(agent, obs_dim, meta)
        finished[seed] = (agent, {**meta, "obs_dim": obs_dim, "action_dim": action_dim})
    return Pretrained({seed: run.path for seed, run in zip(seeds, runs)}, finished)


def write_snapshot(directory: Path, stacked, index: int, obs_dim: int, step: int, rng: np.random.Generator) -> None:
    checkpoint.save(directory / "agent", agents.seeds.member(stacked, index), obs_dim=obs_dim)
    (directory / "loop.json").write_text(json.dumps({"step": step, "rng": common.rng_state(rng)}))

