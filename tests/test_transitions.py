import dataclasses

import numpy as np
import pytest

from wsrl.data import DataError, Transitions


def make(n=4, obs_dim=3, act_dim=2, **override):
    """A consistent chain of n transitions: next_observations[t] == observations[t + 1]."""
    chain = np.arange((n + 1) * obs_dim, dtype=np.float32).reshape(n + 1, obs_dim)
    fields = dict(observations=chain[:-1], actions=np.full((n, act_dim), 0.5, np.float32),
                  rewards=np.arange(n, dtype=np.float32), next_observations=chain[1:],
                  terminals=np.zeros(n, np.float32), timeouts=np.zeros(n, np.float32))
    fields.update(override)
    return fields


def test_basic_properties_take_and_copies():
    t = Transitions(**make()).validate("mem")
    assert len(t) == 4 and t.obs_dim == 3 and t.act_dim == 2
    sub = t.take(np.array([3, 1]))
    np.testing.assert_array_equal(sub.rewards, [3.0, 1.0])
    np.testing.assert_array_equal(sub.observations, t.observations[[3, 1]])
    assert sub.mc_returns is None
    r2 = t.with_rewards([9, 9, 9, 9])
    assert r2.rewards.dtype == np.float32 and t.rewards[0] == 0.0  # the original is untouched
    m = t.with_mc_returns(np.ones(4))
    assert m.mc_returns.dtype == np.float32 and t.mc_returns is None
    np.testing.assert_array_equal(m.take(slice(0, 2)).mc_returns, [1.0, 1.0])
    with pytest.raises(DataError, match="mc_returns"):
        t.with_mc_returns(np.ones(3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.rewards = None


def test_episode_ends():
    f = make(n=5)
    f["terminals"][0] = 1
    f["timeouts"][2] = 1
    f["next_observations"] = f["next_observations"].copy()
    f["next_observations"][3] += 1e-3  # row 3's next observation is not row 4's observation
    np.testing.assert_array_equal(Transitions(**f).episode_ends(), [True, False, True, True, True])
    f["next_observations"][3] = f["observations"][4]  # continuous again
    np.testing.assert_array_equal(Transitions(**f).episode_ends(), [True, False, True, False, True])


def test_validate_names_source_field_and_shapes():
    with pytest.raises(DataError) as err:
        Transitions(**make(terminals=np.zeros(3, np.float32))).validate("my.hdf5")
    msg = str(err.value)
    assert "my.hdf5" in msg and "'terminals'" in msg and "(3,)" in msg and "(4,)" in msg
    with pytest.raises(DataError, match=r"'next_observations'.*\(4, 2\).*\(4, 3\)"):
        Transitions(**make(next_observations=np.zeros((4, 2), np.float32))).validate("x")
    with pytest.raises(DataError, match="'actions'.*float64.*float32"):
        Transitions(**make(actions=np.zeros((4, 2)))).validate("x")
    with pytest.raises(DataError, match="no transitions"):
        Transitions(**make(n=0)).validate("x")


def test_validate_reports_non_finite_count_and_first_row():
    rewards = np.float32([0, np.nan, 1, np.inf])
    with pytest.raises(DataError) as err:
        Transitions(**make(rewards=rewards)).validate("d.npz")
    msg = str(err.value)
    assert "d.npz" in msg and "'rewards'" in msg and "2 non-finite" in msg and "row 1" in msg


def test_actions_out_of_range_are_errors_and_in_range_are_clipped():
    far = np.full((4, 2), 0.5, np.float32)
    far[2, 1] = 1.5
    with pytest.raises(DataError) as err:
        Transitions.from_arrays("a.npz", **make(actions=far))
    assert "a.npz" in str(err.value) and "'actions'" in str(err.value) and "row 2" in str(err.value)
    edge = np.float32([[1.0, -1.0], [1.0005, 0.0], [0.3, 0.0], [0.0, 0.0]])
    t = Transitions.from_arrays("a.npz", **make(actions=edge))
    np.testing.assert_allclose(t.actions[:2], [[0.99999, -0.99999], [0.99999, 0.0]])
    np.testing.assert_array_equal(t.actions[2:], edge[2:])


def test_from_arrays_missing_key_and_casts():
    f = make()
    del f["timeouts"]
    with pytest.raises(DataError, match=r"src.*'timeouts'"):
        Transitions.from_arrays("src", **f)
    t = Transitions.from_arrays("src", **{k: v.astype(np.float64) for k, v in make().items()})
    assert all(v.dtype == np.float32 for v in t.arrays().values())


def test_npz_round_trip(tmp_path):
    t = Transitions(**make()).with_mc_returns(np.float32([4, 3, 2, 1]))
    path = tmp_path / "data.npz"
    t.save_npz(path)
    back = Transitions.from_npz(path)
    for name, array in t.arrays().items():
        np.testing.assert_array_equal(getattr(back, name), array)
    with pytest.raises(DataError, match="missing.npz"):
        Transitions.from_npz(tmp_path / "missing.npz")
