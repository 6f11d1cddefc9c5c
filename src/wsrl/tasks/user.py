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


def resolve_task(cfg) -> Task:
    """The Task of a run config: the registry task `cfg.task`, or the user environment `cfg.env`."""
    from wsrl.config import validate_task_options
    validate_task_options(cfg)
    if cfg.env is None:
        return get_task(cfg.task)
    return user_task(cfg.env, family=cfg.family, env_kwargs=cfg.env_kwargs, env_module=cfg.env_module,
                     max_episode_steps=cfg.max_episode_steps, reward_scale=cfg.reward_scale,
                     reward_bias=cfg.reward_bias, sparse_reward=cfg.sparse_reward, success_key=cfg.success_key)


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


def user_env(env_id: str, env_kwargs: dict, env_module: str | None, success_key: str | None,
             max_episode_steps: int) -> gym.Env:
    """The environment as training sees it: time limit, actions in [-1, 1] rescaled to the env's bounds, flat
    float32 observations, the raw reward, info["success"] from info[success_key]."""
    env = make_raw_env(env_id, env_kwargs, env_module, max_episode_steps)
    low, high = check_spaces(env_id, env)
    if not (np.allclose(low, -1.0) and np.allclose(high, 1.0)):
        env = gym.wrappers.RescaleAction(env, np.float32(-1.0), np.float32(1.0))
    success = (lambda info, r: bool(info.get(success_key, False))) if success_key else (lambda info, r: False)
    return TaskEnv(env, lambda r, info: r, success, None)


def user_task(env_id: str, family: str, env_kwargs: dict | None = None, env_module: str | None = None,
              max_episode_steps: int | None = None, reward_scale: float = 1.0, reward_bias: float = 0.0,
              sparse_reward: float | None = None, success_key: str | None = None) -> Task:
    """A Task for a Gymnasium environment; the environment is made once here to check its spaces and horizon."""
    from wsrl.config import PRESETS, choose, safe_env_name
    choose("family", family, tuple(PRESETS))
    env_kwargs = dict(env_kwargs or {})
    probe = make_raw_env(env_id, env_kwargs, env_module)
    try:
        low, high = check_spaces(env_id, probe)
        horizon = max_episode_steps or (probe.spec.max_episode_steps if probe.spec else None)
    finally:
        probe.close()
    if not horizon:
        raise ConfigError(f"--env {env_id} has no time limit in its spec: pass --max-episode-steps N")
    if success_key is not None:
        metric, ref_min, ref_max = "success", 0.0, 1.0
    else:  # the score is the mean (raw) episode return: 100 * (mean - 0) / (100 - 0)
        metric, ref_min, ref_max = "return", 0.0, 100.0
    return Task(name=safe_env_name(env_id), family=family, env_id=env_id,
                factory=functools.partial(_factory, env_id, env_kwargs, env_module, success_key),
                max_episode_steps=int(horizon), reward_transform=RewardTransform(reward_scale, reward_bias),
                sparse_negative_reward=sparse_reward, metric=metric, ref_min_return=ref_min,
                ref_max_return=ref_max, preset=family, datagen_recipe=None,
                source_hint="Pass --dataset FILE (D4RL-layout HDF5, Minari dataset or npz).",
                action_map=ActionBounds(env_id, tuple(low.tolist()), tuple(high.tolist())), user_env=True)


def _factory(env_id: str, env_kwargs: dict, env_module: str | None, success_key: str | None,
             max_steps: int) -> gym.Env:
    return user_env(env_id, env_kwargs, env_module, success_key, max_steps)
