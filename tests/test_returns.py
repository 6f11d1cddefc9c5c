import numpy as np
import pytest

from wsrl.data import RewardTransform, Transitions, episode_mc_returns, mc_returns_to_go


def test_reward_transform_affine_float32():
    antmaze = RewardTransform(scale=10.0, bias=-5.0)
    out = antmaze(np.array([0, 1, 0], np.int64))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [-5.0, 5.0, -5.0])
    np.testing.assert_array_equal(RewardTransform(1.0, -4.0)([0.0, 4.0]), [-4.0, 0.0])
    np.testing.assert_array_equal(RewardTransform()([0.25]), [0.25])


def test_episode_returns_hand_worked():
    # G2 = 2; G1 = 0 + 0.5 * 2 = 1; G0 = 1 + 0.5 * 1 = 1.5
    np.testing.assert_allclose(episode_mc_returns([1.0, 0.0, 2.0], 0.5), [1.5, 1.0, 2.0])
    # G3 = 1; G2 = 0.9; G1 = 0.81; G0 = 0.729
    np.testing.assert_allclose(episode_mc_returns([0, 0, 0, 1], 0.9), [0.729, 0.81, 0.9, 1.0], rtol=1e-6)
    assert episode_mc_returns([], 0.9).shape == (0,)


def test_sparse_all_negative_episode_gets_infinite_failure_return():
    np.testing.assert_allclose(episode_mc_returns([-5.0, -5.0, -5.0], 0.99, sparse_negative_reward=-5.0),
                               [-500.0, -500.0, -500.0], rtol=1e-6)
    # one success in the episode: the ordinary discounted sum, -5 + 0.5 * 5 = -2.5
    np.testing.assert_allclose(episode_mc_returns([-5.0, 5.0], 0.5, sparse_negative_reward=-5.0), [-2.5, 5.0])
    # without the option the all-negative episode is summed: -1 + 0.5 * -1 = -1.5
    np.testing.assert_allclose(episode_mc_returns([-1.0, -1.0], 0.5), [-1.5, -1.0])
    # float32 rewards match a float64 r_neg that is not exactly representable
    np.testing.assert_allclose(episode_mc_returns(np.float32([-0.1, -0.1]), 0.9, -0.1), [-1.0, -1.0], rtol=1e-6)


def test_dataset_returns_split_at_terminal_timeout_and_discontinuity():
    # Six transitions of one observation chain 0 -> 1 -> ... with three episode boundaries:
    #   row 1 terminal, row 2 timeout (mid-file), and between rows 3 and 4 the observation jumps (4.0 -> 10.0).
    obs = np.float32([[0], [1], [2], [3], [10], [11]])
    nxt = np.float32([[1], [2], [3], [4], [11], [12]])
    data = Transitions(observations=obs, actions=np.zeros((6, 1), np.float32),
                       rewards=np.float32([1, 2, 4, 8, 1, 1]), next_observations=nxt,
                       terminals=np.float32([0, 1, 0, 0, 0, 0]), timeouts=np.float32([0, 0, 1, 0, 0, 0]))
    ends = data.episode_ends()
    np.testing.assert_array_equal(ends, [False, True, True, True, False, True])
    mc = mc_returns_to_go(data.rewards, ends, 0.5)
    # episode [1, 2]: 1 + 0.5*2 = 2, 2 | episode [4]: 4 | episode [8]: 8 | episode [1, 1]: 1.5, 1
    np.testing.assert_allclose(mc, [2.0, 2.0, 4.0, 8.0, 1.5, 1.0])


def test_dataset_sparse_rule_applies_per_episode():
    rewards = np.float32([-5, -5, -5, 5, -5, -5])
    ends = np.array([False, True, False, True, False, True])
    mc = mc_returns_to_go(rewards, ends, 0.5, sparse_negative_reward=-5.0)
    # episode 1 all -5 -> -5/(1-0.5) = -10; episode 2: -5 + 0.5*5 = -2.5, 5; episode 3 all -5 -> -10
    np.testing.assert_allclose(mc, [-10, -10, -2.5, 5, -10, -10])


def test_rows_after_last_end_form_an_episode_and_shapes_are_checked():
    np.testing.assert_allclose(mc_returns_to_go([1, 1, 1], [True, False, False], 0.5), [1.0, 1.5, 1.0])
    with pytest.raises(ValueError):
        mc_returns_to_go([1, 1], [True], 0.5)
