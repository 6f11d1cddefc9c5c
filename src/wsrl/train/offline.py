"""Offline pre-training (Cal-QL, CQL, IQL) on a dataset, for one seed or a group of seeds trained together on one
copy of the data; each seed writes a checkpoint that fine-tuning starts from."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from wsrl import agents
from wsrl.config import (PRESETS, PretrainConfig, for_seed, learner_config_for_pretrain, pretrain_algorithm,
                         run_seeds, seed_run_dir, to_jsonable, validate_pretrain)
from wsrl.data.transitions import TO_BATCH_FIELDS, Transitions
from wsrl.io import checkpoint
from wsrl.io.runlog import progress_bar
from wsrl.tasks import resolve_task
from wsrl.train import common
from wsrl.train.run import Run, RunDirError, resume_step

BLOCK_STEPS = 50  # gradient steps per jitted call; blocks also end at evaluation and snapshot steps
SAMPLE_STREAM = 1  # the minibatch key of seed s is fold_in(PRNGKey(s), SAMPLE_STREAM), apart from the learner's


@dataclasses.dataclass
class Pretrained:
    """What pre-training hands to fine-tuning: each seed's run directory and, in memory, its final agent with
    the metadata its checkpoint records."""

    run_dirs: dict[int, Path]
    agents: dict[int, tuple]  # seed -> (agent, checkpoint metadata)


def pretrain(cfg: PretrainConfig, env=None, data: Transitions | None = None) -> Path | list[Path]:
    """Run (or resume) offline pre-training; returns the run directory (checkpoint in `<run>/checkpoint`), or
    with `cfg.seeds` one per seed. `env` (a Gymnasium id or a function making the environment) and `data`
    (Transitions) are objects in place of names (`common.with_inputs`)."""
    dirs = list(pretrain_seeds(cfg, env, data).run_dirs.values())
    return dirs if cfg.seeds is not None else dirs[0]


def pretrain_seeds(cfg: PretrainConfig, env=None, data: Transitions | None = None,
                   inputs: common.Inputs | None = None) -> Pretrained:
    with contextlib.ExitStack() as stack:
        return _pretrain(*common.with_inputs(cfg, env, data, inputs), stack)


def _pretrain(cfg: PretrainConfig, inputs: common.Inputs, stack: contextlib.ExitStack) -> Pretrained:
    validate_pretrain(cfg)
    task = resolve_task(cfg, inputs.env_factory)
    preset = PRESETS[task.preset]
    learner = learner_config_for_pretrain(cfg, preset)
    algorithm = pretrain_algorithm(cfg, preset)
    steps = cfg.steps or preset.pretrain_steps
    seeds = run_seeds(cfg)
    members = [for_seed(cfg, seed, seed_run_dir(cfg, algorithm, seed)) for seed in seeds]
    runs = [Run(Path(m.run_dir), cfg.resume, common.run_record(
        "pretrain", m, task, method=algorithm, algorithm=algorithm, steps=steps, learner=to_jsonable(learner),
        pretrain_run=None, pretrain_steps=steps, **inputs.record)) for m in members]
    start = resume_step(runs)
    eval_envs = [common.eval_envs(task, seed, cfg.eval_episodes) for seed in seeds]
    obs_dim, action_dim = common.env_dims(eval_envs[0][0])
    data = common.load_training_data(task, cfg.dataset, obs_dim, action_dim, learner.discount, inputs.data)

    data_record = {} if start else common.dataset_record(task, cfg.dataset, inputs.data, data)
    for run in runs:
        run.open(stack, start)
    if start:
        snapshots = [run.snapshot_dir(start) for run in runs]
        stacked = agents.seeds.stack([checkpoint.load(s / "agent")[0] for s in snapshots])
        keys = jnp.stack([read_sample_key(s) for s in snapshots])
    else:
        for run in runs:
            run.write_config({"dataset_size": len(data), **data_record})
        stacked = agents.seeds.stack([agents.create(learner, obs_dim, action_dim, seed) for seed in seeds])
        keys = first_sample_keys(seeds)
    dataset = device_dataset(data)
    del data

    step = start
    with progress_bar(steps, start, cfg.progress, f"pretrain {algorithm}") as bar:
        while step < steps:
            block = min(BLOCK_STEPS, steps - step, cfg.eval_interval - step % cfg.eval_interval,
                        cfg.save_interval - step % cfg.save_interval)
            stacked, keys, info = agents.seeds.offline_block(stacked, dataset, keys, block, cfg.batch_size)
            step += block
            if step % cfg.eval_interval == 0 or step == steps:
                results = common.evaluate(task, eval_envs, stacked, cfg.eval_episodes,
                                          [common.episode_seed(seed, step) for seed in seeds])
                for i, (run, result) in enumerate(zip(runs, results)):
                    run.log({"step": step, "phase": "pretrain", **result,
                             **{f"train/{k}": float(v[i]) for k, v in info.items()}})
                bar.set_postfix_str(f"score {np.mean([r['score'] for r in results]):.1f}", refresh=False)
            if step % cfg.save_interval == 0 and step < steps:
                for i, run in enumerate(runs):
                    run.snapshot(step, lambda d, i=i: write_snapshot(d, stacked, keys, i, obs_dim, step))
            bar.update(block)

    finished = {}
    for i, (seed, run) in enumerate(zip(seeds, runs)):
        agent = agents.seeds.member(stacked, i)
        meta = {"task": task.name, "algorithm": algorithm, "pretrain_steps": steps,
                "pretrain_run": str(run.path.resolve())}
        run.finish(agent, obs_dim, meta)
        finished[seed] = (agent, {**meta, "obs_dim": obs_dim, "action_dim": action_dim})
    return Pretrained({seed: run.path for seed, run in zip(seeds, runs)}, finished)


def first_sample_keys(seeds) -> jax.Array:
    """Each seed's minibatch key at step 0, a stream apart from the learner's own key."""
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(seed), SAMPLE_STREAM) for seed in seeds])


def device_dataset(data: Transitions) -> dict:
    """The fields minibatches are built from, as device arrays (the dataset stays resident for the whole run)."""
    return {k: jnp.asarray(v) for k, v in data.arrays().items() if k in TO_BATCH_FIELDS}


def write_snapshot(directory: Path, stacked, keys, index: int, obs_dim: int, step: int) -> None:
    checkpoint.save(directory / "agent", agents.seeds.member(stacked, index), obs_dim=obs_dim)
    (directory / "loop.json").write_text(json.dumps({"step": step, "sample_key": common.key_to_list(keys[index])}))


def read_sample_key(snapshot: Path):
    loop = json.loads((snapshot / "loop.json").read_text())
    if "sample_key" not in loop:
        raise RunDirError(f"{snapshot} was written by an earlier version of wsrl that drew batches differently; "
                          f"start the run again without --resume")
    return common.key_from_list(loop["sample_key"])
