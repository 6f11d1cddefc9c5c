
import numpy as np
import pytest

from wsrl.data import BatchMixer, DataError, ReplayBuffer, Transitions
from wsrl.data.replay import BATCH_KEYS


def fill(buffer, rewards, terminal_last=False, timeout_last=False, start=0):
    """Insert one step per reward; observation = [step index], so rows can be identified in batches."""
    for k, r in enumerate(rewards):
        last = k == len(rewards) - 1
        i = start + k
        buffer.insert(np.float32([i, 0]), np.float32([0.1]), r, np.float32([i + 1, 0]),
                      terminal_last and last, timeout_last and last)


def rows_by_obs(buffer, n=4000, seed=0):
    """{observation id: batch row} from a large sample (every stored row appears)."""
    batch = buffer.sample(np.random.default_rng(seed), (n,))
    ids = batch["observations"][:, 0].astype(int)
    return {i: {k: v[np.flatnonzero(ids == i)[0]] for k, v in batch.items()} for i in np.unique(ids)}


def test_insert_sample_shapes_masks_and_ring():
    buf = ReplayBuffer(3, obs_dim=2, act_dim=1)
    with pytest.raises(DataError, match="empty"):
        buf.sample(np.random.default_rng(0), (2,))
    fill(buf, [1.0, 2.0, 3.0, 4.0, 5.0], terminal_last=True)
    assert len(buf) == 3
    batch = buf.sample(np.random.default_rng(0), (4, 7))
    assert set(batch) == set(BATCH_KEYS)
    assert batch["observations"].shape == (4, 7, 2) and batch["actions"].shape == (4, 7, 1)
    assert batch["rewards"].shape == (4, 7) and all(v.dtype == np.float32 for v in batch.values())
    rows = rows_by_obs(buf)
    assert sorted(rows) == [2, 3, 4]  # the two oldest were overwritten
    assert rows[4]["masks"] == 0.0 and rows[3]["masks"] == 1.0 and rows[4]["rewards"] == 5.0
    np.testing.assert_array_equal(rows[3]["next_observations"], [4, 0])


def test_mc_returns_written_at_episode_end():
    buf = ReplayBuffer(10, 2, 1)
    fill(buf, [1.0, 0.0, 2.0], terminal_last=True)
    buf.end_episode(0.5)
    fill(buf, [-5.0, -5.0], timeout_last=True, start=3)
    buf.end_episode(0.5, sparse_negative_reward=-5.0)
    mc = {i: float(row["mc_returns"]) for i, row in rows_by_obs(buf).items()}
    # [1, 0, 2] at gamma 0.5 -> [1.5, 1, 2]; the all-failure episode -> -5 / (1 - 0.5) = -10
    assert mc == {0: 1.5, 1: 1.0, 2: 2.0, 3: -10.0, 4: -10.0}


def test_running_episode_has_provisional_partial_returns():
    buf = ReplayBuffer(10, 2, 1, gamma=0.5)
    fill(buf, [1.0, 0.0])  # episode still running
    mc = {i: float(row["mc_returns"]) for i, row in rows_by_obs(buf).items()}
    assert mc == {0: 1.0, 1: 0.0}  # as if it ended now: 1 + 0.5 * 0, 0
    fill(buf, [2.0], start=2)
    mc = {i: float(row["mc_returns"]) for i, row in rows_by_obs(buf).items()}
    assert mc == {0: 1.5, 1: 1.0, 2: 2.0}
    buf.end_episode(0.5)
    fill(buf, [4.0], start=3)
    mc = {i: float(row["mc_returns"]) for i, row in rows_by_obs(buf).items()}
    assert mc == {0: 1.5, 1: 1.0, 2: 2.0, 3: 4.0}


def test_episode_longer_than_capacity_keeps_correct_returns_to_go():
    buf = ReplayBuffer(4, 2, 1)
    fill(buf, [1.0, 1.0, 1.0, 1.0, 1.0, 8.0])
    buf.end_episode(0.5)
    mc = {i: float(row["mc_returns"]) for i, row in rows_by_obs(buf).items()}
    # returns-to-go only look forward: row 5 -> 8, row 4 -> 1 + 4 = 5, row 3 -> 3.5, row 2 -> 2.75
    assert mc == {2: 2.75, 3: 3.5, 4: 5.0, 5: 8.0}


def test_rows_with_given_mc_return_are_final():
    buf = ReplayBuffer(10, 2, 1)
    buf.insert(np.float32([0, 0]), np.float32([0]), 1.0, np.float32([1, 0]), False, False, mc_return=42.0)
    buf.episode_start = buf.cursor  # what the training loop does after a dataset warmup (a no-op here)
    fill(buf, [3.0], start=1)
    with pytest.raises(ValueError, match="end_episode"):
        buf.insert(np.float32([9, 0]), np.float32([0]), 1.0, np.float32([9, 0]), False, False, mc_return=1.0)
    buf.end_episode(0.9)
    mc = {i: float(row["mc_returns"]) for i, row in rows_by_obs(buf).items()}
    assert mc == {0: 42.0, 1: 3.0}


def test_state_dict_and_file_round_trip_give_identical_samples(tmp_path):
    a = ReplayBuffer(5, 2, 1)
    fill(a, [1.0, 2.0, 3.0], terminal_last=True)
    a.end_episode(0.9, sparse_negative_reward=-1.0)
    fill(a, [4.0, 5.0, 6.0], start=3)  # wraps around, episode still running
    b = ReplayBuffer(5, 2, 1)
    b.load_state_dict(a.state_dict())
    a.save(tmp_path / "buffer.npz")
    c = ReplayBuffer(5, 2, 1)
    c.load(tmp_path / "buffer.npz")
    for other in (b, c):
        assert other.sparse_negative_reward == -1.0 and other.gamma == 0.9
        assert len(other) == len(a) and other.cursor == a.cursor and other.episode_start == a.episode_start
    for buf in (a, b, c):  # the same future: more steps, the episode ends, then sample
        fill(buf, [7.0], start=6)
        buf.end_episode(0.9)
    samples = [buf.sample(np.random.default_rng(3), (2, 16)) for buf in (a, b, c)]
    for s in samples[1:]:
        for key in BATCH_KEYS:
            np.testing.assert_array_equal(s[key], samples[0][key])
    with pytest.raises(DataError, match="capacity"):
        ReplayBuffer(6, 2, 1).load_state_dict(a.state_dict())


# ---- BatchMixer ----------------------------------------------------------------------------------------------

OFFLINE_MARK = 777.0


def offline_data(n=50):
    obs = np.full((n, 2), -1.0, np.float32)
    return Transitions(observations=obs, actions=np.zeros((n, 1), np.float32),
                       rewards=np.full(n, OFFLINE_MARK, np.float32), next_observations=obs,
                       terminals=np.ones(n, np.float32), timeouts=np.zeros(n, np.float32),
                       mc_returns=np.full(n, -3.0, np.float32))


def online_buffer():
    buf = ReplayBuffer(100, 2, 1)
    fill(buf, [0.5] * 20, terminal_last=True)
    buf.end_episode(0.99)
    return buf


def test_fraction_zero_takes_no_dataset_and_samples_only_online_rows():
    with pytest.raises(ValueError, match="no retention"):
        BatchMixer(online_buffer(), offline_data(), offline_fraction=0.0)
    mixer = BatchMixer(online_buffer(), None, offline_fraction=0.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        batch = mixer.sample(rng, utd=4, batch_size=64)
        assert batch["rewards"].shape == (4, 64)
        assert not np.any(batch["rewards"] == OFFLINE_MARK)


@pytest.mark.parametrize("fraction, batch_size, n_off", [(0.25, 8, 2), (0.5, 256, 128), (0.1, 256, 26),
                                                         (0.05, 256, 13), (1.0, 16, 16)])
def test_ratios_are_exact(fraction, batch_size, n_off):
    mixer = BatchMixer(online_buffer(), offline_data(), fraction)
    batch = mixer.sample(np.random.default_rng(1), utd=3, batch_size=batch_size)
    assert batch["observations"].shape == (3, batch_size, 2)
    is_off = batch["rewards"] == OFFLINE_MARK
    assert (is_off.sum(axis=1) == n_off).all()
    assert is_off[:, :n_off].all()  # offline rows first, then online rows
    np.testing.assert_array_equal(batch["masks"][is_off], 0.0)
    np.testing.assert_array_equal(batch["mc_returns"][is_off], -3.0)
    assert all(v.dtype == np.float32 for v in batch.values())


def test_mixer_argument_errors():
    with pytest.raises(ValueError, match="offline dataset"):
        BatchMixer(online_buffer(), None, 0.5)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="offline_fraction"):
            BatchMixer(online_buffer(), offline_data(), bad)
    no_mc = offline_data()
    with pytest.raises(DataError, match="mc_returns"):
        BatchMixer(online_buffer(), Transitions(**{**no_mc.arrays(), "mc_returns": None}), 0.5)


def test_mixer_is_deterministic_after_buffer_round_trip():
    a = online_buffer()
    b = ReplayBuffer(100, 2, 1)
    b.load_state_dict(a.state_dict())
    data = offline_data()
    ma, mb = BatchMixer(a, data, 0.5), BatchMixer(b, data, 0.5)
    ra, rb = np.random.default_rng(9), np.random.default_rng(9)
    for _ in range(3):
        sa, sb = ma.sample(ra, 2, 10), mb.sample(rb, 2, 10)
        for key in BATCH_KEYS:
            np.testing.assert_array_equal(sa[key], sb[key])
