"""`networks.apply_q_ensemble` (einsums, fused LayerNorm + ReLU gradient, chunks) against the vmap of flax's apply."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wsrl import networks as nets

OBS, ACT = 5, 3


def ensemble(members, layer_norm, final_init_scale=None, hidden=(16, 8), seed=0):
    """A stacked QFunction ensemble; biases and LayerNorm parameters perturbed off their 0 / 1 init."""
    module = nets.QFunction(hidden, layer_norm, final_init_scale)
    params = nets.init_ensemble(module, jax.random.PRNGKey(seed), members, jnp.zeros((1, OBS)), jnp.zeros((1, ACT)))
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    leaves = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    return module, jax.tree_util.tree_unflatten(tree, leaves)


def inputs(lead, seed=2):
    """Observations (B, OBS) and actions lead + (ACT,) with B = lead[0]."""
    k_obs, k_act = jax.random.split(jax.random.PRNGKey(seed))
    return jax.random.normal(k_obs, (lead[0], OBS)), jax.random.uniform(k_act, (*lead, ACT), minval=-1, maxval=1)


def broadcast_obs(observations, actions):
    extra = actions.ndim - observations.ndim
    obs = observations.reshape(observations.shape[:1] + (1,) * extra + observations.shape[1:])
    return jnp.broadcast_to(obs, actions.shape[:-1] + observations.shape[-1:])


def assert_trees_close(a, b, rtol, atol):
    """Leaf by leaf; `atol` is relative to the leaf's largest magnitude (float32 sums in another order)."""
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        y = np.asarray(y)
        np.testing.assert_allclose(np.asarray(x), y, rtol=rtol, atol=atol * np.abs(y).max())


CASES = [(1, True, None), (2, False, 1e-2), (10, True, 1e-2)]  # (members, LayerNorm, final_init_scale)


@pytest.mark.parametrize("members,layer_norm,final_init_scale", CASES)
# Rows (B,) or (B, n); chunk_elements=64 splits the 7 states (4 x 16 floats each) into 7 chunks.
@pytest.mark.parametrize("lead,chunk_elements", [((7,), None), ((7, 4), 64)])
def test_values_and_gradients_match_flax(members, layer_norm, final_init_scale, lead, chunk_elements):
    module, params = ensemble(members, layer_norm, final_init_scale)
    obs, act = inputs(lead)
    full_obs = broadcast_obs(obs, act)
    old = jax.jit(lambda p: nets.apply_ensemble(module, p, full_obs, act))(params)
    weights = jax.random.normal(jax.random.PRNGKey(3), old.shape)  # a loss that weighs every output differently
    grad_old = jax.jit(jax.grad(lambda p: jnp.sum(weights * nets.apply_ensemble(module, p, full_obs, act))))(params)
    for observations in (obs, full_obs):  # per state, or already broadcast to the actions' shape
        apply = lambda p, o=observations: nets.apply_q_ensemble(module, p, o, act, chunk_elements)
        new = jax.jit(apply)(params)
        assert new.shape == old.shape == (members, *lead)
        np.testing.assert_allclose(new, old, rtol=1e-5, atol=1e-5)
        grad = jax.jit(jax.grad(lambda p: jnp.sum(weights * apply(p))))(params)
        assert jax.tree_util.tree_structure(grad) == jax.tree_util.tree_structure(grad_old)
        assert_trees_close(grad, grad_old, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("final_init_scale", [None, 1e-2])
def test_fresh_init_matches_flax(final_init_scale):
    """Straight from `init_ensemble` (zero biases, unit LayerNorm scales), as `sac.create` builds the critics."""
    module = nets.QFunction((16, 8), True, final_init_scale)
    params = nets.init_ensemble(module, jax.random.PRNGKey(4), 2, jnp.zeros((1, OBS)), jnp.zeros((1, ACT)))
    obs, act = inputs((7, 4))
    new = lambda p: nets.apply_q_ensemble(module, p, obs, act, chunk_elements=16)
    old = lambda p: nets.apply_ensemble(module, p, broadcast_obs(obs, act), act)
    np.testing.assert_allclose(jax.jit(new)(params), jax.jit(old)(params), rtol=1e-5, atol=1e-6)
    grads = [jax.jit(jax.grad(lambda p, f=f: jnp.sum(jnp.sin(f(p)))))(params) for f in (new, old)]
    assert_trees_close(*grads, rtol=1e-4, atol=1e-6)


def test_chunks_divide_the_leading_axis():
    module, params = ensemble(2, True)
    obs, act = inputs((12, 5))  # per member: 60 rows x 16 wide = 960 floats
    assert nets.num_chunks(module, act, None) == 1
    assert nets.num_chunks(module, act, 480) == 1  # up to twice the limit stays whole
    assert nets.num_chunks(module, act, 400) == 3
    assert nets.num_chunks(module, act, 250) == 4  # 3 chunks would leave 320 > 250
    assert nets.num_chunks(module, act, 1) == 12  # at most one state per chunk
    q = jax.jit(lambda p: nets.apply_q_ensemble(module, p, obs, act, 250))(params)
    np.testing.assert_allclose(q, nets.apply_q_ensemble(module, params, obs, act, None), rtol=1e-6, atol=1e-6)


def test_degenerate_layer_norm_rows_match_flax():
    """Rows whose pre-activations are all equal (zero variance): value and gradient still agree."""
    module, params = ensemble(2, True, hidden=(4,))
    inner = params["params"]["MLP_0"]["Dense_0"]
    inner["kernel"] = jnp.zeros_like(inner["kernel"])  # every hidden unit = its bias ...
    inner["bias"] = jnp.ones_like(inner["bias"])  # ... = 1 in each row
    obs, act = inputs((6,))
    loss = lambda apply: (lambda p: jnp.sum(apply(p) ** 2))
    new = loss(lambda p: nets.apply_q_ensemble(module, p, obs, act))
    old = loss(lambda p: nets.apply_ensemble(module, p, obs, act))
    np.testing.assert_allclose(jax.jit(new)(params), jax.jit(old)(params), rtol=1e-6)
    assert_trees_close(jax.jit(jax.grad(new))(params), jax.jit(jax.grad(old))(params), rtol=1e-5, atol=1e-6)


def test_observations_must_be_a_prefix_of_the_actions_axes():
    module, params = ensemble(2, True)
    with pytest.raises(ValueError, match="prefix"):
        nets.apply_q_ensemble(module, params, jnp.zeros((4, OBS)), jnp.zeros((5, 2, ACT)))


def test_parameter_tree_is_unchanged():
    """Checkpoints stay loadable: the ensemble's parameters are flax's QFunction stacked on a member axis."""
    module, _ = ensemble(3, True, hidden=(16, 8))
    params = nets.init_ensemble(module, jax.random.PRNGKey(0), 3, jnp.zeros((1, OBS)), jnp.zeros((1, ACT)))
    shapes = jax.tree_util.tree_map(lambda x: x.shape, params)
    assert shapes == {"params": {
        "MLP_0": {"Dense_0": {"kernel": (3, OBS + ACT, 16), "bias": (3, 16)}, "LayerNorm_0": {"scale": (3, 16),
                  "bias": (3, 16)}, "Dense_1": {"kernel": (3, 16, 8), "bias": (3, 8)},
                  "LayerNorm_1": {"scale": (3, 8), "bias": (3, 8)}},
        "Dense_0": {"kernel": (3, 8, 1), "bias": (3, 1)}}}
