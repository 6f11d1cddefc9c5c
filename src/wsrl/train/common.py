"""Pieces shared by pre-training and fine-tuning: datasets for training, evaluation, run directories, snapshots."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Callable, NamedTuple

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


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What the Python API passes as objects instead of names: a function making the environment and the offline
    data in memory (`wsrl.api`). `record`: what config.json notes of them."""

    env_factory: Callable | None = None
    data: Transitions | None = None
    record: dict = dataclasses.field(default_factory=dict)


IN_MEMORY = "<in-memory Transitions sha256:{}>"  # the `dataset` a run given a Transitions object records


def with_inputs(cfg, env=None, data: Transitions | None = None, inputs: Inputs | None = None):
    """(the config as the run records it, Inputs). `env`: a Gymnasium id (the same as `env=` in the config) or
    a function of no arguments returning the environment; its spec's id, kwargs and time limit (if it has a spec)
    become the config's `env`, `env_kwargs` and `max_episode_steps` (as config.json records them). `data`: Transitions (actions in [-1, 1]) used instead of a dataset file;
    the config's `dataset` names it with the sha256 of its arrays. A Minari `dataset` with neither task nor env
    gets the environment the dataset records (wsrl.tasks.user.recover_env)."""
    from wsrl.errors import ConfigError
    from wsrl.tasks.user import call_env_factory, recover_env
    from wsrl.config import DEFAULT_TASK
    if inputs is not None:
        env, data = inputs.env_factory or env, inputs.data if inputs.data is not None else data
    record = {}
    if env is not None:
        if cfg.task not in (None, DEFAULT_TASK):
            raise ConfigError(f"pass either task={cfg.task!r} or env=..., not both")
        if isinstance(env, str):
            if cfg.env not in (None, env):
                raise ConfigError(f"env={env!r} given and the config's env is {cfg.env!r}; pass one")
            cfg, env = dataclasses.replace(cfg, task=None, env=env), None
        elif callable(env):
            probe = call_env_factory(env)
            spec = probe.spec
            probe.close()
            env_id = spec.id if spec is not None else type(probe.unwrapped).__name__
            kwargs = json.loads(json.dumps(dict(spec.kwargs or {}), default=repr)) if spec is not None else {}
            if cfg.env not in (None, env_id) or cfg.env_kwargs not in ({}, kwargs) or cfg.env_module:
                raise ConfigError(f"env={env!r} makes the environment; drop the config's env / env_kwargs / "
                                  f"env_module (the factory's spec gives {env_id!r} {kwargs})")
            steps = cfg.max_episode_steps or (spec.max_episode_steps if spec is not None else None)
            cfg = dataclasses.replace(cfg, task=None, env=env_id, env_kwargs=kwargs, max_episode_steps=steps)
            record["env_factory"] = f"{getattr(env, '__module__', '?')}.{getattr(env, '__qualname__', repr(env))}"
        else:
            raise ConfigError(f"env must be a Gymnasium id or a function returning a gymnasium.Env, got "
                              f"{type(env).__name__}")
    if data is not None:
        if not isinstance(data, Transitions):
            raise ConfigError(f"data must be a wsrl.data.Transitions, got {type(data).__name__}; pass a dataset "
                              f"file as dataset=PATH in the config")
        data.validate("the Transitions object passed as data")
        label = IN_MEMORY.format(transitions_sha256(data))
        if cfg.dataset not in (None, label):
            raise ConfigError(f"data=Transitions given and the config's dataset is {cfg.dataset!r}; pass one")
        cfg = dataclasses.replace(cfg, dataset=label)
    return recover_env(cfg), Inputs(env if callable(env) else None, data, record)


def transitions_sha256(data: Transitions) -> str:
    """The sha256 of a Transitions' arrays (each field's name, dtype, shape and bytes, in field order)."""
    digest = hashlib.sha256()
    for name, array in data.arrays().items():
        array = np.ascontiguousarray(array)
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_record(task: Task, override: str | None, given: Transitions | None, loaded: Transitions) -> dict:
    """What config.json notes of the offline data: the sha256 of the Transitions object's arrays, or the file
    read (a Minari dataset's main_data.hdf5) and its sha256; and `training_data_sha256`, of the arrays trained on
    (`loaded`: rewards transformed, returns attached), which says whether two runs saw the same data even when
    their files differ in metadata only (a dataset generated again at another commit)."""
    content = {"training_data_sha256": transitions_sha256(loaded)}
    if given is not None:
        return {"dataset_sha256": transitions_sha256(given), **content}
    from wsrl.config import names_minari_dataset
    from wsrl.data.loaders import MINARI_FILE, minari_data_dir
    source = dataset_source(task, override)
    try:
        path = minari_data_dir(source) / MINARI_FILE if names_minari_dataset(str(source)) else \
            Path(source).expanduser()
        return {"dataset_file": str(path.resolve()), "dataset_sha256": file_sha256(path), **content}
    except (DataError, OSError):
        return content


def load_training_data(task: Task, override: str | None, obs_dim: int, action_dim: int,
                       discount: float, given: Transitions | None = None) -> Transitions:
    """The task's dataset (or `given`, Transitions passed through the API) with the family's reward transform
    applied and Monte-Carlo returns-to-go attached."""
    source = dataset_source(task, override)
    if given is not None:
        data = given.validate(source)
    elif override is None and task.user_env:
        raise DataError(f"environment {task.env_id!r} has no default dataset: pass --dataset FILE")
    elif override is None and not Path(source).exists():
        raise DataError(f"task {task.name!r} has no dataset at {source}. {task.dataset_hint}")
    else:
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
