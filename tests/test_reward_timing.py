"""Offline labels of OGBench singletask tasks are what the environment returns online for the same transition.
Its singletask environments score the state BEFORE the action (`success_timing='pre'`): the step that lands on
the goal pays -1 and goes on; the next one, starting there, pays 0 and ends the episode."""

import gymnasium as gym
import numpy as np

from wsrl.data.loaders import load_dataset
from wsrl.datagen import navigate
from wsrl.datagen.labels import global_numpy_seed, join_and_label
from wsrl.tasks import get_task
from wsrl.tasks.envs import ogbench_env_names

TASK = "pointmaze-medium-navigate-singletask-task1-v0"
STEPS = 40  # the point moves 0.2 per step: about 15 steps from the next cell's centre into the goal


def goal_cell(task) -> tuple[int, int]:
    env = task.make_env(seed=0)
    return tuple(env.unwrapped.cur_task_info["goal_ij"])


def recipe_episode(task) -> dict:
    """One episode of the navigate recipe, without noise, from a cell next to the task's goal cell to that cell:
    its rows as the recipe stores them."""
    import ogbench.locomaze  # noqa: F401  (registers the mazes)
    env = gym.make(ogbench_env_names(task.env_id)[0], terminate_at_goal=False, max_episode_steps=STEPS + 1)
    (i, j), maze = goal_cell(task), env.unwrapped.maze_map
    start = next(c for c in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)) if maze[c] == 0)
    with global_numpy_seed(0):  # the maze draws its start noise from NumPy's global generator
        return navigate.run_episode(env, navigate.point_controller, "navigate", 0.0, STEPS, ([start], [(i, j)]),
                                    np.random.default_rng(0), seed=0)


def environment_steps(task, rows: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rewards, terminated, success, observations) the task's environment returns stepping the rows' actions from
    the rows' first state, until its episode ends."""
    env = task.make_env(seed=0)
    env.unwrapped.set_state(rows["prev_qpos"][0].astype(np.float64), rows["prev_qvel"][0].astype(np.float64))
    out = []
    for action in rows["actions"]:
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((reward, terminated, info["success"], obs))
        if terminated or truncated:
            break
    rewards, terminated, success, obs = zip(*out)
    return np.array(rewards), np.array(terminated), np.array(success), np.array(obs)


def test_the_environment_pays_the_goal_one_step_after_landing_on_it():
    task = get_task(TASK)
    rows = recipe_episode(task)
    rewards, terminated, success, obs = environment_steps(task, rows)
    n = len(rewards)
    np.testing.assert_allclose(obs, rows["next_observations"][:n], atol=1e-4)  # the recipe's trajectory
    assert 2 <= n < STEPS and terminated[-1] and not terminated[:-1].any()
    assert rewards[-1] == 0.0 and (rewards[:-1] == -1.0).all()
    np.testing.assert_array_equal(success, rewards == 0.0)  # the wrapper's success flag agrees with the reward
    env = task.make_env(seed=0)
    goal, tol = np.asarray(env.unwrapped.cur_goal_xy), env.unwrapped._goal_tol
    inside = np.linalg.norm(rows["qpos"][:n, :2] - goal, axis=1) <= tol  # the state each step lands in
    assert inside[n - 2] and not inside[:n - 2].any()  # the step that lands on the goal still pays -1


def test_navigate_recipe_labels_are_what_the_environment_returns():
    task = get_task(TASK)
    rows = recipe_episode(task)
    rewards, terminated, success, _ = environment_steps(task, rows)
    n = len(rewards)
    labels = join_and_label([rows], task.env_id)
    np.testing.assert_array_equal(labels["rewards"][:n], rewards)
    np.testing.assert_array_equal(labels["terminals"][:n], terminated)
    np.testing.assert_array_equal(labels["success"][:n], success)


def test_ogbench_npz_labels_are_what_the_environment_returns(tmp_path):
    """The same trajectory in OGBench's two npz layouts (the simulator state of each observation, as OGBench's
    data scripts store it), labelled by the task's reward function."""
    task = get_task(TASK)
    rows = recipe_episode(task)
    rewards, terminated, _, _ = environment_steps(task, rows)
    n = len(rewards)
    last = np.zeros(STEPS + 1, np.float32)
    last[-1] = 1
    compact = dict(observations=np.concatenate([rows["observations"], rows["next_observations"][-1:]]),
                   actions=np.concatenate([rows["actions"], np.zeros((1, 2), np.float32)]), terminals=last,
                   **{k: np.concatenate([rows[f"prev_{k}"], rows[k][-1:]]) for k in ("qpos", "qvel")})
    regular = dict(observations=rows["observations"], actions=rows["actions"],
                   next_observations=rows["next_observations"], terminals=last[1:], qpos=rows["prev_qpos"],
                   qvel=rows["prev_qvel"])
    for name, arrays in (("compact", compact), ("regular", regular)):
        np.savez(tmp_path / f"{name}.npz", **arrays)
        data = load_dataset(tmp_path / f"{name}.npz", reward_fn=task.reward_fn)
        assert len(data) == STEPS
        np.testing.assert_array_equal(data.rewards[:n], rewards)
        np.testing.assert_array_equal(data.terminals[:n], terminated)


def test_navigate_recipe_repeats_for_a_seed():
    """The maze's start noise comes from NumPy's global generator; the recipe seeds it, so a seed gives the same
    data (and leaves the caller's generator as it was)."""
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first, _ = navigate.collect(TASK, 120, seed=4)
    second, _ = navigate.collect(TASK, 120, seed=4)
    for key in ("observations", "actions", "rewards"):
        np.testing.assert_array_equal(first[key], second[key])
    np.testing.assert_array_equal(np.random.get_state()[1], before)
