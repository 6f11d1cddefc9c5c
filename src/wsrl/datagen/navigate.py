"""OGBench's own recipe for its point and ant maze data: the environment's oracle sub-goal (BFS over the maze
cells) gives a direction, a low-level controller follows it, with Gaussian action noise.

- point mazes: the action is the unit direction itself (no learning);
- ant mazes: a goal-direction ("ant-xy") agent acts on the ant's state without its x-y position, plus the
  direction; train one with `wsrl finetune --task ant-xy-v0 --method sac-fast` and pass its checkpoint.

`navigate` episodes (1,000 steps; 2,000 in the giant mazes) start in a random cell and head for a random junction
cell, with a new one each time it is reached; `stitch` episodes (200 steps) head for a cell 4 steps away and stay
there; `explore` episodes (500 steps, action noise 1.0) follow a random direction redrawn every 10 steps. Rewards are
those the singletask environment returns, which scores the state each transition starts from; `terminals` marks
a transition that starts solved while the trajectory goes on.
"""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

from wsrl.datagen.labels import episode_seed, global_numpy_seed, join_and_label
from wsrl.datagen.maze import distances_to
from wsrl.errors import ConfigError
from wsrl.datagen.partial import Resumable
from wsrl.tasks.envs import ogbench_env_names

EPISODE_STEPS = {"navigate": 1000, "stitch": 200, "explore": 500}
STITCH_CELLS = 4
EXPLORE_INTERVAL = 10  # steps between two random directions of an explore episode
DEFAULT_NOISE = {"point": 0.5, "ant": 0.2}
EXPLORE_NOISE = 1.0


def body_of(task_env_id: str) -> str:
    body = task_env_id.split("-")[0].removesuffix("maze")
    if body not in DEFAULT_NOISE:
        raise ConfigError(f"recipe 'navigate' covers OGBench point and ant mazes, not {task_env_id!r}")
    return body


def kind_of(task_env_id: str) -> str:
    """The dataset type a task name carries: stitch, explore or navigate."""
    return next((k for k in ("stitch", "explore") if f"-{k}-" in task_env_id), "navigate")


def episode_steps(task_env_id: str, kind: str) -> int:
    """OGBench's episode lengths: navigate episodes in the giant mazes are twice as long."""
    return 2 * EPISODE_STEPS[kind] if kind == "navigate" and "-giant-" in task_env_id else EPISODE_STEPS[kind]


def maze_cells(maze_map: np.ndarray) -> tuple[list, list]:
    """(every free cell, the free cells that are not the middle of a straight corridor)."""
    free = [(i, j) for i in range(maze_map.shape[0]) for j in range(maze_map.shape[1]) if maze_map[i, j] == 0]

    def corridor(i, j):
        up_down = maze_map[i - 1, j] == 0 and maze_map[i + 1, j] == 0 and maze_map[i, j - 1] == 1 and \
            maze_map[i, j + 1] == 1
        left_right = maze_map[i, j - 1] == 0 and maze_map[i, j + 1] == 0 and maze_map[i - 1, j] == 1 and \
            maze_map[i + 1, j] == 1
        return up_down or left_right
    return free, [c for c in free if not corridor(*c)]


def pick(cells: list, rng: np.random.Generator) -> tuple[int, int]:
    return tuple(int(v) for v in cells[rng.integers(len(cells))])


def episode_cells(kind: str, maze_map: np.ndarray, free: list, junctions: list, rng) -> tuple[tuple, tuple]:
    start = pick(free, rng)
    if kind in ("navigate", "explore"):  # (an explore episode's goal only sets the environment's task)
        return start, pick(junctions, rng)
    dist = distances_to((maze_map != 0).astype(int), start)
    ring = [c for c in free if dist[c] == STITCH_CELLS]
    return start, pick(ring, rng) if ring else start


def subgoal_direction(env) -> np.ndarray:
    u = env.unwrapped
    xy = u.get_xy()
    subgoal, _ = u.get_oracle_subgoal(xy, u.cur_goal_xy)
    d = np.asarray(subgoal - xy, np.float64)
    return d / (np.linalg.norm(d) + 1e-6)


def run_episode(env, low_level: Callable, kind: str, noise: float, steps: int, cells, rng, seed: int) -> dict:
    maze_map = env.unwrapped.maze_map
    start, goal = episode_cells(kind, maze_map, *cells, rng)
    obs, _ = env.reset(seed=seed, options={"task_info": {"init_ij": start, "goal_ij": goal}})
    rows = {k: [] for k in ("observations", "actions", "next_observations", "qpos", "qvel", "prev_qpos", "prev_qvel")}
    direction = None
    for step in range(steps):
        if kind != "explore":
            direction = subgoal_direction(env)
        elif step % EXPLORE_INTERVAL == 0:
            d = rng.standard_normal(2)
            direction = d / (np.linalg.norm(d) + 1e-6)
        state = env.unwrapped.get_ob(ob_type="states")
        action = np.asarray(low_level(state, direction, rng), np.float64)
        action = np.clip(action + noise * rng.standard_normal(action.shape), -1, 1)
        next_obs, _, _, _, info = env.step(action)
        if info["success"] and kind == "navigate":
            env.unwrapped.set_goal(pick(cells[1], rng))
        for key, value in (("observations", obs), ("actions", action), ("next_observations", next_obs),
                           ("qpos", info["qpos"]), ("qvel", info["qvel"]),  # the state it lands in and starts from
                           ("prev_qpos", info["prev_qpos"]), ("prev_qvel", info["prev_qvel"])):
            rows[key].append(value)
        obs = next_obs
    return {k: np.asarray(v, np.float32) for k, v in rows.items()}


def point_controller(state, direction, rng) -> np.ndarray:
    return direction


def ant_controller(policy_fn: Callable) -> Callable:
    """The goal-direction agent sees the ant's state without its x-y position, then the direction."""
    def act(state, direction, rng):
        return policy_fn(np.concatenate([state[2:], direction]).astype(np.float32), rng)
    return act


def collect(task_env_id: str, steps: int, seed: int, noise: float | None = None, policy_fn: Callable | None = None,
            resumable: Resumable | None = None) -> tuple[dict, float]:
    """`steps` transitions for an OGBench point / ant maze singletask task -> (arrays in D4RL layout with the next
    state's qpos / qvel and the starting state's prev_qpos / prev_qvel, the noise used). Ant mazes need
    `policy_fn(obs, rng)`, a goal-direction agent."""
    import ogbench.locomaze  # noqa: F401  (registers the environments)
    body = body_of(task_env_id)
    if body == "ant" and policy_fn is None:
        raise ConfigError("ant mazes need a goal-direction agent: pass policy_fn, or a --checkpoint (`wsrl "
                          "datagen` uses the shipped walker without one)")
    if body == "point" and policy_fn is not None:
        raise ConfigError("point mazes follow the sub-goal direction directly; they take no --checkpoint")
    low_level = point_controller if body == "point" else ant_controller(policy_fn)
    kind = kind_of(task_env_id)
    noise = (EXPLORE_NOISE if kind == "explore" else DEFAULT_NOISE[body]) if noise is None else noise
    with global_numpy_seed(seed):  # the maze draws its start noise from NumPy's global generator
        name = ogbench_env_names(task_env_id)[0]
        length = episode_steps(task_env_id, kind)
        env = gym.make(name, terminate_at_goal=False, max_episode_steps=length + 1)
        cells = maze_cells(env.unwrapped.maze_map)

        def next_episode(state, steps_left):
            episode = run_episode(env, low_level, kind, noise, min(length, steps_left), cells, state["rng"],
                                  episode_seed(seed, state["episode"], 0x0A7E))
            state["episode"] += 1
            return episode

        episodes = (resumable or Resumable()).episodes(next_episode, {"rng": np.random.default_rng(seed),
                                                                      "episode": 0}, steps)
        return join_and_label(episodes, task_env_id), noise
