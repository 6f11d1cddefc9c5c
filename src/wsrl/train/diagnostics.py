"""The quantities the paper plots to explain forgetting (docs/diagnostics.md), for any learner.

- mean Q and TD error on a batch (online replay batches, and a held-out offline sample that is never trained on
  when no data is retained);
- KL(pi_pre || pi) on a set of states (tanh is a bijection, so the KL of tanh-Gaussians equals the KL of the
  Gaussians before squashing: closed form);
- KL(softmax Q_pre || softmax Q) over actions drawn half from pi_pre and half from pi, per state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from wsrl.agents import module_of


def gaussian_kl(mean_p, log_std_p, mean_q, log_std_q):
    """KL(N_p || N_q) for diagonal Gaussians, summed over dimensions -> (...,)."""
    var_p, var_q = jnp.exp(2 * log_std_p), jnp.exp(2 * log_std_q)
    return jnp.sum(log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5, axis=-1)


def mean_q(agent, observations, actions):
    """Q averaged over the ensemble -> (B,...)."""
    return module_of(agent).q_values(agent, agent.critic.params, observations, actions).mean(axis=0)


def q_and_td(agent, batch, key):
    q = module_of(agent).q_values(agent, agent.critic.params, batch["observations"], batch["actions"])
    target = module_of(agent).td_target(agent, batch, key)
    return q.mean(), jnp.mean((q - target) ** 2)


def policy_kl(pre_agent, agent, observations):
    mp, sp = module_of(pre_agent).policy_mean_log_std(pre_agent, pre_agent.actor.params, observations)
    mq, sq = module_of(agent).policy_mean_log_std(agent, agent.actor.params, observations)
    return gaussian_kl(mp, sp, mq, sq).mean()


def q_softmax_kl(pre_agent, agent, observations, key, num_actions: int = 10):
    """Mean over states of KL(softmax_a Q_pre(s, a) || softmax_a Q(s, a)), a from an equal mix of pi_pre and pi."""
    k_pre, k_cur = jax.random.split(key)
    batch, half = observations.shape[0], num_actions // 2
    reps = jnp.repeat(observations, half, axis=0)  # (B * half, obs_dim), state-major

    def actions_of(a, k):
        return module_of(a).sample_actions(a, reps, k).reshape(batch, half, -1)

    acts = jnp.concatenate([actions_of(pre_agent, k_pre), actions_of(agent, k_cur)], axis=1)  # (B, 2 half, A)
    obs = jnp.broadcast_to(observations[:, None, :], (batch, 2 * half, observations.shape[-1]))
    log_p = jax.nn.log_softmax(mean_q(pre_agent, obs, acts), axis=-1)
    log_q = jax.nn.log_softmax(mean_q(agent, obs, acts), axis=-1)
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1).mean()


@jax.jit
def measure(agent, pre_agent, batch, key) -> dict:
    """Every diagnostic on one batch of transitions."""
    k_td, k_kl = jax.random.split(key)
    q, td = q_and_td(agent, batch, k_td)
    return {"q": q, "td": td, "kl_policy": policy_kl(pre_agent, agent, batch["observations"]),
            "kl_q": q_softmax_kl(pre_agent, agent, batch["observations"], k_kl)}


def diagnostics(agent, pre_agent, offline_sample: dict | None, online_batch: dict | None, key) -> dict:
    """{'q_offline', 'td_offline', 'kl_policy_offline', 'kl_q_offline', and the same with '_online'}."""
    out = {}
    for name, batch in (("offline", offline_sample), ("online", online_batch)):
        if batch is None:
            continue
        key, sub = jax.random.split(key)
        for metric, value in measure(agent, pre_agent, batch, sub).items():
            out[f"{metric}_{name}"] = float(value)
    return out
