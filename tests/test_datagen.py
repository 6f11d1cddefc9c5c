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
