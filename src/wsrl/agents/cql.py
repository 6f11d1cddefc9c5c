"""The conservative (CQL) regulariser and the Cal-QL lower bound, as pure functions of Q-values.

The learner (`wsrl.agents.sac`) samples the actions and evaluates the critics; these functions only combine the
numbers, so that tests can compare them with a float64 NumPy re-computation.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def calql_lower_bound(q_policy, mc_returns):
    """Cal-QL: clip policy-action Q-values from below by the Monte-Carlo return of the data transition.

    q_policy: (..., B, n) Q-values of sampled policy actions; mc_returns: (B,).
    Returns (bounded Q, fraction of values that were raised = "bound rate").
    """
    bound = mc_returns[:, None]
    return jnp.maximum(q_policy, bound), jnp.mean(q_policy < bound)


def cql_soft_max(q_random, q_current, q_next, log_pi_current, log_pi_next, q_data, *, action_dim: int,
                 importance_sample: bool, temperature: float = 1.0):
    """Soft maximum of Q over the sampled actions for each critic and state -> (..., B).

    Shapes: q_* (..., B, n) for n uniform actions, n actions from pi(s), n from pi(s'), all evaluated at s;
    log_pi_* (B, n) log-densities of the policy samples; q_data (..., B).
    With importance sampling the proposal log-densities are subtracted (uniform: log 0.5^d), so the result
    estimates log E_a[exp Q]; without, Q(s, a_data) joins the set and log(3n + 1) is subtracted. The temperature
    T multiplies the whole result, T * (lse(Q / T) - log(3n + 1)), as in the authors' `cql.py`.
    """
    if importance_sample:
        uniform_log_density = action_dim * math.log(0.5)
        cat = jnp.concatenate([q_random - uniform_log_density, q_current - log_pi_current, q_next - log_pi_next],
                              axis=-1)
        offset = 0.0
    else:
        cat = jnp.concatenate([q_random, q_data[..., None], q_current, q_next], axis=-1)
        offset = math.log(cat.shape[-1])
    return (jax.nn.logsumexp(cat / temperature, axis=-1) - offset) * temperature


def cql_penalty(soft_max_q, q_data):
    """Per-critic CQL gap: mean over the batch of (soft-max Q - Q(s, a_data)) -> (...,)."""
    return jnp.mean(soft_max_q - q_data, axis=-1)


def lagrange_alpha(param):
    """The CQL multiplier alpha' = softplus(param) >= 0."""
    return jax.nn.softplus(param)


def inverse_softplus(x: float) -> float:
    return math.log(math.expm1(x))
