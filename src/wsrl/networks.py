"""Networks: MLP (+LayerNorm, dropout), Q-function, tanh-Gaussian and Gaussian policies.

Critic ensembles are plain stacks of parameters (leading axis = member) applied with `jax.vmap`, so a random
subset of members can be evaluated by slicing the stack (no wasted forward passes on the members not used).
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# The policy's standard deviation is clipped to [1e-5, 10], as the authors' `Policy` does (std_min, std_max).
LOG_STD_MIN, LOG_STD_MAX = math.log(1e-5), math.log(10.0)
HIDDEN_INIT_SCALE = math.sqrt(2.0)


def orthogonal(scale: float = HIDDEN_INIT_SCALE):
    return nn.initializers.orthogonal(scale)


class MLP(nn.Module):
    """Dense -> [dropout] -> [LayerNorm] -> ReLU for every hidden layer.

    Every layer starts orthogonal(sqrt 2); `final_init_scale` replaces that scale on the LAST hidden layer (the
    authors' `kernel_scale_final`: 1e-2 on antmaze, adroit and locomotion, unset on kitchen).
    """

    hidden_dims: Sequence[int]
    layer_norm: bool = False
    dropout_rate: float = 0.0
    final_init_scale: float | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, width in enumerate(self.hidden_dims):
            last = i == len(self.hidden_dims) - 1
            scale = self.final_init_scale if last and self.final_init_scale is not None else HIDDEN_INIT_SCALE
            x = nn.Dense(width, kernel_init=orthogonal(scale))(x)
            if self.dropout_rate > 0:
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = nn.relu(x)
        return x


class QFunction(nn.Module):
    """Q(s, a): MLP on the concatenation of observation and action, scalar output."""

    hidden_dims: Sequence[int]
    layer_norm: bool = False
    final_init_scale: float | None = None

    @nn.compact
    def __call__(self, observations, actions):
        x = jnp.concatenate([observations, actions], axis=-1)
        x = MLP(self.hidden_dims, self.layer_norm, final_init_scale=self.final_init_scale)(x)
        return nn.Dense(1, kernel_init=orthogonal())(x)[..., 0]


class ValueFunction(nn.Module):
    """V(s) for IQL."""

    hidden_dims: Sequence[int]
    layer_norm: bool = False

    @nn.compact
    def __call__(self, observations):
        x = MLP(self.hidden_dims, self.layer_norm)(observations)
        return nn.Dense(1, kernel_init=orthogonal())(x)[..., 0]


class GaussianPolicy(nn.Module):
    """Outputs (mean, log_std) of a diagonal Gaussian over pre-squash actions.

    `state_dependent_std=False` learns one log-std vector shared by all states (antmaze preset, IQL). Dropout
    (IQL's actor on kitchen and adroit) is active only with `train=True` and a "dropout" rng.
    """

    hidden_dims: Sequence[int]
    action_dim: int
    layer_norm: bool = False
    state_dependent_std: bool = True
    final_init_scale: float | None = None
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, observations, train: bool = False):
        x = MLP(self.hidden_dims, self.layer_norm, self.dropout_rate, self.final_init_scale)(observations, train)
        mean = nn.Dense(self.action_dim, kernel_init=orthogonal())(x)
        if self.state_dependent_std:
            log_std = nn.Dense(self.action_dim, kernel_init=orthogonal())(x)
        else:
            log_std = jnp.broadcast_to(self.param("log_std", nn.initializers.zeros, (self.action_dim,)), mean.shape)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


# ---- distributions (pure functions of mean / log_std) ------------------------------------------------------

def gaussian_log_prob(mean, log_std, x):
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def tanh_log_det_jacobian(u):
    """sum log(1 - tanh(u)^2), computed stably as 2 (log 2 - u - softplus(-2u))."""
    return jnp.sum(2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)


def sample_tanh_gaussian(key, mean, log_std, sample_shape=()):
    """Reparameterised sample a = tanh(mean + std * eps) and its log-probability."""
    eps = jax.random.normal(key, sample_shape + mean.shape, mean.dtype)
    u = mean + jnp.exp(log_std) * eps
    log_prob = gaussian_log_prob(mean, log_std, u) - tanh_log_det_jacobian(u)
    return jnp.tanh(u), log_prob


def tanh_gaussian_log_prob(mean, log_std, actions, eps: float = 1e-6):
    """log pi(a) of a tanh-Gaussian for given squashed actions (clipped away from +-1 to stay finite)."""
    a = jnp.clip(actions, -1 + eps, 1 - eps)
    u = jnp.arctanh(a)
    return gaussian_log_prob(mean, log_std, u) - tanh_log_det_jacobian(u)


# ---- ensembles ---------------------------------------------------------------------------------------------

def init_ensemble(module: nn.Module, key, num_members: int, *example_inputs):
    """Independent initialisations stacked on a leading member axis."""
    keys = jax.random.split(key, num_members)
    return jax.vmap(lambda k: module.init(k, *example_inputs))(keys)


def apply_ensemble(module: nn.Module, params, *inputs, **kwargs):
    """Evaluate every member in `params` (leading axis) on the same inputs -> (members, ...)."""
    return jax.vmap(lambda p: module.apply(p, *inputs, **kwargs))(params)


def ensemble_size(params) -> int:
    return jax.tree_util.tree_leaves(params)[0].shape[0]


def take_members(params, indices):
    return jax.tree_util.tree_map(lambda p: p[indices], params)
