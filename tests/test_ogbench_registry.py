"""OGBench tasks: the registry holds every flat-observation single-task environment OGBench registers, with each
dataset type OGBench publishes; the rows that existed before the table was derived are unchanged; one environment
per kind runs with the declared interface and reward convention; the recipes cover the new kinds."""

import dataclasses
import functools

import gymnasium as gym
import h5py
import numpy as np
import pytest

from wsrl.data.returns import RewardTransform
from wsrl.errors import ConfigError
from wsrl.tasks import envs, get_task
from wsrl.tasks.envs import ogbench_env_names
from wsrl.tasks.registry import TASKS

OGBENCH_ROWS = {name: task for name, task in TASKS.items() if "-singletask" in name}


def gym_singletask_ids() -> dict:
    import ogbench  # noqa: F401  (registers its environments)
    return {env_id: spec for env_id, spec in gym.registry.items()
            if "singletask" in env_id and not env_id.startswith("visual-")}


def test_registry_holds_exactly_the_flat_ogbench_singletask_environments():
    ids = gym_singletask_ids()
    assert len(ids) == 6 * 24  # 24 environments x (tasks 1..5 + the default-task alias)
    by_env = {}
    for name, task in OGBENCH_ROWS.items():
        env_id = ogbench_env_names(name)[1]
        assert env_id in ids and task.env_id == name
        assert task.max_episode_steps == ids[env_id].max_episode_steps
        by_env.setdefault(env_id, set()).add(name.split("-singletask")[0].rsplit("-", 1)[1])
    assert set(by_env) == set(ids)
    assert not any(name.startswith("visual-") for name in TASKS)
    # The dataset types OGBench publishes (explore only for the medium, large and teleport ant mazes); the two
    # environments without a published 1M dataset take their kind's types.
    kinds = {"pointmaze": {"navigate", "stitch"}, "antmaze": {"navigate", "stitch", "explore"},
             "humanoidmaze": {"navigate", "stitch"}, "antsoccer": {"navigate", "stitch"},
             "cube": {"play", "noisy"}, "scene": {"play", "noisy"}, "puzzle": {"play", "noisy"}}
    for env_id, types in by_env.items():
        expected = kinds[env_id.split("-")[0]] - ({"explore"} if env_id.startswith("antmaze-giant-") else set())
        assert types == expected, env_id
    counts = {}
    for task in OGBENCH_ROWS.values():
        counts[task.family] = counts.get(task.family, 0) + 1
    assert counts == {"pointmaze": 48, "antmaze": 66, "humanoidmaze": 48, "antsoccer": 24, "manipulation": 120}


def test_row_fields_per_kind():
    for name, task in OGBENCH_ROWS.items():
        assert task.metric == "success" and (task.ref_min_return, task.ref_max_return) == (0.0, 1.0)
        assert task.factory.func is envs.ogbench_singletask and task.factory.args == (name,)
        assert task.reward_fn.func is envs.ogbench_transition_rewards and task.reward_fn.args == (name,)
        if task.family == "manipulation":
            assert (task.reward_transform, task.sparse_negative_reward, task.preset) == (RewardTransform(), None,
                                                                                         "kitchen")
            assert task.datagen_recipe == "oracle"
        else:
            assert (task.reward_transform, task.sparse_negative_reward, task.preset) == (RewardTransform(10.0, 5.0),
                                                                                         -5.0, "antmaze")
            assert task.datagen_recipe == ("navigate" if task.family in ("pointmaze", "antmaze") else None)
            assert task.datagen_policy == ("ant-xy-walker" if task.family == "antmaze" else None)
            assert task.datagen_recipe or "--dataset" in task.dataset_hint
    assert get_task("cube-octuple-play-singletask-task3-v0").max_episode_steps == 1500
    assert get_task("humanoidmaze-giant-stitch-singletask-task2-v0").max_episode_steps == 4000
    assert "humanoid goal-direction agent" in get_task("humanoidmaze-large-navigate-singletask-v0").dataset_hint
    ant_hint = get_task("antmaze-giant-stitch-singletask-task5-v0").dataset_hint
    assert ant_hint.startswith("Generate it: `wsrl datagen --task antmaze-giant-stitch-singletask-task5-v0 --recipe "
                               "navigate`") and "shipped ant walker" in ant_hint


def _old_ogbench_rows() -> list:
    """The hand-written OGBench rows the registry had before it was derived from OGBench's registration."""
    from wsrl.tasks.registry import OGBENCH_NPZ, Task
    maze = dict(max_episode_steps=1000, reward_transform=RewardTransform(10.0, 5.0), sparse_negative_reward=-5.0,
                metric="success", ref_min_return=0.0, ref_max_return=1.0, preset="antmaze")
    rows = []
    for size in ("medium", "large"):
        for kind in ("navigate", "stitch"):
            for i in range(1, 6):
                env_id = f"pointmaze-{size}-{kind}-singletask-task{i}-v0"
                rows.append(Task(name=env_id, family="pointmaze", env_id=env_id,
                                 factory=functools.partial(envs.ogbench_singletask, env_id), **maze,
                                 datagen_recipe="navigate", source_hint=OGBENCH_NPZ,
                                 reward_fn=functools.partial(envs.ogbench_transition_rewards, env_id)))
        for i in range(1, 6):
            env_id = f"antmaze-{size}-navigate-singletask-task{i}-v0"
            rows.append(Task(name=env_id, family="antmaze", env_id=env_id,
                             factory=functools.partial(envs.ogbench_singletask, env_id), **maze,
                             datagen_recipe="navigate", datagen_policy="ant-xy-walker",  # (no recipe before the walker)
                             source_hint="Generated with the shipped ant walker, or with your own ant-xy-v0 agent: "
                                         "--checkpoint RUN/checkpoint. " + OGBENCH_NPZ,
                             reward_fn=functools.partial(envs.ogbench_transition_rewards, env_id)))
    for scene, horizon in (("cube-single-play", 200), ("scene-play", 750), ("puzzle-3x3-play", 500)):
        for i in range(1, 6):
            env_id = f"{scene}-singletask-task{i}-v0"
            rows.append(Task(name=env_id, family="manipulation", env_id=env_id,
                             factory=functools.partial(envs.ogbench_singletask, env_id), max_episode_steps=horizon,
                             reward_transform=RewardTransform(), sparse_negative_reward=None, metric="success",
                             ref_min_return=0.0, ref_max_return=1.0, preset="kitchen", datagen_recipe="oracle",
                             source_hint=OGBENCH_NPZ,
                             reward_fn=functools.partial(envs.ogbench_transition_rewards, env_id)))
    return rows


def _fields(task) -> dict:
    def plain(value):
        return (value.func, value.args, value.keywords) if isinstance(value, functools.partial) else value
    return {f.name: plain(getattr(task, f.name)) for f in dataclasses.fields(task)}


def test_rows_from_before_the_derived_table_are_unchanged():
    old = _old_ogbench_rows()
    assert len(old) == 45
    for row in old:
        assert _fields(TASKS[row.name]) == _fields(row), row.name
    # The D4RL-named ant mazes still map to OGBench's task 1 with the {0, 1} rewards of D4RL.
    task = get_task("antmaze-large-diverse-v2")
    assert task.env_id == "antmaze-large-navigate-singletask-task1-v0" and task.factory.keywords == {
        "reward_offset": 1.0} and task.reward_transform == RewardTransform(10.0, -5.0)


def _to_goal(env) -> None:
    """Puts the maze walker (the ball, in ant soccer) on the task's goal."""
    u = env.unwrapped
    goal = np.asarray(u.cur_goal_xy, np.float64)
    if hasattr(u, "set_agent_ball_xy"):
        u.set_agent_ball_xy(goal + np.array([1.5, 0.0]), goal)
    else:
        u.set_xy(goal)


@pytest.mark.parametrize("name", [
    "pointmaze-giant-navigate-singletask-task1-v0",
    "pointmaze-teleport-stitch-singletask-v0",  # the default-task alias (task 1)
    "antmaze-teleport-explore-singletask-task1-v0",
    "humanoidmaze-medium-navigate-singletask-task1-v0",
    "antsoccer-arena-navigate-singletask-task1-v0",
    "cube-double-play-singletask-task1-v0",
    "puzzle-4x4-play-singletask-task1-v0",
])
def test_one_environment_per_kind_has_the_interface_and_the_reward_convention(name):
    task = get_task(name)
    env = task.make_env(seed=0)
    obs, info = env.reset(seed=0)
    assert obs.ndim == 1 and obs.dtype == np.float32 and obs.shape == env.observation_space.shape
    assert info["success"] is False
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    rewards, states = [], {"qpos": [], "button_states": []}
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs.dtype == np.float32 and isinstance(info["success"], bool) and not truncated
        rewards.append(reward)
        states["qpos"].append(info["prev_qpos"])
        states["button_states"].append(info.get("prev_button_states", 0))
    if task.family == "manipulation":  # -(sub-goals not yet satisfied)
        assert all(r == int(r) and r < 0 for r in rewards)
    else:
        assert set(rewards) == {-1.0}
        assert task.reward_transform(np.array([-1.0, 0.0])).tolist() == [task.sparse_negative_reward, 5.0]
    # The rewards computed from the states (what an OGBench file gets) are the environment's.
    if "button_states" not in info:
        del states["button_states"]
    offline, masks = task.reward_fn({k: np.asarray(v) for k, v in states.items()})
    assert offline.tolist() == rewards and (masks == 1.0).all()
    if task.family != "manipulation":  # on the goal: the next step pays 0, succeeds and ends the episode
        _to_goal(env)
        _, reward, terminated, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
        assert (reward, terminated, info["success"]) == (0.0, True, True)


def test_oracle_recipe_writes_data_for_the_new_manipulation_kinds(tmp_path, monkeypatch):
    from wsrl import datagen
    from wsrl.datagen import oracle
    monkeypatch.setattr(datagen, "REFERENCE_EPISODES", 1)  # one reference episode of the random policy
    name = "puzzle-4x4-noisy-singletask-task1-v0"
    path = datagen.generate("oracle", name, tmp_path / "p.hdf5", steps=300, seed=0, progress=False, kind="noisy")
    with h5py.File(path) as f:
        assert f["observations"].shape == (300, 83) and f["actions"].shape == (300, 5)
        assert f["rewards"].shape == f["terminals"].shape == (300,) and f["infos/next_button_states"].shape == (300, 16)
        rewards = f["rewards"][()]
    assert set(np.unique(rewards)) <= set(range(-16, 1))
    assert oracle.random_action_probability("puzzle-4x4-v0", "noisy") == 0.2
    assert oracle.random_action_probability("cube-triple-v0", "noisy") == 0.1
    assert oracle.random_action_probability("cube-triple-v0", "play") == 0.0


def test_navigate_recipe_episode_lengths_and_explore_data():
    from wsrl.datagen import navigate
    assert navigate.episode_steps("pointmaze-giant-navigate-singletask-task1-v0", "navigate") == 2000
    assert navigate.episode_steps("pointmaze-giant-stitch-singletask-task1-v0", "stitch") == 200
    assert navigate.kind_of("antmaze-large-explore-singletask-task2-v0") == "explore"
    # Explore: 500-step episodes, action noise 1.0, one random direction per 10 steps (the walker here repeats it).
    walker = lambda obs, rng: np.concatenate([obs[-2:], obs[-2:], obs[-2:], obs[-2:]])  # noqa: E731
    arrays, noise = navigate.collect("antmaze-medium-explore-singletask-task1-v0", 520, seed=0, policy_fn=walker,
                                     noise=0.0)
    assert arrays["observations"].shape == (520, 29) and np.flatnonzero(arrays["timeouts"]).tolist() == [499, 519]
    directions = arrays["actions"][:500, :2].reshape(50, 10, 2)
    assert np.allclose(directions, directions[:, :1]) and not np.allclose(directions[0, 0], directions[1, 0])
    with pytest.raises(ConfigError, match="point and ant mazes"):
        navigate.collect("humanoidmaze-medium-navigate-singletask-task1-v0", 10, seed=0)
