"""The actor's min over the critic ensemble, back-propagated through each state's minimising critic only
(`networks.apply_q_min`, `sac.min_q_values`), against autodiff through every critic (`sac.dense_min_q_values`).

Values and gradients must agree to float32 rounding: the two differ only in which (exactly zero) terms of the
gradient they compute. Cases: 10 critics with LayerNorm, 2 without, 1; batches whose states split evenly between
the critics or mostly choose one; batch sizes that are not multiples of the block size; the forward pass in one
piece or in padded pieces.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wsrl import networks as nets
from wsrl.agents import sac

OBS, ACT = 5, 3
# (critics, LayerNorm, critic hidden sizes)
CASES = [(10, True, (32, 32, 32)), (2, False, (32, 32)), (1, True, (16, 16))]
CASE_IDS = ["10Q-LN", "2Q", "1Q-LN"]


def perturbed(tree, seed, scale=0.3):
    """Every leaf moved off its init (zero biases, unit LayerNorm scales) by Gaussian noise."""
    leaves, structure = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree_util.tree_unflatten(structure, [x + scale * jax.random.normal(k, x.shape)
                                                    for x, k in zip(leaves, keys)])


def make_agent(members, layer_norm, hidden, seed=0):
    config = sac.ActorCriticConfig(critic_hidden_dims=hidden, actor_hidden_dims=(32, 32),
                                   critic_layer_norm=layer_norm, num_critics=members,
                                   critic_subsample=min(2, members))
    agent = sac.create(config, OBS, ACT, seed)
    temperature = {"log_temperature": jnp.asarray(np.log(0.3), jnp.float32)}
    return agent.replace(actor=agent.actor.replace(params=perturbed(agent.actor.params, seed + 1)),
                         critic=agent.critic.replace(params=perturbed(agent.critic.params, seed + 2)),
                         temperature=agent.temperature.replace(params=temperature))


@jax.jit
def policy_q_values(agent, observations, key):
    """Every critic's Q at the actions the actor loss samples with `key` -> (members, B)."""
    actions, _ = sac.sample_policy(agent, agent.actor.params, observations, key)
    return sac.q_values(agent, agent.critic.params, observations, actions)


def shift_outputs(agent, shifts):
    """The agent with each critic's output bias moved by `shifts` (members,)."""
    params = agent.critic.params["params"]
    out = {**params["Dense_0"], "bias": params["Dense_0"]["bias"] + jnp.asarray(shifts)[:, None]}
    return agent.replace(critic=agent.critic.replace(params={"params": {**params, "Dense_0": out}}))


def spread_or_favour(agent, observations, key, favourite=None, share=0.85):
    """Critics shifted to the same mean Q over the states (at the actions the actor loss samples with `key`), so
    that the minimising critic varies from state to state; with `favourite`, that critic is then lowered further
    so that it is the minimum for about `share` of the states: very uneven groups."""
    q = np.asarray(policy_q_values(agent, observations, key), np.float64)
    shifts = q.mean() - q.mean(axis=1)
    if favourite is not None:
        q = q + shifts[:, None]
        others = np.delete(q, favourite, axis=0).min(axis=0)
        shifts[favourite] -= np.quantile(q[favourite] - others, share)
    return shift_outputs(agent, shifts.astype(np.float32))


def observations(rows, seed=3):
    return jax.random.normal(jax.random.PRNGKey(seed), (rows, OBS))


def grouped_min_q_values(agent, critic_params, observations, actions):
    """`sac.min_q_values` grouped whatever the number of critics."""
    return nets.apply_q_min(sac.critic_module(agent.config), critic_params, observations, actions, grouped=True)


def dense_actor_loss(actor_params, agent, obs, key):
    """`sac.actor_loss` with autodiff through every critic."""
    actions, log_pi = sac.sample_policy(agent, actor_params, obs, key)
    q = sac.dense_min_q_values(agent, agent.critic.params, obs, actions)
    loss = jnp.mean(sac.temperature_value(agent) * log_pi - q)
    return loss, {"actor_loss": loss, "entropy": -log_pi.mean(), "q_policy_actor": q.mean()}


def minimising_counts(agent, obs, key):
    """How many states each critic is the minimum for."""
    critic = np.argmin(policy_q_values(agent, obs, key), axis=0)
    return np.bincount(critic, minlength=agent.config.num_critics)


def grouped_in(loss, *args) -> bool:
    """Whether the actor loss `loss(*args)`, traced now, goes through the grouped form (`networks.apply_q_min`'s
    custom VJP; visible before differentiation)."""
    return "name=_q_min" in str(jax.make_jaxpr(lambda *a: loss(*a)[0])(*args))


def assert_trees_close(a, b, rtol=1e-4, atol=1e-5):
    """Leaf by leaf; `atol` is relative to the leaf's largest magnitude (float32 sums in another order)."""
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        y = np.asarray(y)
        np.testing.assert_allclose(np.asarray(x), y, rtol=rtol, atol=atol * max(np.abs(y).max(), 1e-30))


# The learner's step with 10 critics, and the grouped form forced with 2. A single critic, and fewer rows than
# critics, are covered on `apply_q_min` itself below (each actor case compiles two actor losses: keep them few).
ACTOR_CASES = [  # (case, rows, groups)
    (CASES[0], 150, "spread"), (CASES[0], 150, "one-critic-mostly"),
    (CASES[1], 150, "spread"), (CASES[1], 150, "one-critic-mostly")]


# 150 rows: not a multiple of the 128-row blocks.
@pytest.mark.parametrize("case,rows,groups", ACTOR_CASES, ids=[f"{CASE_IDS[CASES.index(c)]}-{r}-{g}"
                                                               for c, r, g in ACTOR_CASES])
def test_actor_loss_and_gradient_equal_the_dense_formulation(case, rows, groups, monkeypatch):
    members, layer_norm, hidden = case
    if members < nets.MIN_GROUPED_MEMBERS:  # the learner takes plain autodiff there: check the grouped form anyway
        monkeypatch.setattr(sac, "min_q_values", grouped_min_q_values)
    agent = make_agent(members, layer_norm, hidden)
    obs, key = observations(rows), jax.random.PRNGKey(11)
    if members > 1:
        favourite = members - 1 if groups == "one-critic-mostly" else None
        agent = spread_or_favour(agent, obs, key, favourite)
    counts = minimising_counts(agent, obs, key)
    if groups == "one-critic-mostly":
        assert counts[members - 1] >= 0.75 * rows and (counts > 0).sum() >= 2, counts
    elif groups == "spread" and rows > 100:
        assert (counts > 0).sum() == members and counts.max() <= 0.75 * rows, counts
    # Fresh lambdas: jit caches traces per function, and `sac.min_q_values` is read at trace time.
    grouped = jax.jit(jax.value_and_grad(lambda *a: sac.actor_loss(*a), has_aux=True))
    dense = jax.jit(jax.value_and_grad(lambda *a: dense_actor_loss(*a), has_aux=True))
    assert grouped_in(sac.actor_loss, agent.actor.params, agent, obs, key)
    assert not grouped_in(dense_actor_loss, agent.actor.params, agent, obs, key)
    (loss, info), grads = grouped(agent.actor.params, agent, obs, key)
    (ref_loss, ref_info), ref_grads = dense(agent.actor.params, agent, obs, key)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for name in ref_info:
        np.testing.assert_allclose(info[name], ref_info[name], rtol=1e-5, atol=1e-6)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(ref_grads)
    assert_trees_close(grads, ref_grads)
    # The critics reach the actor's gradient: without them it would be the entropy term's alone.
    entropy_only = jax.jit(jax.grad(lambda p: jnp.mean(sac.temperature_value(agent)
                                                       * sac.sample_policy(agent, p, obs, key)[1])))(agent.actor.params)
    diff = [np.abs(np.asarray(g) - np.asarray(e)).max() for g, e in
            zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(entropy_only))]
    assert max(diff) > 1e-3


def test_actor_step_takes_the_same_step_as_the_dense_formulation(monkeypatch):
    agent = make_agent(10, True, (32, 32, 32))
    obs = observations(150)
    loss_args = (agent.actor.params, agent, obs, jax.random.PRNGKey(0))
    assert grouped_in(sac.actor_loss, *loss_args)
    # Fresh lambdas: jit caches traces per function, and `sac.min_q_values` is read at trace time.
    new, info = jax.jit(lambda a, o: sac.actor_and_temperature_step(a, o))(agent, obs)
    monkeypatch.setattr(sac, "min_q_values", sac.dense_min_q_values)
    assert not grouped_in(sac.actor_loss, *loss_args)
    ref, ref_info = jax.jit(lambda a, o: sac.actor_and_temperature_step(a, o))(agent, obs)
    for name in ref_info:
        np.testing.assert_allclose(info[name], ref_info[name], rtol=1e-5, atol=1e-6)
    assert_trees_close(new.temperature.params, ref.temperature.params)
    # A first Adam step moves every parameter by about lr * sign(gradient): equal up to the signs of gradients
    # that are zero to float32 rounding.
    lr = agent.config.actor_lr
    for x, y in zip(jax.tree_util.tree_leaves(new.actor.params), jax.tree_util.tree_leaves(ref.actor.params)):
        close = np.isclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-3 * lr)
        assert close.mean() > 0.99 and np.allclose(x, y, rtol=0, atol=2.01 * lr)


# ---- networks.apply_q_min on its own ------------------------------------------------------------------------

def ensemble(members, layer_norm, hidden, seed=0):
    module = nets.QFunction(hidden, layer_norm)
    params = nets.init_ensemble(module, jax.random.PRNGKey(seed), members, jnp.zeros((1, OBS)), jnp.zeros((1, ACT)))
    return module, perturbed(params, seed + 1)


# 37 rows: in one piece, or in 10 pieces of 4 rows (the last one padded); blocks of 64, 5, 1 or 512 rows.
MIN_CASES = [(case, piece_rows, block_size) for case in CASES for piece_rows, block_size in [(None, 64), (4, 5)]]
MIN_CASES += [(CASES[0], 4, 1), (CASES[1], None, 512)]


@pytest.mark.parametrize("case,piece_rows,block_size", MIN_CASES,
                         ids=[f"{CASE_IDS[CASES.index(c)]}-piece{e or 'whole'}-block{b}" for c, e, b in MIN_CASES])
def test_apply_q_min_value_and_action_gradient_equal_autodiff_of_the_min(case, piece_rows, block_size):
    members, layer_norm, hidden = case
    module, params = ensemble(members, layer_norm, hidden)
    rows = 37
    obs = observations(rows)
    actions = jax.random.uniform(jax.random.PRNGKey(4), (rows, ACT), minval=-1, maxval=1)
    weights = jax.random.normal(jax.random.PRNGKey(5), (rows,)).at[::4].set(0.0)  # some rows get no gradient
    dense = lambda a: nets.apply_q_ensemble(module, params, obs, a).min(axis=0)
    piece_size = nets.MIN_PIECE_SIZE if piece_rows is None else piece_rows * members
    grouped = lambda a: nets.apply_q_min(module, params, obs, a, grouped=True, piece_size=piece_size,
                                         block_size=block_size)
    value, grad = jax.jit(jax.value_and_grad(lambda a: jnp.sum(weights * grouped(a))))(actions)
    ref_value, ref_grad = jax.jit(jax.value_and_grad(lambda a: jnp.sum(weights * dense(a))))(actions)
    np.testing.assert_allclose(jax.jit(grouped)(actions), jax.jit(dense)(actions), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-5 * np.abs(ref_grad).max())
    assert np.all(np.asarray(grad)[::4] == 0.0)


@pytest.mark.parametrize("members", [1, 2, 3, 10])
def test_apply_q_min_groups_from_three_members_on(members):
    module = nets.QFunction((16, 16), True)
    params = jax.eval_shape(lambda: nets.init_ensemble(module, jax.random.PRNGKey(0), members, jnp.zeros((1, OBS)),
                                                       jnp.zeros((1, ACT))))
    rows = lambda d: jax.ShapeDtypeStruct((9, d), jnp.float32)
    jaxpr = str(jax.make_jaxpr(lambda p, o, a: nets.apply_q_min(module, p, o, a))(params, rows(OBS), rows(ACT)))
    assert ("name=_q_min" in jaxpr) == (members >= nets.MIN_GROUPED_MEMBERS == 3)


def test_apply_q_min_treats_parameters_and_observations_as_constants():
    module, params = ensemble(2, True, (16, 16))
    obs, actions = observations(9), jax.random.uniform(jax.random.PRNGKey(4), (9, ACT), minval=-1, maxval=1)
    loss = lambda p, o: nets.apply_q_min(module, p, o, actions, grouped=True).sum()
    g_params, g_obs = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, obs)
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves((g_params, g_obs)))
    with pytest.raises(ValueError, match="observations"):
        nets.apply_q_min(module, params, obs, actions[:, None])


@pytest.mark.parametrize("members,num_members,block_size", [
    (np.full(150, 3), 10, 64),  # one group
    (np.arange(150) % 10, 10, 64),  # ten groups of 15
    (np.r_[np.full(140, 9), np.arange(10)], 10, 16),  # one large group, the others of one row (member 9: 141)
    (np.array([4, 1, 4]), 10, 2),  # fewer rows than members
    (np.arange(9) % 2, 2, 1),  # blocks of one row
])
def test_block_layout_puts_every_row_in_a_block_of_its_member(members, num_members, block_size):
    rows = len(members)
    blocks = nets.selected_blocks_bound(rows, num_members, block_size)
    position, source, block_member = (np.asarray(x) for x in nets.block_layout(jnp.asarray(members), num_members,
                                                                                block_size, blocks))
    assert len(np.unique(position)) == rows and position.max() < blocks * block_size
    np.testing.assert_array_equal(source[position], np.arange(rows))
    np.testing.assert_array_equal(block_member[position // block_size], members)
    # Groups in member order, rows in their original order within a group.
    assert np.all(np.diff(block_member) >= 0)
    order = np.argsort(position)
    np.testing.assert_array_equal(order, np.argsort(members, kind="stable"))
    # The static number of blocks covers what the groups need.
    needed = sum(-(-c // block_size) for c in np.bincount(members, minlength=num_members))
    assert needed <= blocks
