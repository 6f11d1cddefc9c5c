"""Float64 NumPy re-computation of the networks, for the reference tests (docs/methods.md).

Works on the flax parameter dicts (Dense, LayerNorm with eps 1e-6, ReLU; critic ensembles stacked on a leading
member axis) and never calls wsrl's maths. Only random draws are reproduced, with the same `jax.random` function
and key as the learner.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

LOG_STD_MIN, LOG_STD_MAX = np.log(1e-5), np.log(10.0)  # the std clip of the authors' Policy


def leaves_equal(a, b) -> bool:
    """Two pytrees with the same number of leaves, each exactly equal."""
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def f64(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


def dense(layer, x):
    return x @ layer["kernel"] + layer["bias"]


def layer_norm(x, scale, bias, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def trunk(mlp, x, use_layer_norm=True):
    """Dense -> [LayerNorm] -> ReLU for every hidden layer of a flax `MLP` params dict; every parameter is used."""
    i = 0
    while f"Dense_{i}" in mlp:
        x = dense(mlp[f"Dense_{i}"], x)
        if use_layer_norm:
            x = layer_norm(x, mlp[f"LayerNorm_{i}"]["scale"], mlp[f"LayerNorm_{i}"]["bias"])
        x = np.maximum(x, 0.0)
        i += 1
    assert i > 0 and len(mlp) == i * (2 if use_layer_norm else 1), sorted(mlp)
    return x


def scalar_head(params, x, use_layer_norm):
    """A Q- or value function: the trunk, then a Dense to one output -> x.shape[:-1]."""
    p = f64(params)["params"]
    return dense(p["Dense_0"], trunk(p["MLP_0"], np.asarray(x, np.float64), use_layer_norm))[..., 0]


def q_values(critic_params, obs, act, use_layer_norm=True):
    """Every ensemble member's Q(s, a) -> (members, ...); `obs` has the actions' leading axes."""
    x = np.concatenate([np.asarray(obs, np.float64), np.asarray(act, np.float64)], -1)
    members = jax.tree_util.tree_leaves(critic_params)[0].shape[0]
    return np.stack([scalar_head(jax.tree_util.tree_map(lambda a: a[m], critic_params), x, use_layer_norm)
                     for m in range(members)])


def value(value_params, obs, use_layer_norm=False):
    return scalar_head(value_params, obs, use_layer_norm)


def policy(actor_params, obs, use_layer_norm=True):
    """(mean, clipped log-std) of the Gaussian policy, state-dependent or one learned log-std vector."""
    p = f64(actor_params)["params"]
    h = trunk(p["MLP_0"], np.asarray(obs, np.float64), use_layer_norm)
    mean = dense(p["Dense_0"], h)
    log_std = np.broadcast_to(p["log_std"], mean.shape) if "log_std" in p else dense(p["Dense_1"], h)
    assert len(p) == 3, sorted(p)
    return mean, np.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


def log_one_minus_tanh_sq(u):
    """log(1 - tanh(u)^2) = log sech(u)^2 = 2 log 2 - 2|u| - 2 log(1 + exp(-2|u|)), exact for any |u|."""
    a = np.abs(u)
    return 2.0 * (np.log(2.0) - a - np.log1p(np.exp(-2.0 * a)))


def tanh_gaussian(mean, log_std, eps):
    """a = tanh(u), u = mean + std * eps; log pi(a) = log N(u; mean, std) - sum log(1 - tanh(u)^2)."""
    mean, log_std, eps = (np.asarray(v, np.float64) for v in (mean, log_std, eps))
    std = np.exp(log_std)
    u = mean + std * eps
    gauss = np.sum(-0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * np.log(2.0 * np.pi), -1)
    return np.tanh(u), gauss - np.sum(log_one_minus_tanh_sq(u), -1)


def policy_sample(actor_params, obs, key, n=None):
    """a ~ pi(s) and log pi(a|s) from the learner's standard-normal draw with `key`: (B, d), (B,); with `n`
    samples per state (B, n, d), (B, n)."""
    mean, log_std = policy(actor_params, obs)
    if n is None:
        return tanh_gaussian(mean, log_std, jax.random.normal(key, mean.shape, jnp.float32))
    eps = jax.random.normal(key, (n,) + mean.shape, jnp.float32)  # (n, B, d)
    a, lp = tanh_gaussian(mean[None], log_std[None], eps)
    return np.swapaxes(a, 0, 1), np.swapaxes(lp, 0, 1)


def numeric_grad(loss, tree, h=1e-5):
    """Central finite differences of a float64 loss over every element of a params tree."""
    leaves, treedef = jax.tree_util.tree_flatten(f64(tree))
    grads = []
    for li, leaf in enumerate(leaves):
        g = np.zeros_like(leaf)
        for idx in np.ndindex(leaf.shape):
            vals = []
            for s in (h, -h):
                pert = [x.copy() for x in leaves]
                pert[li][idx] += s
                vals.append(loss(jax.tree_util.tree_unflatten(treedef, pert)))
            g[idx] = (vals[0] - vals[1]) / (2 * h)
        grads.append(g)
    return jax.tree_util.tree_unflatten(treedef, grads)
