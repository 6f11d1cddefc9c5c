"""Your own environment (`--env ID`): a Task built from a Gymnasium id and the run's options instead of the
registry (docs/your-own-environment.md).

Supported: flat Box observations (rank 1, any dtype: cast to float32) and Box actions with finite bounds. The
learner acts in [-1, 1]; its actions are rescaled to the environment's bounds (gymnasium's RescaleAction), and the
dataset's actions are mapped into [-1, 1] with the same bounds when loaded. `info[success_key]` becomes
`info["success"]`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
from typing import Callable

import gymnasium as gym
import numpy as np

from wsrl.data.returns import RewardTransform
from wsrl.data.transitions import DataError
from wsrl.errors import ConfigError
from wsrl.tasks.envs import TaskEnv
from wsrl.tasks.registry import Task, get_task

SUPPORTED = ("flat Box observations (shape (d,)) and Box actions with finite bounds; Dict, Tuple, image (rank > 1) "
             "and Discrete spaces are not supported: flatten the observation (e.g. gymnasium.wrappers."
             "FlattenObservation inside a registered environment) or pick a continuous-action version")
# Relative tolerance of a dataset action beyond the bounds (rounding in the file), as transitions.ACTION_TOLERANCE.
BOUND_TOLERANCE = 1e-3


def resolve_task(cfg, env_factory: Callable[[], gym.Env] | None = None) -> Task:
    """The Task of a run config: the registry task `cfg.task`, the user environment `cfg.env` (made by
    `env_factory` when given, the Python API's environment object), or the environment a Minari `cfg.dataset`
    records (`recover_env`)."""
    from wsrl.config import validate_task_options
    cfg = recover_env(cfg)
    validate_task_options(cfg)
    if cfg.env is None:
        return get_task(cfg.task)
    return user_task(cfg.env, family=cfg.family, env_kwargs=cfg.env_kwargs, env_module=cfg.env_module,
                     max_episode_steps=cfg.max_episode_steps, reward_scale=cfg.reward_scale,
                     reward_bias=cfg.reward_bias, sparse_reward=cfg.sparse_reward, success_key=cfg.success_key,
                     env_factory=env_factory)


# ---- the environment of a Minari dataset -------------------------------------------------------------------

def recovers_env(cfg) -> bool:
    """A config naming neither --task nor --env whose --dataset is a Minari dataset: its environment comes from
    the dataset's recorded env spec."""
    from wsrl.config import names_minari_dataset
    return cfg.task is None and cfg.env is None and names_minari_dataset(cfg.dataset)


def minari_env_spec(dataset: str):
    """(env spec, observation space, action space) that the Minari dataset records, read offline."""
    import os
    os.environ["HF_HUB_OFFLINE"] = "1"
    from wsrl.data.loaders import minari_data_dir
    data_dir = minari_data_dir(dataset)  # a DataError saying where it looked if it is not there
    from minari.dataset.minari_dataset import MinariDataset
    try:
        data = MinariDataset(str(data_dir))
        return data.env_spec, data.observation_space, data.action_space
    except (OSError, KeyError, ValueError, AssertionError) as err:
        raise DataError(f"--dataset {dataset}: cannot read the Minari dataset's metadata in {data_dir} "
                        f"({type(err).__name__}: {err})") from err


def recover_env(cfg):
    """`cfg` with env, env_kwargs and max_episode_steps filled from the Minari dataset's env spec when it names
    neither --task nor --env (`recovers_env`); options given explicitly (--env-kwargs, --max-episode-steps) win.
    The environment is made once to check that its spaces are the dataset's. Other configs are returned as
    they are."""
    if not recovers_env(cfg):
        return cfg
    dataset = cfg.dataset
    fix = "pass --env ID (and --env-kwargs) for the environment the data was collected on"
    from wsrl.config import validate_task_options
    validate_task_options(cfg)  # --family
    spec, obs_space, act_space = minari_env_spec(dataset)
    if spec is None:
        raise ConfigError(f"--dataset {dataset}: the Minari dataset records no environment (its env_spec is "
                          f"empty), so it cannot be recovered; {fix}, or pass --task T for a registry task")
    if spec.additional_wrappers:
        names = ", ".join(w.name for w in spec.additional_wrappers)
        raise ConfigError(f"--dataset {dataset}: the recorded environment {spec.id} was wrapped ({names}); wsrl "
                          f"makes it with gym.make(id, **kwargs) and cannot add those wrappers: register a "
                          f"wrapped version and {fix}")
    env_kwargs = {**_jsonable(spec.kwargs or {}), **cfg.env_kwargs}
    max_steps = cfg.max_episode_steps or spec.max_episode_steps
    try:
        probe = make_raw_env(spec.id, env_kwargs, cfg.env_module)
    except ConfigError as err:
        raise ConfigError(f"--dataset {dataset}: cannot make the environment the dataset records ({err}); "
                          f"{fix}, or --env-module if a package registers it") from err
    try:
        for what, ours, theirs in (("observation", probe.observation_space, obs_space),
                                   ("action", probe.action_space, act_space)):
            if ours != theirs:
                raise DataError(f"--dataset {dataset}: the recovered environment {spec.id} has {what} space "
                                f"{ours} but the dataset's is {theirs}; {fix}")
    finally:
        probe.close()
    return dataclasses.replace(cfg, env=spec.id, env_kwargs=env_kwargs, max_episode_steps=max_steps)


def _jsonable(kwargs: dict) -> dict:
    """Keyword arguments as config.json can hold them (anything else as its repr)."""
    return json.loads(json.dumps(dict(kwargs), default=repr))


@dataclasses.dataclass(frozen=True)
class ActionBounds:
    """The environment's action Box: maps a dataset's raw actions into the learner's [-1, 1]
    (a -> 2 (a - low) / (high - low) - 1), refusing actions outside the bounds."""

    env_id: str
    low: tuple[float, ...]
    high: tuple[float, ...]

    def __call__(self, source: str, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, np.float64)
        low, high = np.asarray(self.low), np.asarray(self.high)
        if actions.ndim != 2 or actions.shape[1] != low.shape[0]:
            raise DataError(f"{source}: 'actions' has shape {actions.shape} but {self.env_id} takes actions of size "
                            f"{low.shape[0]}; this dataset belongs to another environment")
        slack = BOUND_TOLERANCE * (high - low)
        outside = (actions < low - slack) | (actions > high + slack)
        if outside.any():
            row, col = (int(i) for i in np.argwhere(outside)[0])
            raise DataError(f"{source}: {int(outside.sum())} action value(s) lie outside {self.env_id}'s action "
                            f"bounds [{_show(low)}, {_show(high)}] (first: row {row}, dimension {col}, value "
                            f"{actions[row, col]:.6g}). Store the actions the environment was stepped with, in its "
                            f"own units (wsrl rescales them to [-1, 1] itself), or clip them to the bounds")
        return (2.0 * (np.clip(actions, low, high) - low) / (high - low) - 1.0).astype(np.float32)


    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """The learner's [-1, 1] actions in the environment's own units (what a dataset stores)."""
        low, high = np.asarray(self.low), np.asarray(self.high)
        unit = np.clip(np.asarray(actions, np.float64), -1.0, 1.0)
        return (low + (unit + 1.0) * 0.5 * (high - low)).astype(np.float32)


def _show(values: np.ndarray) -> str:
    return np.array2string(np.asarray(values), precision=4, separator=", ")


def import_env_module(env_module: str | None) -> None:
    if env_module is None:
        return
    try:
        importlib.import_module(env_module)
    except ImportError as err:
        raise ConfigError(f"--env-module {env_module}: cannot import it ({err}); install the package or put it on "
                          f"PYTHONPATH") from err


def make_raw_env(env_id: str, env_kwargs: dict, env_module: str | None, max_episode_steps: int | None = None):
    """gym.make with the user's options; gymnasium's errors (unknown id, bad keyword, missing dependency) become
    a ConfigError saying which option to fix."""
    import_env_module(env_module)
    limit = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    try:
        return gym.make(env_id, **limit, **env_kwargs)
    except gym.error.Error as err:
        hint = "" if env_module else (" If a package registers it, pass --env-module PACKAGE (imported before "
                                      "gym.make).")
        raise ConfigError(f"--env {env_id}: gymnasium cannot make it: {err}.{hint}") from err
    except TypeError as err:
        raise ConfigError(f"--env {env_id}: gym.make rejected --env-kwargs {env_kwargs} ({err})") from err


def check_spaces(env_id: str, env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    """The action bounds of a supported environment; a ConfigError naming what is supported otherwise."""
    obs, act = env.observation_space, env.action_space
    if not isinstance(obs, gym.spaces.Box) or len(obs.shape) != 1:
        raise ConfigError(f"--env {env_id}: its observation space {obs} is not supported; wsrl trains on "
                          f"{SUPPORTED}")
    if not isinstance(act, gym.spaces.Box) or len(act.shape) != 1:
        raise ConfigError(f"--env {env_id}: its action space {act} is not supported; wsrl trains on {SUPPORTED}")
    low, high = np.asarray(act.low, np.float64), np.asarray(act.high, np.float64)
    if not (np.isfinite(low).all() and np.isfinite(high).all() and (low < high).all()):
        raise ConfigError(f"--env {env_id}: action bounds [{_show(low)}, {_show(high)}] must be finite with low < "
                          f"high in every dimension (the learner's [-1, 1] is rescaled onto them)")
    return low, high


def call_env_factory(env_factory: Callable[[], gym.Env], max_episode_steps: int | None = None) -> gym.Env:
    """The environment an API user's factory makes, with the time limit `max_episode_steps` (a TimeLimit is
    added unless the env's spec already has this one)."""
    env = env_factory()
    if not isinstance(env, gym.Env):
        raise ConfigError(f"env={env_factory!r} returned {type(env).__name__}, not a gymnasium.Env; pass a "
                          f"function taking no arguments that makes the environment (or a Gymnasium id)")
    if max_episode_steps is not None and (env.spec is None or env.spec.max_episode_steps != max_episode_steps):
        env = gym.wrappers.TimeLimit(env, max_episode_steps)
    return env


def user_env(env_id: str, env_kwargs: dict, env_module: str | None, success_key: str | None,
             max_episode_steps: int, env_factory: Callable[[], gym.Env] | None = None) -> gym.Env:
    """The environment as training sees it: time limit, actions in [-1, 1] rescaled to the env's bounds, flat
    float32 observations, the raw reward, info["success"] from info[success_key]."""
    env = make_raw_env(env_id, env_kwargs, env_module, max_episode_steps) if env_factory is None else \
        call_env_factory(env_factory, max_episode_steps)
    low, high = check_spaces(env_id, env)
    if not (np.allclose(low, -1.0) and np.allclose(high, 1.0)):
        env = gym.wrappers.RescaleAction(env, np.float32(-1.0), np.float32(1.0))
    success = (lambda info, r: bool(info.get(success_key, False))) if success_key else (lambda info, r: False)
    return TaskEnv(env, lambda r, info: r, success, None)


def user_task(env_id: str, family: str, env_kwargs: dict | None = None, env_module: str | None = None,
              max_episode_steps: int | None = None, reward_scale: float = 1.0, reward_bias: float = 0.0,
              sparse_reward: float | None = None, success_key: str | None = None,
              env_factory: Callable[[], gym.Env] | None = None) -> Task:
    """A Task for a Gymnasium environment (made by `env_factory()` if given, else by gym.make(env_id, ...));
    the environment is made once here to check its spaces and horizon."""
    from wsrl.config import PRESETS, choose, safe_env_name
    choose("family", family, tuple(PRESETS))
    env_kwargs = dict(env_kwargs or {})
    probe = make_raw_env(env_id, env_kwargs, env_module) if env_factory is None else call_env_factory(env_factory)
    try:
        low, high = check_spaces(env_id, probe)
        horizon = max_episode_steps or (probe.spec.max_episode_steps if probe.spec else None)
    finally:
        probe.close()
    if not horizon:
        raise ConfigError(f"--env {env_id} has no time limit in its spec: pass --max-episode-steps N "
                          f"(max_episode_steps=N in the config)")
    if success_key is not None:
        metric, ref_min, ref_max = "success", 0.0, 1.0
    else:  # the score is the mean (raw) episode return: 100 * (mean - 0) / (100 - 0)
        metric, ref_min, ref_max = "return", 0.0, 100.0
    return Task(name=safe_env_name(env_id), family=family, env_id=env_id,
                factory=functools.partial(_factory, env_id, env_kwargs, env_module, success_key, env_factory),
                max_episode_steps=int(horizon), reward_transform=RewardTransform(reward_scale, reward_bias),
                sparse_negative_reward=sparse_reward, metric=metric, ref_min_return=ref_min,
                ref_max_return=ref_max, preset=family, datagen_recipe=None,
                source_hint="Pass --dataset FILE (D4RL-layout HDF5, Minari dataset or npz).",
                action_map=ActionBounds(env_id, tuple(low.tolist()), tuple(high.tolist())), user_env=True)


def _factory(env_id: str, env_kwargs: dict, env_module: str | None, success_key: str | None,
             env_factory: Callable[[], gym.Env] | None, max_steps: int) -> gym.Env:
    return user_env(env_id, env_kwargs, env_module, success_key, max_steps, env_factory)
