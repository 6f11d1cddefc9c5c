"""Local dataset generation: the scripted maze planner reaches the goal, files load back, runs repeat."""

import json

import h5py
import numpy as np
import pytest

from wsrl.data.loaders import load_dataset
from wsrl.datagen import episode_stats, generate, make_policy, rollout
from wsrl.errors import ConfigError
from wsrl.tasks import get_task

TASK = "pointmaze-umaze-v0"


@pytest.mark.parametrize("noise, minimum", [(0.0, 0.95), (0.5, 0.8)])
def test_planner_reaches_the_goal(noise, minimum):
    task = get_task(TASK)
    env = task.make_env(seed=0)
    policy, _ = make_policy("maze-planner", task, env, noise, None, goal_fraction=1.0)
    arrays = rollout(env, policy, 20 * task.max_episode_steps, seed=1)
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    _, success = episode_stats(arrays)
    assert len(ends) >= 20 and success >= minimum


def test_generated_file_loads_back_and_records_how_to_repeat_it(tmp_path):
    path = generate("maze-planner", TASK, tmp_path / "d.hdf5", steps=2_000, seed=3, progress=False)
    data = load_dataset(path)
    assert len(data) == 2_000 and data.obs_dim == 6 and data.act_dim == 2
    assert set(np.unique(data.rewards)) <= {0.0, 1.0}  # raw rewards: the transform is applied at training time
    with h5py.File(path) as f:
        meta = dict(f.attrs)
        success = f["infos/success"][()]
    assert meta["command"] == "wsrl datagen --task pointmaze-umaze-v0 --recipe maze-planner --steps 2000 --seed 3 " \
                              "--noise 0.5"
    assert meta["ref_random_success"] < meta["ref_generator_success"] <= 1.0
    assert "jax" in json.loads(meta["versions"]) and meta["git_commit"]
    assert success.sum() == (data.rewards == 1.0).sum()


def test_same_seed_same_data(tmp_path):
    a = load_dataset(generate("maze-planner", TASK, tmp_path / "a.hdf5", steps=500, seed=7, progress=False))
    b = load_dataset(generate("maze-planner", TASK, tmp_path / "b.hdf5", steps=500, seed=7, progress=False))
    c = load_dataset(generate("maze-planner", TASK, tmp_path / "c.hdf5", steps=500, seed=8, progress=False))
    assert np.array_equal(a.observations, b.observations) and np.array_equal(a.actions, b.actions)
    assert not np.array_equal(a.observations, c.observations)


def test_random_and_policy_recipes(tmp_path):
    data = load_dataset(generate("random", "hopper-random-local-v5", tmp_path / "r.hdf5", steps=300, seed=0,
                                 progress=False))
    assert data.obs_dim == 11 and np.abs(data.actions).max() <= 1.0
    constant = lambda obs, rng: np.full(2, 0.5, np.float32)  # noqa: E731
    data = load_dataset(generate("policy", TASK, tmp_path / "p.hdf5", steps=200, seed=0, noise=0.0,
                                 progress=False, policy_fn=constant))
    np.testing.assert_allclose(data.actions, 0.5, atol=1e-5)


def test_bad_requests_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown recipe"):
        generate("planner", TASK, tmp_path / "x.hdf5", steps=10, progress=False)
    with pytest.raises(ConfigError, match="point maze"):
        generate("maze-planner", "hopper-random-local-v5", tmp_path / "x.hdf5", steps=10, progress=False)
    with pytest.raises(ConfigError, match="--checkpoint"):
        generate("policy", TASK, tmp_path / "x.hdf5", steps=10, progress=False)
    assert not (tmp_path / "x.hdf5").exists()


def test_minari_output_loads_back(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    path = generate("maze-planner", TASK, "wsrl/umaze-test-v0", steps=700, seed=2, fmt="minari", progress=False)
    assert path.exists()
    from_minari = load_dataset("wsrl/umaze-test-v0")
    from_hdf5 = load_dataset(generate("maze-planner", TASK, tmp_path / "same.hdf5", steps=700, seed=2,
                                      progress=False))
    np.testing.assert_allclose(from_minari.observations, from_hdf5.observations, rtol=1e-6)
    np.testing.assert_allclose(from_minari.rewards, from_hdf5.rewards)


# ---- OGBench manipulation oracles ------------------------------------------------------------------------------

CUBE = "cube-single-play-singletask-task1-v0"


def cube_height(arrays) -> np.ndarray:
    return arrays["qpos"][:, 16]  # the cube's free joint: x, y, z at qpos[14:17]


@pytest.mark.parametrize("kind", ["play", "noisy"])
def test_oracle_picks_up_and_moves_the_cube(kind):
    from wsrl.datagen import oracle
    arrays, _ = oracle.collect(get_task(CUBE).env_id, 1_000, seed=0, kind=kind)
    rest = cube_height(arrays)[:5].min()  # the cube starts on the table
    assert (cube_height(arrays) > rest + 0.03).mean() > 0.1  # lifted for a good part of the episode
    assert np.ptp(arrays["qpos"][:, 14:16], axis=0).min() > 0.1  # and carried around the table
    assert arrays["timeouts"].sum() == 1 and arrays["timeouts"][-1]
    env, rng, heights = get_task(CUBE).make_env(0), np.random.default_rng(0), []  # uniform random actions:
    for _ in range(200):                                                        # the cube stays on the table
        heights.append(env.step(rng.uniform(-1, 1, 5).astype(np.float32))[4]["qpos"][16])
    assert max(heights) < heights[0] + 0.03


def test_oracle_rewards_are_what_the_environment_returns_online():
    """Every reward level seen in puzzle play data equals the singletask environment's own reward for that row's
    step: the environment scores the state the step starts from."""
    from wsrl.datagen import oracle
    task = get_task("puzzle-3x3-play-singletask-task1-v0")
    arrays, _ = oracle.collect(task.env_id, 1_000, seed=0)
    levels = np.unique(arrays["rewards"])
    assert len(levels) >= 4  # the oracle presses buttons: several numbers of lit buttons
    env = task.make_env(0)
    for level in levels:
        i = int(np.flatnonzero(arrays["rewards"] == level)[0])
        env.reset(seed=0)
        env.unwrapped.set_state(arrays["prev_qpos"][i], arrays["prev_qvel"][i], arrays["prev_button_states"][i])
        _, reward, _, _, _ = env.step(arrays["actions"][i])
        assert reward == level


def test_oracle_dataset_file_repeats_for_a_seed(tmp_path):
    a = generate("oracle", CUBE, tmp_path / "a.hdf5", steps=600, seed=4, progress=False, kind="noisy")
    b = generate("oracle", CUBE, tmp_path / "b.hdf5", steps=600, seed=4, progress=False, kind="noisy")
    with h5py.File(a) as f:
        command, next_qpos = f.attrs["command"], f["infos/next_qpos"][()]
    assert command == f"wsrl datagen --task {CUBE} --recipe oracle --steps 600 --seed 4 --noise 0.1 --oracle noisy"
    da, db = load_dataset(a), load_dataset(b)
    assert len(da) == 600 and da.obs_dim == 28 and da.act_dim == 5 and next_qpos.shape == (600, 21)
    np.testing.assert_array_equal(da.actions, db.actions)
    np.testing.assert_array_equal(da.observations, db.observations)
    with pytest.raises(ConfigError, match="manipulation"):
        generate("oracle", TASK, tmp_path / "c.hdf5", steps=10, progress=False)


def test_ogbench_npz_of_a_singletask_task_gets_the_environments_rewards(tmp_path):
    """An OGBench-format file (reward-free, one extra observation per trajectory, the simulator state of each
    observation) loads with the rewards the environment gives for each transition, the recipe's labels."""
    from wsrl.datagen import oracle
    from wsrl.train.common import load_training_data
    task = get_task("puzzle-3x3-play-singletask-task1-v0")
    arrays, _ = oracle.collect(task.env_id, 300, seed=1)
    states = {k: np.concatenate([arrays[f"prev_{k}"], arrays[k][-1:]]) for k in ("qpos", "qvel", "button_states")}
    np.savez_compressed(tmp_path / "puzzle-3x3-play-v0.npz",
                        observations=np.concatenate([arrays["observations"], arrays["next_observations"][-1:]]),
                        actions=np.concatenate([arrays["actions"], np.zeros((1, 5), np.float32)]),
                        terminals=np.float32([0] * 300 + [1]), **states)
    data = load_training_data(task, str(tmp_path / "puzzle-3x3-play-v0.npz"), 55, 5, 0.99)
    np.testing.assert_array_equal(data.rewards, arrays["rewards"])
    np.testing.assert_array_equal(data.next_observations, arrays["next_observations"])


# ---- OGBench maze recipe ---------------------------------------------------------------------------------------

def test_navigate_follows_the_oracle_sub_goals_to_the_goal():
    """Stitch episodes head for a cell 4 steps away and stay: with the sub-goal direction as action they end there;
    with random directions they do not."""
    import gymnasium as gym
    import ogbench.locomaze  # noqa: F401  (registers the mazes)

    from wsrl.datagen import navigate
    env = gym.make("pointmaze-large-v0", terminate_at_goal=False, max_episode_steps=201)
    cells, rng = navigate.maze_cells(env.unwrapped.maze_map), np.random.default_rng(0)
    assert (1, 1) in cells[1] and len(cells[1]) < len(cells[0])  # junctions are a subset of the free cells

    def final_distance(controller):
        navigate.run_episode(env, controller, "stitch", 0.5, 200, cells, rng, seed=int(rng.integers(1 << 30)))
        u = env.unwrapped
        return np.linalg.norm(u.get_xy() - u.cur_goal_xy)

    def random_direction(state, direction, rng):
        return rng.uniform(-1, 1, 2)

    # Cells are 4 units wide; with N(0, 0.5) noise on a unit action the point jitters about 1 unit around the goal.
    assert all(final_distance(navigate.point_controller) < 2.0 for _ in range(10))
    assert np.mean([final_distance(random_direction) < 2.0 for _ in range(10)]) <= 0.2


def test_point_maze_dataset_file_trains_its_task(tmp_path):
    from wsrl.train.common import load_training_data
    task = get_task("pointmaze-medium-navigate-singletask-task1-v0")
    path = generate("navigate", task.name, tmp_path / "pm.hdf5", steps=2_500, seed=0, progress=False)
    with h5py.File(path) as f:
        assert f.attrs["command"].endswith("--recipe navigate --steps 2500 --seed 0 --noise 0.5")
    data = load_training_data(task, str(path), 2, 2, 0.99)
    assert len(data) == 2_500 and set(np.unique(data.rewards)) <= {-5.0, 5.0}  # the antmaze transform
    assert np.abs(data.actions).max() <= 1.0
    with pytest.raises(ConfigError, match="no --checkpoint|take no"):
        generate("navigate", task.name, tmp_path / "x.hdf5", steps=10, progress=False,
                 policy_fn=lambda obs, rng: np.zeros(2))


def test_ant_maze_dataset_walked_by_the_shipped_walker(tmp_path):
    """The ant-maze recipe without --checkpoint: the shipped goal-direction walker (trained here on ant-xy-v0)
    follows the planner's directions across the maze, and the file's command names it."""
    task = "antmaze-medium-navigate-singletask-task1-v0"
    path = generate("navigate", task, tmp_path / "ant.hdf5", steps=300, seed=1, progress=False)
    data = load_dataset(path)
    assert len(data) == 300 and data.obs_dim == 29 and data.act_dim == 8
    with h5py.File(path) as f:
        command, shipped, xy = f.attrs["command"], f.attrs["shipped_policy"], f["infos/next_qpos"][:, :2]
    # the shipped walker is the task's default: the command repeats on any machine without naming a path
    assert command == f"wsrl datagen --task {task} --recipe navigate --steps 300 --seed 1 --noise 0.2"
    assert shipped == "ant-xy-walker"
    # It walks: farthest from its start within 300 steps, on seeds 1-3, the walker got 12.6-21.3 m, the same
    # network untrained 1.3-2.8 m.
    assert np.linalg.norm(xy - xy[0], axis=1).max() > 8.0


@pytest.mark.parametrize("body, medium_return", [("halfcheetah", 2500), ("walker2d", 500), ("hopper", 300)])
def test_locomotion_medium_data_from_the_shipped_medium_policy(tmp_path, body, medium_return):
    """<body>-medium-local-v5 rolls out the shipped medium policy (trained here to about a third of expert return)
    without --checkpoint; the recipe refuses a task with no shipped policy without --checkpoint, and the
    medium-replay task says how its data is made."""
    task = f"{body}-medium-local-v5"
    path = generate("policy", task, tmp_path / "m.hdf5", steps=1000, seed=0, progress=False)
    with h5py.File(path) as f:
        meta = dict(f.attrs)
    assert meta["command"].endswith("--recipe policy --steps 1000 --seed 0 --noise 0.1")
    assert meta["shipped_policy"] == f"{body}-medium"
    # episodes of up to 1,000 steps with action noise 0.1: a medium return, far above a random policy's (HalfCheetah
    # about -280; Walker2d and Hopper a few dozen: they fall within a few dozen steps)
    assert meta["ref_generator_return"] > medium_return and meta["ref_random_return"] < 100
    random_task = get_task(f"{body}-random-local-v5")
    assert random_task.datagen_policy is None
    with pytest.raises(ConfigError, match="pass --checkpoint"):
        generate("policy", random_task.name, tmp_path / "r.hdf5", steps=10, progress=False)
    replay = get_task(f"{body}-medium-replay-local-v5")
    assert replay.datagen_recipe is None and "--save-replay" in replay.dataset_hint


@pytest.mark.parametrize("recipe, task, steps", [
    ("maze-planner", TASK, 1500),  # a step-driven rollout (also the random and policy recipes)
    ("navigate", "pointmaze-medium-navigate-singletask-task1-v0", 1100),  # episodes of 1,000 steps
    ("oracle", "cube-single-play-singletask-task1-v0", 1100),
])
def test_a_killed_generation_resumes_to_the_same_dataset(tmp_path, monkeypatch, recipe, task, steps):
    from wsrl.datagen import partial
    from wsrl.datagen.partial import partial_path
    from wsrl.sweep.plan import Job
    whole = generate(recipe, task, tmp_path / "whole.hdf5", steps=steps, seed=3, progress=False)
    monkeypatch.setattr(partial, "SAVE_SECONDS", 0.0)  # save after every episode
    real_save, saves = partial.Resumable._save, []

    def killed_after_the_first_save(self, *args):
        real_save(self, *args)
        saves.append(args[-1])
        raise KeyboardInterrupt
    monkeypatch.setattr(partial.Resumable, "_save", killed_after_the_first_save)
    out = tmp_path / "not-yet" / "cut.hdf5"  # a directory that does not exist yet (as a sweep's datasets/)
    with pytest.raises(KeyboardInterrupt):
        generate(recipe, task, out, steps=steps, seed=3, progress=False)
    assert not out.exists() and partial_path(out).exists() and 0 < saves[-1] < steps
    job = Job("data d", "data", ("datagen",), (str(out),), (), "log", task)
    assert job.state(pending=True) == "resume"  # a sweep resumes it
    with pytest.raises(ConfigError, match="interrupted generation of this dataset: pass --resume true"):
        generate(recipe, task, out, steps=steps, seed=3, progress=False)
    with pytest.raises(ConfigError, match="other options \\(seed: it has 3, now 4\\)"):
        generate(recipe, task, out, steps=steps, seed=4, progress=False, resume=True)
    monkeypatch.setattr(partial.Resumable, "_save", real_save)
    generate(recipe, task, out, steps=steps, seed=3, progress=False, resume=True)
    assert not partial_path(out).exists()
    with h5py.File(whole) as a, h5py.File(out) as b:
        names = []
        a.visit(lambda k: names.append(k) if isinstance(a[k], h5py.Dataset) else None)
        assert len(names) >= 7
        for name in names:
            np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)
