"""Task registry: names, environments, reward conventions, scores."""

import numpy as np
import pytest

from wsrl.errors import ConfigError
from wsrl.tasks import get_task, list_tasks, normalized_score
from wsrl.tasks.registry import TASKS


def test_every_task_resolves_with_a_preset_and_a_way_to_get_data():
    from wsrl.config import PRESETS
    assert len(TASKS) > 60
    for task in list_tasks():
        assert task.preset in PRESETS and task.metric in ("success", "final_reward", "normalized_return")
        assert str(task.dataset_path).endswith(f"{task.name}.hdf5") and task.dataset_hint
    for name in ("antmaze-large-diverse-v2", "kitchen-partial-v0", "relocate-binary-v0", "hopper-medium-v2",
                 "pointmaze-umaze-v0", "cube-single-play-singletask-task1-v0"):
        assert get_task(name).name == name


def test_misspelt_task_gets_suggestions():
    with pytest.raises(ConfigError, match="Did you mean 'kitchen-partial-v0'"):
        get_task("kitchen-partal-v0")


@pytest.mark.parametrize("name, obs_dim, act_dim", [
    ("pointmaze-umaze-v0", 6, 2),
    ("pointmaze-umaze-repeat4-v0", 6, 2),
    ("pointmaze-medium-navigate-singletask-task1-v0", 2, 2),
    ("antmaze-medium-play-v2", 29, 8),
    ("hopper-medium-v2", 11, 3),
    ("relocate-binary-v0", 39, 30),
])
def test_local_environments_have_the_declared_interface(name, obs_dim, act_dim):
    env = get_task(name).make_env(seed=0)
    obs, info = env.reset(seed=0)
    assert obs.shape == (obs_dim,) and obs.dtype == np.float32 and info["success"] is False
    assert env.action_space.shape == (act_dim,) and env.action_space.low.min() == -1.0
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs.shape == (obs_dim,) and isinstance(info["success"], bool) and np.isfinite(reward)


def test_pointmaze_umaze_rewards_only_at_the_goal_and_terminates_there():
    task = get_task("pointmaze-umaze-v0")
    env = task.make_env(seed=0)
    obs, _ = env.reset(seed=0)
    goal = obs[4:6]
    assert np.linalg.norm(obs[:2] - goal) > 1.5  # the start is at the other end of the U
    _, reward, terminated, _, info = env.step(np.zeros(2, np.float32))
    assert reward == 0.0 and not terminated and not info["success"]
    # Put the ball on the goal: the next step pays 1, succeeds and ends the episode.
    point = env.unwrapped.point_env
    qpos = point.data.qpos.copy()
    qpos[:2] = goal
    point.set_state(qpos, np.zeros_like(point.data.qvel))
    _, reward, terminated, _, info = env.step(np.zeros(2, np.float32))
    assert reward == 1.0 and terminated and info["success"]
    assert task.reward_transform(np.array([0.0, 1.0])).tolist() == [-5.0, 5.0]
    assert task.max_episode_steps == 300 and task.sparse_negative_reward == -5.0


def test_repeated_maze_holds_each_action_for_four_simulation_steps():
    """One decision of pointmaze-umaze-repeat4-v0 equals four steps of pointmaze-umaze-v0 with that action; 75
    decisions are the 300-step time limit; reaching the goal inside a decision pays 1 and ends the episode."""
    repeated, base = get_task("pointmaze-umaze-repeat4-v0").make_env(3), get_task("pointmaze-umaze-v0").make_env(3)
    obs, _ = repeated.reset(seed=3)
    ref_obs, _ = base.reset(seed=3)
    assert np.array_equal(obs, ref_obs)
    rng = np.random.default_rng(0)
    for decision in range(75):
        action = rng.uniform(-1, 1, 2).astype(np.float32)
        obs, reward, terminated, truncated, _ = repeated.step(action)
        ref_reward = 0.0
        for _ in range(4):
            ref_obs, r, ref_terminated, ref_truncated, _ = base.step(action)
            ref_reward += r
        assert np.array_equal(obs, ref_obs) and reward == ref_reward
        assert (terminated, truncated) == (ref_terminated, ref_truncated) == (False, decision == 74)
    env = get_task("pointmaze-umaze-repeat4-v0").make_env(0)
    obs, _ = env.reset(seed=0)
    point = env.unwrapped.point_env
    qpos = point.data.qpos.copy()
    qpos[:2] = obs[4:6]
    point.set_state(qpos, np.zeros_like(point.data.qvel))
    _, reward, terminated, _, info = env.step(np.zeros(2, np.float32))
    assert reward == 1.0 and terminated and info["success"]


def test_normalized_scores():
    assert normalized_score(get_task("pointmaze-umaze-v0"), [0, 1], [False, True]) == 50.0
    hopper = get_task("hopper-medium-v2")  # D4RL refs -20.272305 / 3234.3
    assert normalized_score(hopper, [1607.0138], [False]) == pytest.approx(50.0, abs=1e-3)
    kitchen = get_task("kitchen-mixed-v0")  # the sub-tasks done at the end of each episode, not the return
    assert normalized_score(kitchen, [400.0, 650.0], [False, False], [2.0, 3.0]) == pytest.approx(62.5)
    with pytest.raises(ValueError, match="final_rewards"):
        normalized_score(kitchen, [400.0, 650.0], [False, False])
