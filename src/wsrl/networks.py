"""Networks: MLP (+LayerNorm, dropout), Q-function, tanh-Gaussian and Gaussian policies.

Critic ensembles are plain stacks of parameters (leading axis = member), so a random subset of members can be
evaluated by slicing the stack (no wasted forward passes on the members not used). `apply_ensemble` applies any
module's stack with `jax.vmap`; `apply_q_ensemble` is the fast, equivalent evaluation of a `QFunction` stack, and
`apply_q_min` its minimum over the members with the gradient (w.r.t. the actions) through each row's minimising
member only (the actor's loss).
"""

from __future__ import annotations

import functools
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


# Largest (rows x width) activation of one member that `apply_q_ensemble` builds at once, in floats: above this
# the states are evaluated in chunks. On CPU the critic gradient's time went mostly into touching the memory of its
# intermediates: chunks that stay in cache made the demo's Cal-QL step ~2x faster (benchmarks/critic_ensemble.py).
CHUNK_ELEMENTS = 2**17


def apply_q_ensemble(module: QFunction, params, observations, actions, chunk_elements: int | None = CHUNK_ELEMENTS):
    """Every member of a stacked `QFunction` ensemble -> (members, *actions.shape[:-1]).

    Computes what `apply_ensemble(module, params, observations, actions)` computes, on the same parameter tree,
    as einsums with the member axis explicit and a leaner LayerNorm + ReLU gradient (`layer_norm_relu`); its
    gradient is ~2x faster on CPU at critic sizes (benchmarks/critic_ensemble.py).
    `observations` may have fewer leading axes than `actions` (a prefix of them), e.g. (B, obs_dim) against
    (B, n, action_dim): the first layer then applies its observation rows once per state and broadcasts them
    over the n actions instead of multiplying n copies of the observation (the CQL term's sampled actions).
    Larger than `chunk_elements` (None: never), the leading axis is evaluated in equal chunks, one at a time,
    recomputed in the backward pass (`jax.checkpoint`) rather than stored.
    """
    if actions.shape[:observations.ndim - 1] != observations.shape[:-1]:
        raise ValueError(f"the leading axes of observations {observations.shape} must be a prefix of those of "
                         f"actions {actions.shape}")
    chunks = num_chunks(module, actions, chunk_elements) if observations.ndim > 1 else 1
    if chunks == 1:
        return q_ensemble(module, params, observations, actions)
    split = lambda x: x.reshape(chunks, x.shape[0] // chunks, *x.shape[1:])
    q = jax.lax.map(jax.checkpoint(lambda xs: q_ensemble(module, params, *xs)), (split(observations), split(actions)))
    return jnp.moveaxis(q, 0, 1).reshape(q.shape[1], *actions.shape[:-1])  # (chunks, members, ...) -> (members, ...)


def num_chunks(module: QFunction, actions, chunk_elements: int | None) -> int:
    """Smallest divisor of the leading axis that brings a member's largest activation under `chunk_elements`.

    Up to twice that size stays whole: two halves save little memory and cost the forward pass recomputed
    (measured: the WSRL actor loss on 1024 states of a 10 x 256-wide ensemble is not faster in two chunks).
    """
    size = math.prod(actions.shape[:-1]) * max(module.hidden_dims)
    leading = actions.shape[0]
    if chunk_elements is None or size <= 2 * chunk_elements:
        return 1
    divisors = (c for c in range(2, leading + 1) if leading % c == 0)
    return next((c for c in divisors if size <= chunk_elements * c), leading)


def q_ensemble(module: QFunction, params, observations, actions):
    """`apply_q_ensemble` in one piece."""
    return q_ensemble_layers(module, params, observations, actions)[0]


def q_ensemble_layers(module: QFunction, params, observations, actions):
    """`q_ensemble` -> (Q (members, ...), per hidden layer its input to LayerNorm + ReLU and its output, or only
    its output without LayerNorm)."""
    mlp = params["params"]["MLP_0"]
    x, layers = None, []
    for i in range(len(module.hidden_dims)):
        dense = mlp[f"Dense_{i}"]
        h = first_dense(dense, observations, actions) if i == 0 else ensemble_dense(dense, x)
        if module.layer_norm:
            norm = mlp[f"LayerNorm_{i}"]
            x = layer_norm_relu(h, member_axis_first(norm["scale"], h.ndim), member_axis_first(norm["bias"], h.ndim))
            layers.append((h, x))
        else:
            x = nn.relu(h)
            layers.append((x,))
    return ensemble_dense(params["params"]["Dense_0"], x)[..., 0], layers


def member_axis_first(v, ndim: int):
    """(members, features) -> (members, 1, ..., 1, features) to broadcast against a rank-`ndim` activation."""
    return v.reshape(v.shape[:1] + (1,) * (ndim - 2) + v.shape[1:])


def first_dense(dense, observations, actions):
    """Dense(concat(obs, act)) = (obs @ W_obs + b) + act @ W_act, the observation term at its own shape.

    The (small) inputs are broadcast over the members so that both terms are batched matmuls producing
    (members, ..., width) directly, as the later layers do.
    """
    obs_dim, kernel = observations.shape[-1], dense["kernel"]  # kernel: (members, obs_dim + action_dim, width)
    per_member = lambda x: jnp.broadcast_to(x, kernel.shape[:1] + x.shape)
    h_obs = ensemble_dense({"kernel": kernel[:, :obs_dim], "bias": dense["bias"]}, per_member(observations))
    h_act = jnp.einsum("m...i,mio->m...o", per_member(actions), kernel[:, obs_dim:])
    extra = actions.ndim - observations.ndim  # the actions' extra axes (e.g. n per state), broadcast over
    return h_obs.reshape(h_obs.shape[:-1] + (1,) * extra + h_obs.shape[-1:]) + h_act


def ensemble_dense(dense, x):
    """Per-member Dense: (members, ..., in) -> (members, ..., out)."""
    y = jnp.einsum("m...i,mio->m...o", x, dense["kernel"])
    return y + member_axis_first(dense["bias"], y.ndim)


# `flax.linen.LayerNorm()` defaults: epsilon 1e-6, mean subtracted, "fast" variance E[x^2] - E[x]^2 clipped at 0,
# then `scale` and `bias`.
LAYER_NORM_EPSILON = 1e-6


@jax.custom_vjp
def layer_norm_relu(x, scale, bias):
    """relu(LayerNorm(x)) over the last axis, in flax's formula and order of operations.

    Why a hand-written gradient: under autodiff XLA:CPU materialises several more (rows x width) arrays for this
    block (broadcast statistics and scale, the normalised x, the ReLU mask), and the critic gradient's time went
    mostly into touching that memory. This one keeps only x and the output and recomputes the rest in one pass.
    """
    return _layer_norm_relu_fwd(x, scale, bias)[0]


def _layer_norm_relu_fwd(x, scale, bias):
    mean, raw_var, inv_std = layer_norm_statistics(x)
    y = nn.relu((x - mean) * (inv_std * scale) + bias)
    return y, (x, mean, raw_var, inv_std, scale, bias, y)


def layer_norm_statistics(x):
    """Mean, raw variance E[x^2] - E[x]^2 and 1 / std over the last axis, as flax's LayerNorm computes them."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    raw_var = jnp.mean(jnp.square(x), axis=-1, keepdims=True) - jnp.square(mean)
    inv_std = jax.lax.rsqrt(jnp.maximum(0.0, raw_var) + LAYER_NORM_EPSILON)
    return mean, raw_var, inv_std


def _layer_norm_relu_bwd(residuals, dy):
    x, mean, raw_var, inv_std, scale, bias, y = residuals
    g = jnp.where(y > 0, dy, 0.0)  # relu: gradient 0 at 0, as jax.nn.relu
    x_hat = (x - mean) * inv_std
    gs = g * scale
    # Derivative of max(0, raw_var): 1 above 0, 0 below, 1/2 at 0 (jax's rule for ties), as autodiff of flax.
    clip = jnp.where(raw_var > 0, 1.0, jnp.where(raw_var == 0, 0.5, 0.0))
    dx = inv_std * (gs - jnp.mean(gs, axis=-1, keepdims=True)
                    - clip * x_hat * jnp.mean(gs * x_hat, axis=-1, keepdims=True))
    return dx, sum_to_shape(g * x_hat, scale.shape), sum_to_shape(g, bias.shape)


def sum_to_shape(t, shape):
    """Sum `t` over the axes where `shape` (same rank) broadcast a 1: the gradient of a broadcast operand."""
    axes = tuple(i for i, (n, s) in enumerate(zip(t.shape, shape)) if s == 1 and n != 1)
    return jnp.sum(t, axis=axes, keepdims=True)


layer_norm_relu.defvjp(_layer_norm_relu_fwd, _layer_norm_relu_bwd)


def ensemble_size(params) -> int:
    return jax.tree_util.tree_leaves(params)[0].shape[0]


def take_members(params, indices):
    return jax.tree_util.tree_map(lambda p: p[indices], params)


# ---- the ensemble's minimum, differentiated through each row's minimising member only ------------------------

# `apply_q_min` groups the backward pass from `MIN_GROUPED_MEMBERS` members on (with 2 members it was no faster
# than plain autodiff; with 3 and more it was faster at every task family's size), runs the ensemble forward on
# pieces of about `MIN_PIECE_SIZE` rows x members (256 states of 10 critics; 128 to 512 states were within noise
# of each other at width 256, 128 slower at width 512; 2 critics were faster unsplit) and the grouped backward
# pass on blocks of `MIN_BLOCK_SIZE` rows (XLA:CPU multiplies 64-row blocks at a third of the rate of 128-row ones;
# 256-row blocks were as fast at width 256 and slower at width 512 with 10 members). Measured with
# benchmarks/actor_step.py (docs/performance.md).
MIN_GROUPED_MEMBERS = 3
MIN_PIECE_SIZE = 2560
MIN_BLOCK_SIZE = 128


def apply_q_min(module: QFunction, params, observations, actions, grouped: bool | None = None,
                piece_size: int = MIN_PIECE_SIZE, block_size: int = MIN_BLOCK_SIZE):
    """min over the members of a stacked `QFunction` ensemble -> (B,), differentiable with respect to `actions`.

    The value is `apply_q_ensemble(module, params, observations, actions).min(axis=0)` for observations (B, obs_dim)
    and actions (B, action_dim), to float32 rounding (the forward pass runs in pieces of rows, whose matmul sums
    can round differently in the last bit). The gradient with respect to the actions is that of the same
    expression, to the same rounding: the min's gradient flows, row by row, into the member that attains it only,
    so the backward pass runs one member per row instead of every member. The parameters and observations enter
    as constants (no gradient flows to them), as in the actor's loss, where the critics are fixed and the
    observations are data. If several members tie for a row's minimum, the gradient is the first one's (autodiff
    of `min` would average theirs).

    Forward: every member on every row, in equal pieces of at most `piece_size` rows x members (the last one
    padded), one after another so that a piece's activations stay in cache, keeping for each row only its
    minimising member's hidden activations. Backward: the grouped matmul of mixture-of-experts kernels: rows
    grouped by member, each group padded to whole blocks of `block_size` rows, every block multiplied by its own
    member's transposed weights in one batched matmul per layer, the result read back in the rows' order.
    `grouped=None` does this from `MIN_GROUPED_MEMBERS` members on and plain autodiff through every member below
    (True / False: always / never); the values and gradients are the same either way.
    """
    if observations.ndim != 2 or actions.ndim != 2 or observations.shape[0] != actions.shape[0]:
        raise ValueError(f"apply_q_min takes observations (B, obs_dim) and actions (B, action_dim); got "
                         f"{observations.shape} and {actions.shape}")
    params, observations = jax.lax.stop_gradient(params), jax.lax.stop_gradient(observations)
    if grouped is None:
        grouped = ensemble_size(params) >= MIN_GROUPED_MEMBERS
    if not grouped:
        return apply_q_ensemble(module, params, observations, actions).min(axis=0)
    return _q_min(module, piece_size, block_size, params, observations, actions)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _q_min(module, piece_size, block_size, params, observations, actions):
    return _q_min_fwd(module, piece_size, block_size, params, observations, actions)[0]


def _q_min_fwd(module, piece_size, block_size, params, observations, actions):
    rows = actions.shape[0]
    pieces = -(-rows * ensemble_size(params) // piece_size)
    if pieces <= 1:
        q, member, kept = q_min_piece(module, params, observations, actions)
    else:  # the last piece padded with zero rows (their results are dropped)
        piece = -(-rows // pieces)
        split = lambda x: jnp.pad(x, ((0, pieces * piece - rows), (0, 0))).reshape(pieces, piece, x.shape[-1])
        out = jax.lax.map(lambda xs: q_min_piece(module, params, *xs), (split(observations), split(actions)))
        q, member, kept = jax.tree_util.tree_map(lambda x: x.reshape(pieces * piece, *x.shape[2:])[:rows], out)
    return q, (params, observations, member, kept)


def q_min_piece(module: QFunction, params, observations, actions):
    """`q_ensemble` on a piece of rows -> (min over members (B,), argmin (B,), per hidden layer the argmin member's
    input to LayerNorm + ReLU and its output (B, width) each; the output only without LayerNorm)."""
    q, layers = q_ensemble_layers(module, params, observations, actions)  # q: (members, B)
    member = jnp.argmin(q, axis=0)
    pick = lambda t: jnp.take_along_axis(t, member[None, :, None], axis=0)[0]
    return q.min(axis=0), member, [tuple(pick(t) for t in layer) for layer in layers]


def _q_min_bwd(module, piece_size, block_size, residuals, g):
    params, observations, member, kept = residuals
    rows, members = member.shape[0], ensemble_size(params)
    blocks = selected_blocks_bound(rows, members, block_size)
    position, source, block_member = block_layout(member, members, block_size, blocks)

    def grouped_transposed(dh, kernel):
        """Row b of dh (B, out) times kernel[member[b]]^T, kernel (members, in, out) -> (B, in)."""
        dx = jnp.einsum("nbo,nio->nbi", dh[source].reshape(blocks, block_size, -1), kernel[block_member])
        return dx.reshape(blocks * block_size, -1)[position]

    p = params["params"]
    dx = g[:, None] * p["Dense_0"]["kernel"][member, :, 0]  # d q / d (last hidden output), (B, width)
    for i in reversed(range(len(module.hidden_dims))):
        if module.layer_norm:
            h, x = kept[i]
            norm = p["MLP_0"][f"LayerNorm_{i}"]
            scale, bias = norm["scale"][member], norm["bias"][member]
            dh = _layer_norm_relu_bwd((h, *layer_norm_statistics(h), scale, bias, x), dx)[0]
        else:
            dh = jnp.where(kept[i][0] > 0, dx, 0.0)
        kernel = p["MLP_0"][f"Dense_{i}"]["kernel"]
        if i == 0:
            kernel = kernel[:, observations.shape[-1]:]  # the actions' rows of the first layer
        dx = grouped_transposed(dh, kernel)
    zeros = lambda t: jax.tree_util.tree_map(jnp.zeros_like, t)
    return zeros(params), jnp.zeros_like(observations), dx


_q_min.defvjp(_q_min_fwd, _q_min_bwd)


def selected_blocks_bound(rows: int, num_members: int, block_size: int) -> int:
    """Most blocks `rows` rows can need when grouped by member, each group padded to whole blocks: at most
    min(members, rows) groups, each with ceil(count / block_size) <= (count + block_size - 1) / block_size."""
    groups = min(num_members, rows)
    return (rows + groups * (block_size - 1)) // block_size


def block_layout(members, num_members: int, block_size: int, blocks: int):
    """Where each row goes when rows are grouped by member in whole blocks of `block_size`.

    -> (position (B,): the row's slot in the padded layout of `blocks * block_size` slots,
        source (blocks * block_size,): the row in each slot (row 0 in padding slots),
        block_member (blocks,): each block's member (the last member for trailing unused blocks)).
    Groups come in member order, rows in their original order within a group (a running count, no sort).
    """
    one_hot = members[:, None] == jnp.arange(num_members)  # (B, members)
    rank = jnp.take_along_axis(jnp.cumsum(one_hot, axis=0), members[:, None], axis=1)[:, 0] - 1
    group_blocks = (one_hot.sum(axis=0) + block_size - 1) // block_size
    block_end = jnp.cumsum(group_blocks)
    position = (block_end - group_blocks)[members] * block_size + rank
    rows = jnp.arange(members.shape[0], dtype=jnp.int32)
    source = jnp.zeros(blocks * block_size, jnp.int32).at[position].set(rows)
    block_member = jnp.minimum(jnp.searchsorted(block_end, jnp.arange(blocks), side="right"), num_members - 1)
    return position, source, block_member
