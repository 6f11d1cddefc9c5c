"""Pieces shared by pre-training and fine-tuning: datasets for training, evaluation, run directories, snapshots."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from wsrl import agents
from wsrl.config import to_jsonable
from wsrl.data import DataError
from wsrl.data.loaders import load_dataset
from wsrl.data.replay import offline_batch
from wsrl.data.returns import mc_returns_to_go
from wsrl.data.transitions import Transitions
from wsrl.tasks import Task, normalized_score


# ---- data ----------------------------------------------------------------------------------------------------

def dataset_source(task: Task, override: str | None) -> str | Path:
    return override if override is not None else task.dataset_path


def load_training_data(task: Task, override: str | None, obs_dim: int, action_dim: int,
                       discount: float) -> Transitions:
    """The task's dataset with the family's reward transform applied and Monte-Carlo returns-to-go attached."""
    source = dataset_source(task, override)
    if override is None and task.user_env:
        raise DataError(f"environment {task.env_id!r} has no default dataset: pass --dataset FILE")
    if override is None and not Path(source).exists():
        raise DataError(f"task {task.name!r} has no dataset at {source}. {task.dataset_hint}")
    data = load_dataset(source, reward_fn=task.reward_fn, transform=task.dataset_transform,
                        action_map=task.action_map)
    if data.obs_dim != obs_dim or data.act_dim != action_dim:
        raise DataError(f"{source}: observations/actions have sizes {data.obs_dim}/{data.act_dim} but the "
                        f"environment of task {task.name!r} has {obs_dim}/{action_dim}; this dataset belongs to "
                        f"another task")
    rewards = task.reward_transform(data.rewards)
    returns = mc_returns_to_go(rewards, data.episode_ends(), discount, task.sparse_negative_reward)
    return data.with_rewards(rewards).with_mc_returns(returns)


def held_out_sample(data: Transitions, size: int, seed: int) -> dict | None:
    """A small fixed sample of the offline data, for diagnostics only (never part of a training batch)."""
    if size == 0:
        return None
    idx = np.random.default_rng(seed + 7_919).choice(len(data), size=min(size, len(data)), replace=False)
    return offline_batch(data, np.sort(idx))


# ---- evaluation ----------------------------------------------------------------------------------------------

class Episode(NamedTuple):
    ret: float  # sum of rewards
    success: bool  # info["success"] on any step
    final_reward: float  # the last step's reward (kitchen: the sub-tasks done by the episode's end)


def episode_seed(seed: int, index: int) -> int:
    """The reset seed of episode `index` of a stream seeded `seed` (training episodes, evaluation rounds)."""
    return seed * 1_000_003 + index


def run_episodes(envs: list, act, seeds: list[int]) -> list[Episode]:
    """One episode on each environment (reset with its seed), stepped in lockstep: `act(observations)` maps
    stacked observations (n, obs_dim) to actions (n, action_dim) with one call for all environments."""
    obs = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)]
    totals, success, final = [0.0] * len(envs), [False] * len(envs), [0.0] * len(envs)
    running = list(range(len(envs)))
    while running:
        actions = act(np.stack(obs).astype(np.float32))
        for i in list(running):
            obs[i], reward, terminated, truncated, info = envs[i].step(actions[i])
            totals[i] += float(reward)
            success[i] = success[i] or bool(info.get("success", False))
            final[i] = float(reward)
            if terminated or truncated:
                running.remove(i)
    return [Episode(*values) for values in zip(totals, success, final)]


def score_episodes(task: Task, results: list[Episode]) -> dict:
    """The task's normalized score, the mean return and the success rate of some episodes."""
    returns = np.array([e.ret for e in results], np.float64)
    successes = np.array([e.success for e in results], np.float64)
    finals = np.array([e.final_reward for e in results], np.float64)
    return {"score": normalized_score(task, returns, successes, finals), "return": float(returns.mean()),
            "success": float(successes.mean())}


EVAL_LANES = 10  # a seed's evaluation episodes stepped together; more episodes run in rounds of this many


def eval_envs(task: Task, seed: int, episodes: int) -> list:
    """A seed's evaluation environments, one per episode stepped together (each episode is reset with its own
    seed, so which copy runs it does not matter)."""
    return [task.make_env(seed + 10_000) for _ in range(min(episodes, EVAL_LANES))]


def evaluate(task: Task, envs: list[list], stacked, episodes: int, seeds: list[int]) -> list[dict]:
    """Each seed's deterministic policy (the mean action) for `episodes` episodes (episode e reset with seed
    seeds[i] + e) on its environments `envs[i]` (from `eval_envs`). Every seed's episodes of a round are stepped
    in lockstep with one action call: one score dict per seed."""
    width = len(envs[0])

    def act(observations):  # (seeds * count, obs_dim), seed-major
        per_seed_obs = observations.reshape(len(envs), -1, observations.shape[-1])
        return np.asarray(agents.seeds.eval_actions(stacked, per_seed_obs)).reshape(len(observations), -1)

    per_seed = [[] for _ in envs]
    for first in range(0, episodes, width):
        count = min(width, episodes - first)
        episodes_run = run_episodes([env for seed_envs in envs for env in seed_envs[:count]], act,
                                    [seed + first + j for seed in seeds for j in range(count)])
        for i, results in enumerate(per_seed):
            results.extend(episodes_run[i * count:(i + 1) * count])
    return [score_episodes(task, results) for results in per_seed]


def env_dims(env) -> tuple[int, int]:
    return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))


# ---- run records and random streams ----------------------------------------------------------------------

def run_record(kind: str, cfg, task: Task, **extra) -> dict:
    """What config.json records of a run (without provenance), as JSON reads it back."""
    record = {**dataclasses.asdict(cfg), "kind": kind, "task": task.name, "family": task.family, **extra}
    return json.loads(json.dumps(to_jsonable(record)))


def rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def rng_from_state(state: dict) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng


def key_to_list(key) -> list[int]:
    return np.asarray(jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
                      else key).tolist()


def key_from_list(values) -> jax.Array:
    return jax.numpy.asarray(np.array(values, dtype=np.uint32))
