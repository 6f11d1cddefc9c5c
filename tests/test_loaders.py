"""Each format is written with its own tools (h5py, minari.DataCollector, numpy.savez) and read back."""

import os
import time

import gymnasium
import h5py
import numpy as np
import pytest

from wsrl.data import (DataError, Transitions, load_d4rl_hdf5, load_dataset, load_minari, load_npz,
                       load_ogbench_npz, mc_returns_to_go)

# ---- D4RL HDF5 -----------------------------------------------------------------------------------------------

# Seven rows, three episodes: A = rows 0-2 ending by TIMEOUT at row 2 (mid-file), B = rows 3-4 ending by a
# terminal at row 4, C = rows 5-6 (the file ends). B starts where A stopped (obs[3] == obs[2]), so only the
# timeout, not an observation jump, tells the episodes apart.
D4RL_OBS = np.float32([[0, 0], [1, 10], [2, 20], [2, 20], [4, 40], [5, 50], [6, 60]])
D4RL_ACTIONS = np.float32([[0.1], [0.2], [0.3], [0.4], [1.0], [-1.0], [0.7]])
D4RL_REWARDS = np.float32([1, 2, 3, 4, 5, 6, 7])
D4RL_TERMINALS = np.array([0, 0, 0, 0, 1, 0, 0], bool)
D4RL_TIMEOUTS = np.array([0, 0, 1, 0, 0, 0, 0], bool)


def write_d4rl(path, **override):
    arrays = dict(observations=D4RL_OBS, actions=D4RL_ACTIONS, rewards=D4RL_REWARDS, terminals=D4RL_TERMINALS,
                  timeouts=D4RL_TIMEOUTS)
    arrays.update(override)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if value is not None:
                f.create_dataset(key, data=value)
        f.create_dataset("infos/goal", data=np.zeros((7, 2)))
        f.create_dataset("metadata/algorithm", data="test")
    return path


def test_d4rl_qlearning_semantics_with_midfile_timeout(tmp_path):
    path = write_d4rl(tmp_path / "d4rl.hdf5")
    t = load_d4rl_hdf5(path)
    # kept rows: 0, 1 (2 is a timeout row), 3, 4, 5 (6 is the last row)
    np.testing.assert_array_equal(t.observations, D4RL_OBS[[0, 1, 3, 4, 5]])
    np.testing.assert_array_equal(t.next_observations, D4RL_OBS[[1, 2, 4, 5, 6]])
    np.testing.assert_array_equal(t.rewards, [1, 2, 4, 5, 6])
    np.testing.assert_array_equal(t.terminals, [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(t.timeouts, [0, 1, 0, 0, 0])  # row 1 is episode A's last transition
    np.testing.assert_allclose(t.actions[:, 0], [0.1, 0.2, 0.4, 0.99999, -0.99999], rtol=1e-6)
    assert all(v.dtype == np.float32 for v in t.arrays().values())
    np.testing.assert_array_equal(t.episode_ends(), [False, True, False, True, True])
    # gamma 0.5: A = [1, 2] -> [2, 2]; B = [4, 5] -> [6.5, 5]; C = [6] -> [6]
    np.testing.assert_allclose(mc_returns_to_go(t.rewards, t.episode_ends(), 0.5), [2, 2, 6.5, 5, 6])


def test_d4rl_next_observations_keep_every_row(tmp_path):
    nxt = D4RL_OBS + 0.5
    t = load_dataset(write_d4rl(tmp_path / "d4rl.h5", next_observations=nxt))
    assert len(t) == 7
    np.testing.assert_array_equal(t.next_observations, nxt)
    np.testing.assert_array_equal(t.timeouts, D4RL_TIMEOUTS)
    np.testing.assert_array_equal(t.terminals, D4RL_TERMINALS)


def test_d4rl_without_timeouts_key_drops_only_last_row(tmp_path):
    t = load_d4rl_hdf5(write_d4rl(tmp_path / "v0.hdf5", timeouts=None))
    np.testing.assert_array_equal(t.rewards, D4RL_REWARDS[:-1])
    assert not t.timeouts.any()


@pytest.mark.parametrize("override, key", [
    (dict(rewards=None), "rewards"),
    (dict(rewards=np.float32([1, 2, 3, np.nan, 5, 6, 7])), "rewards"),  # NaN in a kept row
    (dict(actions=D4RL_ACTIONS[:6]), "actions"),  # mismatched length
    (dict(actions=D4RL_ACTIONS * 3), "actions"),  # far outside [-1, 1]
])
def test_d4rl_bad_inputs_name_file_and_key(tmp_path, override, key):
    path = write_d4rl(tmp_path / "bad.hdf5", **override)
    with pytest.raises(DataError) as err:
        load_dataset(path)
    assert str(path) in str(err.value) and f"'{key}'" in str(err.value)


def test_missing_or_unknown_files(tmp_path):
    with pytest.raises(DataError, match="nothing.hdf5"):
        load_dataset(tmp_path / "nothing.hdf5")
    (tmp_path / "data.pkl").write_bytes(b"x")
    with pytest.raises(DataError, match="unknown dataset format"):
        load_dataset(tmp_path / "data.pkl")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="broken.npz"):
        load_dataset(tmp_path / "broken.npz")


# ---- Minari --------------------------------------------------------------------------------------------------

class TerminateOnSecondEpisode(gymnasium.Wrapper):
    """Episode 1 (seed 1) terminates after 3 steps; the others are truncated by the TimeLimit (5 steps)."""

    def reset(self, **kwargs):
        self.steps, self.terminate = 0, kwargs.get("seed") == 1
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        return obs, reward, terminated or (self.terminate and self.steps == 3), truncated, info


def collect_minari(env, dataset_id, episodes, action_fn, flatten=lambda o: o):
    """Run `env` inside minari.DataCollector and log what it saw, independently of Minari's storage."""
    import minari

    collector = minari.DataCollector(env)
    log = {k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")}
    for ep in range(episodes):
        obs, _ = collector.reset(seed=ep)
        while True:
            action = action_fn(ep)
            nxt, reward, terminated, truncated, _ = collector.step(action)
            for k, v in zip(log, (flatten(obs), action, reward, flatten(nxt), terminated, truncated)):
                log[k].append(v)
            obs = nxt
            if terminated or truncated:
                break
    with pytest.warns(UserWarning):  # Minari nags about missing author/description metadata
        collector.create_dataset(dataset_id=dataset_id, algorithm_name="test")
    collector.close()
    return {k: np.asarray(v, np.float32) for k, v in log.items()}


def assert_matches(t: Transitions, log: dict):
    for key, expected in log.items():
        np.testing.assert_allclose(getattr(t, key), expected, rtol=1e-6, err_msg=key)


def test_minari_pendulum_terminations_and_truncations(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    env = TerminateOnSecondEpisode(gymnasium.make("Pendulum-v1", max_episode_steps=5))
    log = collect_minari(env, "test/pendulum-v0", 3, lambda ep: np.float32([0.25 * (ep + 1)]))
    np.testing.assert_array_equal(log["terminals"], [0] * 5 + [0, 0, 1] + [0] * 5)  # episode lengths 5, 3, 5
    np.testing.assert_array_equal(log["timeouts"], [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1])
    by_id = load_minari("test/pendulum-v0")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert_matches(by_id, log)
    by_dir = load_dataset(tmp_path / "test" / "pendulum-v0")
    assert_matches(by_dir, log)
    np.testing.assert_array_equal(by_id.episode_ends().nonzero()[0], [4, 7, 12])


def test_minari_pointmaze_dict_observations_are_flattened(tmp_path, monkeypatch):
    import gymnasium_robotics

    gymnasium.register_envs(gymnasium_robotics)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env = gymnasium.make("PointMaze_UMaze-v3", max_episode_steps=4)
    log = collect_minari(env, "test/pointmaze-v0", 2, lambda ep: np.float32([0.5, -0.5 * ep]),
                         flatten=lambda o: np.concatenate([o["observation"], o["desired_goal"]]))
    t = load_dataset("test/pointmaze-v0")
    assert t.obs_dim == 4 + 2 and t.act_dim == 2 and len(t) == 8
    assert_matches(t, log)


def test_minari_missing_dataset_fails_at_once_saying_where(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        load_dataset("D4RL/kitchen/mixed-v2")
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert "D4RL/kitchen/mixed-v2" in msg and str(tmp_path / "D4RL/kitchen/mixed-v2/data/main_data.hdf5") in msg
    assert "<root>/<id>/data/main_data.hdf5" in msg
    with pytest.raises(DataError, match="main_data.hdf5"):
        load_minari(tmp_path)  # an existing directory that is not a dataset


# ---- OGBench npz ---------------------------------------------------------------------------------------------

def write_ogbench_compact(path, **extra):
    """Two trajectories of 4 observations in OGBench's stored layout: terminals = 1 on each trajectory's last
    observation, whose action has no successor."""
    obs = np.float32([[0, 0], [1, 0], [2, 0], [3, 0], [10, 1], [11, 1], [12, 1], [13, 1]])
    arrays = dict(observations=obs, actions=np.linspace(-0.9, 0.9, 8, dtype=np.float32)[:, None],
                  terminals=np.float32([0, 0, 0, 1, 0, 0, 0, 1]), qpos=obs * 2)
    arrays.update(extra)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_ogbench_compact_matches_ogbench_own_loader(tmp_path):
    from ogbench.utils import load_dataset as ogbench_load

    rewards = np.float32([0, -1, 0, 9, -1, -1, -1, 9])
    masks = np.float32([1, 1, 0, 1, 1, 1, 1, 1])  # row 2 is a true terminal (success)
    path = write_ogbench_compact(tmp_path / "cube-single-play-v0.npz", rewards=rewards, masks=masks)
    t = load_dataset(path)
    ref = ogbench_load(str(path))  # regular layout: next_observations, terminals = episode ends
    np.testing.assert_array_equal(t.observations, ref["observations"])
    np.testing.assert_array_equal(t.actions, ref["actions"])
    np.testing.assert_array_equal(t.next_observations, ref["next_observations"])
    np.testing.assert_array_equal(t.timeouts, ref["terminals"])
    np.testing.assert_array_equal(t.timeouts, [0, 0, 1, 0, 0, 1])  # hand-worked
    np.testing.assert_array_equal(t.rewards, [0, -1, 0, -1, -1, -1])
    np.testing.assert_array_equal(t.terminals, [0, 0, 1, 0, 0, 0])  # 1 - masks


def test_ogbench_regular_layout_with_next_observations(tmp_path):
    from ogbench.utils import load_dataset as ogbench_load

    ref = ogbench_load(str(write_ogbench_compact(tmp_path / "raw.npz")))
    ref["rewards"] = np.float32([1, 2, 3, 4, 5, 6])
    np.savez(tmp_path / "regular.npz", **ref)
    t = load_ogbench_npz(tmp_path / "regular.npz")
    np.testing.assert_array_equal(t.next_observations, ref["next_observations"])
    np.testing.assert_array_equal(t.timeouts, ref["terminals"])
    np.testing.assert_array_equal(t.rewards, ref["rewards"])
    assert not t.terminals.any()  # no masks: nothing is a true terminal


def test_ogbench_without_rewards_needs_reward_fn(tmp_path):
    path = write_ogbench_compact(tmp_path / "antmaze-navigate-v0.npz")
    with pytest.raises(DataError) as err:
        load_dataset(path)
    assert str(path) in str(err.value) and "'rewards'" in str(err.value) and "reward_fn" in str(err.value)
    seen = {}

    def reward_fn(arrays):
        seen.update(arrays)
        success = (arrays["qpos"][:, 0] == 4).astype(np.float32)  # qpos is 2 * observation: obs x == 2
        return success - 1.0, 1.0 - success

    t = load_dataset(path, reward_fn=reward_fn)
    assert {"observations", "actions", "next_observations", "qpos"} <= set(seen) and len(seen["qpos"]) == 6
    np.testing.assert_array_equal(t.rewards, [-1, -1, 0, -1, -1, -1])
    np.testing.assert_array_equal(t.terminals, [0, 0, 1, 0, 0, 0])


@pytest.mark.parametrize("override, key", [(dict(actions=None), "actions"),
                                           (dict(rewards=np.float32([0] * 7)), "rewards")])
def test_ogbench_bad_inputs_name_file_and_key(tmp_path, override, key):
    path = write_ogbench_compact(tmp_path / "bad.npz", **override)
    with pytest.raises(DataError) as err:
        load_ogbench_npz(path)
    assert str(path) in str(err.value) and f"'{key}'" in str(err.value)


# ---- plain npz -----------------------------------------------------------------------------------------------

def plain_arrays(n=5):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n + 1, 3)).astype(np.float32)
    return dict(observations=obs[:-1], actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
                rewards=rng.normal(size=n).astype(np.float32), next_observations=obs[1:],
                terminals=np.float32([0, 0, 1, 0, 0])[:n], timeouts=np.float32([0, 0, 0, 0, 1])[:n])


def test_plain_npz_round_trip(tmp_path):
    arrays = plain_arrays()
    np.savez(tmp_path / "plain.npz", **arrays)
    t = load_dataset(tmp_path / "plain.npz")
    for key, value in arrays.items():
        np.testing.assert_array_equal(getattr(t, key), value)
    assert t.mc_returns is None


@pytest.mark.parametrize("change, key", [(lambda a: a.pop("actions"), "actions"),
                                         (lambda a: a.update(rewards=a["rewards"][:4]), "rewards"),
                                         (lambda a: a["rewards"].__setitem__(3, np.nan), "rewards")])
def test_plain_npz_bad_inputs_name_file_and_key(tmp_path, change, key):
    arrays = plain_arrays()
    change(arrays)
    np.savez(tmp_path / "plain.npz", **arrays)
    with pytest.raises(DataError) as err:
        load_npz(tmp_path / "plain.npz")
    assert str(tmp_path / "plain.npz") in str(err.value) and f"'{key}'" in str(err.value)


@pytest.mark.parametrize("damage, message", [
    ("empty", "not an .npz file"),
    ("truncated", "not an .npz file"),
    ("text", "not an .npz file"),
    ("string rewards", "'rewards' holds <U1 values, not numbers"),
])
def test_damaged_npz_files_are_one_clear_error(tmp_path, damage, message):
    n = 8
    arrays = dict(observations=np.zeros((n, 3), np.float32), actions=np.zeros((n, 2), np.float32),
                  rewards=np.zeros(n, np.float32), next_observations=np.zeros((n, 3), np.float32),
                  terminals=np.zeros(n, bool), timeouts=np.zeros(n, bool))
    path = tmp_path / "d.npz"
    np.savez(path, **{**arrays, "rewards": np.array(["a"] * n)} if damage == "string rewards" else arrays)
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "text":
        path.write_text("observations,actions\n")
    with pytest.raises(DataError, match=message):
        load_dataset(path)
