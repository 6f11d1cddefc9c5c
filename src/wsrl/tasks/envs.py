"""Environment factories: every task's environment has a flat float32 observation, actions in [-1, 1], a time
limit, `info["success"]` on every step, and returns the RAW reward of the task's dataset convention (the training
code applies the reward transform)."""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

# The U-maze with the start cell at the top-left end of the U and the goal at the bottom-left end: the agent
# must go around the wall (same layout as D4RL maze2d-umaze, but one fixed task).
UMAZE_FIXED = [[1, 1, 1, 1, 1], [1, "r", 0, 0, 1], [1, 1, 1, 0, 1], [1, "g", 0, 0, 1], [1, 1, 1, 1, 1]]


class TaskEnv(gym.Wrapper):
    """Flattens goal-conditioned observations, maps the reward to the dataset's convention and sets success.

    raw_reward(env_reward, info) -> reward; success(info, reward) -> bool.
    """

    def __init__(self, env: gym.Env, raw_reward: Callable, success: Callable, obs_keys: tuple[str, ...] | None):
        super().__init__(env)
        self._raw_reward, self._success, self._obs_keys = raw_reward, success, obs_keys
        obs, _ = env.reset(seed=0)
        size = self._flat(obs).shape[0]
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        low, high = env.action_space.low, env.action_space.high
        if not (np.allclose(low, -1) and np.allclose(high, 1)):
            raise ValueError(f"{env.spec.id if env.spec else env}: actions must lie in [-1, 1]; got [{low}, {high}]")
        self.action_space = gym.spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32)

    def _flat(self, obs) -> np.ndarray:
        if isinstance(obs, dict):
            obs = np.concatenate([np.asarray(obs[k], np.float32).ravel() for k in self._obs_keys])
        return np.asarray(obs, np.float32).ravel()

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        info["success"] = False
        return self._flat(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action, np.float32))
        reward = float(self._raw_reward(reward, info))
        info["success"] = bool(self._success(info, reward))
        return self._flat(obs), reward, terminated, truncated, info


def _make(env_id: str, max_steps: int, **kwargs) -> gym.Env:
    import gymnasium_robotics
    gym.register_envs(gymnasium_robotics)
    return gym.make(env_id, max_episode_steps=max_steps, **kwargs)


def pointmaze_umaze(max_steps: int) -> gym.Env:
    env = _make("PointMaze_UMaze-v3", max_steps, maze_map=UMAZE_FIXED, continuing_task=False,
                reward_type="sparse")
    return TaskEnv(env, lambda r, info: r, lambda info, r: info.get("success", False),
                   ("observation", "desired_goal"))


class ActionRepeat(gym.Wrapper):
    """Each action held for `repeat` simulation steps (stopping at the episode's end): one decision per `repeat`
    steps, the rewards summed, success if any of the steps succeeded."""

    def __init__(self, env: gym.Env, repeat: int):
        super().__init__(env)
        self.repeat = repeat

    def step(self, action):
        total, success = 0.0, False
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            success = success or bool(info.get("success", False))
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, {**info, "success": success}


def repeated(factory: Callable, repeat: int, max_steps: int) -> gym.Env:
    """`factory`'s environment with each action held for `repeat` steps; `max_steps` counts decisions."""
    return ActionRepeat(factory(max_steps * repeat), repeat)


def ogbench_singletask(env_id: str, max_steps: int, reward_offset: float = 0.0) -> gym.Env:
    """OGBench singletask envs reward -1 per step (or -(unsatisfied sub-goals)) and 0 on success."""
    import ogbench
    env = ogbench.make_env_and_datasets(env_id, env_only=True)
    env = gym.wrappers.TimeLimit(env.unwrapped, max_steps)
    return TaskEnv(env, lambda r, info: r + reward_offset, lambda info, r: info.get("success", False), None)


def ogbench_env_names(task_env_id: str) -> tuple[str, str]:
    """'cube-single-play-singletask-task1-v0' -> ('cube-single-v0', 'cube-single-singletask-task1-v0'): the
    goal-conditioned environment its data comes from and the singletask environment."""
    parts = task_env_id.split("-")
    if "singletask" not in parts:
        raise ValueError(f"{task_env_id!r} is not an OGBench singletask environment")
    pos = parts.index("singletask")
    return "-".join(parts[:pos - 1] + parts[-1:]), "-".join(parts[:pos - 1] + parts[pos:])


def ogbench_state_rewards(task_env_id: str, states: dict) -> tuple[np.ndarray, np.ndarray]:
    """(rewards, successes) of a singletask task at the states given by `qpos` (and `button_states`), by
    OGBench's own relabelling."""
    import ogbench  # noqa: F401  (registers the environments)
    from ogbench.relabel_utils import relabel_dataset
    name = ogbench_env_names(task_env_id)[1]
    states = dict(states)
    relabel_dataset(name, gym.make(name), states)
    return states["rewards"], states["masks"] == 0.0


def ogbench_transition_rewards(task_env_id: str, rows: dict) -> tuple[np.ndarray, np.ndarray]:
    """Rewards and masks of an OGBench dataset's transitions as the environment returns them online: its singletask
    environments score the state BEFORE the action (`success_timing='pre'`), so each row is scored at the state it
    starts from (`qpos`, `button_states`, the state of its observation), as `ogbench.relabel_dataset` does."""
    from wsrl.data.transitions import DataError
    if "qpos" not in rows:
        raise DataError(f"OGBench task {task_env_id}: the dataset has no 'qpos' to compute rewards from; use the "
                        f"npz files OGBench ships (they store qpos, qvel and button_states) or a file with rewards")
    rewards, successes = ogbench_state_rewards(task_env_id, {k: rows[k] for k in ("qpos", "button_states")
                                                             if k in rows})
    return rewards, 1.0 - successes.astype(np.float32)


class GoalDirection(gym.Wrapper):
    """OGBench's directional task for training the low-level agent of its ant mazes: a unit direction, redrawn
    every `interval` steps, is appended to the observation; the reward is the step's x-y displacement along it."""

    def __init__(self, env: gym.Env, interval: int = 100):
        super().__init__(env)
        self.interval, self.direction, self.steps = interval, np.zeros(2), 0
        size = env.observation_space.shape[0] + 2
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float64)

    def _draw(self) -> None:
        d = self.np_random.standard_normal(2)
        self.direction = d / np.linalg.norm(d)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._draw()
        self.steps = 0
        return np.concatenate([obs, self.direction]), info

    def step(self, action):
        before = self.unwrapped.data.qpos[:2].copy()
        obs, _, terminated, truncated, info = self.env.step(action)
        reward = float((self.unwrapped.data.qpos[:2] - before) @ self.direction)
        self.steps += 1
        if self.steps % self.interval == 0:
            self._draw()
        return np.concatenate([obs, self.direction]), reward, terminated, truncated, info


def ant_goal_direction(max_steps: int) -> gym.Env:
    import ogbench.online_locomotion  # noqa: F401  (registers online-ant-v0)
    env = GoalDirection(gym.make("online-ant-v0", max_episode_steps=max_steps))
    return TaskEnv(env, lambda r, info: r, lambda info, r: False, None)


def franka_kitchen(tasks: tuple[str, ...], max_steps: int) -> gym.Env:
    env = _make("FrankaKitchen-v1", max_steps, tasks_to_complete=list(tasks))
    # D4RL's kitchen reward: the number of the task's sub-goals completed so far (0..4).
    return TaskEnv(env, lambda r, info: len(info.get("episode_task_completions", [])),
                   lambda info, r: r >= len(tasks), ("observation",))


class EndOnSuccess(gym.Wrapper):
    """Terminates the episode at the first step with info["success"]: reaching the goal ends the task, as the
    paper's Adroit binary environments do (the authors' AdroitTerminalWrapper); values stay bounded by r_pos."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated or info["success"], truncated, info


def adroit_binary(env_id: str, max_steps: int) -> gym.Env:
    env = _make(env_id, max_steps)
    # The paper's binary Adroit reward: 0 when the goal is achieved, -1 otherwise.
    return EndOnSuccess(TaskEnv(env, lambda r, info: 0.0 if info.get("success", False) else -1.0,
                                lambda info, r: info.get("success", False), None))


# Per-step success flags of Adroit files: D4RL's infos/goal_achieved, gymnasium-robotics' info["success"] (Minari).
ADROIT_SUCCESS_FLAGS = ("goal_achieved", "success")


def rows_to_last_success(success, episode_ends) -> np.ndarray:
    """Boolean row mask: each episode's rows up to and including its LAST success; episodes that never succeed
    are dropped (a trajectory -1 -1 0 0 -1 keeps -1 -1 0 0)."""
    success, ends = np.asarray(success, bool), np.flatnonzero(episode_ends)
    keep = np.zeros(len(success), bool)
    for start, stop in zip(np.concatenate([[0], ends[:-1] + 1]), ends + 1):
        hits = np.flatnonzero(success[start:stop])
        if hits.size:
            keep[start:start + hits[-1] + 1] = True
    return keep


def adroit_binary_dataset(source: str, data, flags: dict):
    """The paper's offline Adroit binary data (`get_hand_dataset_with_mc_calculation`) from a D4RL or Minari
    adroit file: reward 0 where the file flags the goal achieved, -1 elsewhere (the file's dense rewards are
    ignored); only trajectories with a success, each cut after its last one; every success step is a terminal."""
    from wsrl.data.transitions import FIELDS, DataError, Transitions
    key = next((k for k in ADROIT_SUCCESS_FLAGS if k in flags), None)
    if key is None:
        raise DataError(f"{source}: no per-step success flags for the Adroit binary reward: it needs "
                        f"infos/goal_achieved (D4RL adroit HDF5) or the episode infos 'success' (Minari, as the "
                        f"AdroitHand envs report it); one-value-per-step infos found: {sorted(flags) or 'none'}. "
                        f"Use the D4RL or Minari file with its infos (collect with "
                        f"minari.DataCollector(..., record_infos=True))")
    success = np.asarray(flags[key])
    if not np.isin(success, (0, 1)).all():
        raise DataError(f"{source}: success flags '{key}' hold values other than 0/1 ({np.unique(success)[:5]})")
    keep = rows_to_last_success(success, data.episode_ends())
    if not keep.any():
        raise DataError(f"{source}: no trajectory reaches the goal ('{key}' is never set on a transition), so the "
                        f"Adroit binary data would be empty; use a dataset with successful episodes")
    done = success[keep].astype(bool)
    rows = {k: getattr(data, k)[keep] for k in FIELDS}
    return Transitions.from_arrays(source, **{**rows, "rewards": np.where(done, 0.0, -1.0), "terminals": done})


def locomotion(env_id: str, max_steps: int) -> gym.Env:
    env = gym.make(env_id, max_episode_steps=max_steps)
    return TaskEnv(env, lambda r, info: r, lambda info, r: False, None)
