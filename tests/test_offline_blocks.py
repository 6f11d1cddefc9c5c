"""Offline pre-training runs blocks of gradient steps in one jitted call, drawing minibatches on the device: each
row is a whole stored transition, rows are uniform over the dataset, and a block equals its steps taken one by one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wsrl import agents
from wsrl.agents import seeds as seed_group

ROWS, OBS, ACT = 12, 3, 2


def numbered_dataset() -> dict:
    """Row i holds i in every field (scaled apart), so a batch row shows which stored rows it was built from."""
    i = np.arange(ROWS, dtype=np.float32)
    return {"observations": np.repeat(i[:, None], OBS, 1), "actions": np.repeat(i[:, None] / 100, ACT, 1),
            "rewards": i + 0.5, "next_observations": np.repeat(i[:, None] + 1000, OBS, 1),
            "terminals": (i % 2).astype(np.float32), "mc_returns": -i}


def test_each_drawn_row_is_one_whole_stored_transition_and_rows_are_uniform():
    dataset = {k: jnp.asarray(v) for k, v in numbered_dataset().items()}
    batch = jax.jit(seed_group.draw_batch, static_argnums=2)(dataset, jax.random.PRNGKey(0), 24_000)
    row = np.asarray(batch["observations"])[0, :, 0]
    assert batch["observations"].shape == (1, 24_000, OBS)
    np.testing.assert_array_equal(np.asarray(batch["actions"])[0], np.repeat(row[:, None] / 100, ACT, 1))
    np.testing.assert_array_equal(np.asarray(batch["rewards"])[0], row + 0.5)
    np.testing.assert_array_equal(np.asarray(batch["next_observations"])[0, :, 0], row + 1000)
    np.testing.assert_array_equal(np.asarray(batch["masks"])[0], 1.0 - row % 2)
    np.testing.assert_array_equal(np.asarray(batch["mc_returns"])[0], -row)
    counts = np.bincount(row.astype(int), minlength=ROWS)
    expected = 24_000 / ROWS
    assert ((counts - expected) ** 2 / expected).sum() < 40  # chi-square, 11 dof: p < 1e-4 beyond 40


@pytest.mark.parametrize("algorithm", ["calql", "iql"])
def test_a_block_of_steps_equals_the_same_steps_taken_one_by_one(algorithm):
    rng = np.random.default_rng(0)
    dataset = {k: jnp.asarray(v + rng.normal(size=v.shape).astype(np.float32) * (k != "terminals"))
               for k, v in numbered_dataset().items()}
    if algorithm == "iql":
        config = agents.IQLConfig(critic_hidden_dims=(8,), value_hidden_dims=(8,), actor_hidden_dims=(8,))
    else:
        config = agents.ActorCriticConfig(regularizer="calql", cql_num_actions=3, critic_hidden_dims=(8,),
                                          actor_hidden_dims=(8,))
    stacked = seed_group.stack([agents.create(config, OBS, ACT, seed) for seed in (4, 5)])
    keys = jnp.stack([jax.random.PRNGKey(7), jax.random.PRNGKey(8)])

    blocked, block_keys, block_info = seed_group.offline_block(stacked, dataset, keys, 3, batch_size=5)

    one_by_one = stacked
    for _ in range(3):
        keys, use = seed_group.split_keys(keys)
        batch = jax.vmap(seed_group.draw_batch, in_axes=(None, 0, None))(dataset, use, 5)
        one_by_one, info = seed_group.update(one_by_one, batch)
    np.testing.assert_array_equal(block_keys, keys)
    for a, b in zip(jax.tree_util.tree_leaves(blocked), jax.tree_util.tree_leaves(one_by_one)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for name in info:
        np.testing.assert_allclose(block_info[name], info[name], rtol=1e-5, atol=1e-6)
