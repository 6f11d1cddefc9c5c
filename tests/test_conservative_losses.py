"""Conservative (CQL / Cal-QL) and IQL losses against a float64 NumPy re-computation on tiny networks
(docs/methods.md; the networks in `reference.py`, the random draws with the learner's keys, `sac.conservative_keys`).

The SAC losses, TD targets, gradients and the fused UTD update are checked in `test_sac_losses.py`.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wsrl.agents import cql, iql, sac

import reference

OBS, ACT, B = 3, 2, 5
RTOL, ATOL = 1e-4, 1e-5


def batch(seed=0):
    r = np.random.default_rng(seed)
    return {"observations": r.normal(size=(B, OBS)).astype(np.float32),
            "actions": r.uniform(-0.9, 0.9, (B, ACT)).astype(np.float32),
            "rewards": r.normal(size=B).astype(np.float32),
            "next_observations": r.normal(size=(B, OBS)).astype(np.float32),
            "masks": np.array([1, 0, 1, 1, 0], np.float32),
            "mc_returns": r.normal(size=B).astype(np.float32)}


def agent(**kw):
    config = sac.ActorCriticConfig(**{"critic_hidden_dims": (4, 4), "actor_hidden_dims": (4, 4), "num_critics": 3,
                                      **kw})
    a = sac.create(config, OBS, ACT, seed=0)
    # Perturb so that the tiny outputs are not all near zero.
    bump = lambda t: jax.tree_util.tree_map(lambda x: x + 0.3 * jnp.sin(jnp.arange(x.size).reshape(x.shape)), t)
    return a.replace(actor=a.actor.replace(params=bump(a.actor.params)),
                     critic=a.critic.replace(params=bump(a.critic.params)),
                     target_critic_params=bump(bump(a.target_critic_params)))


@pytest.mark.parametrize("importance_sample", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_cql_soft_max(importance_sample, temperature):
    r = np.random.default_rng(2)
    n, t = 4, temperature
    q_rand, q_cur, q_next = (r.normal(size=(3, B, n)) for _ in range(3))
    lp_cur, lp_next, q_data = r.normal(size=(B, n)), r.normal(size=(B, n)), r.normal(size=(3, B))
    got = cql.cql_soft_max(*(jnp.asarray(x, jnp.float32) for x in (q_rand, q_cur, q_next, lp_cur, lp_next, q_data)),
                           action_dim=ACT, importance_sample=importance_sample, temperature=t)
    if importance_sample:
        cat = np.concatenate([q_rand - ACT * np.log(0.5), q_cur - lp_cur, q_next - lp_next], -1)
        ref = t * np.log(np.exp(cat / t).sum(-1))
    else:  # the authors' cql.py: T * (lse(Q / T) - log(3n + 1))
        cat = np.concatenate([q_rand, q_data[..., None], q_cur, q_next], -1)
        ref = t * (np.log(np.exp(cat / t).sum(-1)) - np.log(3 * n + 1))
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(cql.cql_penalty(got, jnp.asarray(q_data)), (ref - q_data).mean(-1), rtol=RTOL, atol=ATOL)


def test_calql_bound_and_rate():
    q = jnp.array([[[1.0, -2.0], [0.5, 3.0]]])  # (1 critic, B=2, n=2)
    bounded, rate = cql.calql_lower_bound(q, jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(bounded, [[[1.0, 0.0], [1.0, 3.0]]])
    assert float(rate) == pytest.approx(0.5)


def expected_conservative_loss(a, b, key, target, n, alpha, lagrange, regularizer):
    """NumPy: TD on every critic; the CQL term (and Cal-QL bound) on the random subset the authors' `cql.py` draws
    with --use_redq, here with its own key. Returns (loss, bound rate)."""
    c = a.config
    keys = sac.conservative_keys(key)
    uniform = np.asarray(jax.random.uniform(keys.uniform, (B, n, ACT), minval=-1.0, maxval=1.0), np.float64)
    cur, lp_cur = reference.policy_sample(a.actor.params, b["observations"], keys.policy, n)
    nxt, lp_next = reference.policy_sample(a.actor.params, b["next_observations"], keys.next_policy, n)
    actions = np.concatenate([uniform, cur, nxt], 1)
    obs = np.repeat(b["observations"][:, None], actions.shape[1], axis=1)
    q_data = reference.q_values(a.critic.params, b["observations"], b["actions"])
    td = np.mean((q_data - target) ** 2)
    if c.critic_subsample == c.num_critics:
        members = np.arange(c.num_critics)
    else:
        members = np.asarray(jax.random.choice(keys.members, c.num_critics, (c.critic_subsample,), replace=False))
    q = reference.q_values(a.critic.params, obs, actions)[members]  # (k, B, 3n)
    q_rand, q_cur, q_next = q[..., :n], q[..., n:2 * n], q[..., 2 * n:]
    rate = None
    if regularizer == "calql":
        mc = b["mc_returns"][None, :, None]
        rate = ((q_cur < mc).sum() + (q_next < mc).sum()) / q.size  # raised values among all 3n samples
        q_cur, q_next = np.maximum(q_cur, mc), np.maximum(q_next, mc)
    cat = np.concatenate([q_rand - ACT * np.log(0.5), q_cur - lp_cur, q_next - lp_next], -1)
    gap = (np.log(np.exp(cat).sum(-1)) - q_data[members]).mean(-1)
    penalty = alpha * (gap - 0.8) if lagrange else alpha * gap
    return td + penalty.mean(), rate


@pytest.mark.parametrize("regularizer, lagrange", [("cql", False), ("calql", False), ("calql", True)])
@pytest.mark.parametrize("subsample", [3, 2])
def test_full_conservative_critic_loss(regularizer, lagrange, subsample):
    a = agent(regularizer=regularizer, cql_lagrange=lagrange, cql_alpha=2.0, cql_num_actions=3,
              cql_importance_sample=True, critic_subsample=subsample)
    b, key = batch(), jax.random.PRNGKey(11)
    target = np.random.default_rng(3).normal(size=B).astype(np.float32)
    loss, info = sac.critic_loss(a.critic.params, a, b, target, key)
    alpha = 1.0 if lagrange else 2.0  # the Lagrange multiplier starts at softplus(x) = 1
    expected, rate = expected_conservative_loss(a, b, key, target, 3, alpha, lagrange, regularizer)
    assert float(loss) == pytest.approx(expected, rel=1e-4, abs=1e-4)
    if rate is not None:
        assert float(info["calql_bound_rate"]) == pytest.approx(rate)


def test_redq_conservative_term_trains_only_its_subset():
    """With 2 of 4 critics drawn, the other two get exactly the gradient of their TD term."""
    a = agent(regularizer="calql", cql_alpha=5.0, cql_num_actions=3, num_critics=4, critic_subsample=2)
    b, key = batch(), jax.random.PRNGKey(5)
    target = jnp.asarray(np.random.default_rng(3).normal(size=B), jnp.float32)
    members = set(np.asarray(jax.random.choice(sac.conservative_keys(key).members, 4, (2,), replace=False)).tolist())
    grads, _ = jax.grad(sac.critic_loss, has_aux=True)(a.critic.params, a, b, target, key)

    def td_only(params):
        return jnp.mean((sac.q_values(a, params, b["observations"], b["actions"]) - target) ** 2)

    td_grads = jax.grad(td_only)(a.critic.params)
    for m in range(4):
        same = all(np.allclose(g[m], t[m], atol=1e-7) for g, t in zip(jax.tree_util.tree_leaves(grads),
                                                                       jax.tree_util.tree_leaves(td_grads)))
        assert same == (m not in members), f"member {m}"


def test_lagrange_multiplier_steps_once_per_update_on_the_batch_gap():
    """UTD 2: one Adam step of the multiplier per update (Adam's first step moves the parameter by the learning
    rate), driven by the mean of the two minibatches' gaps."""
    a = agent(regularizer="cql", cql_lagrange=True, cql_target_gap=-100.0, critic_subsample=3)
    b1, b2 = batch(0), batch(1)
    stacked = {k: np.stack([b1[k], b2[k]]) for k in b1}
    before = float(a.cql_multiplier.params["param"])
    new, info = sac.update(a, stacked)
    assert float(new.cql_multiplier.params["param"]) - before == pytest.approx(a.config.cql_alpha_lr, rel=1e-3)
    one, info1 = sac.critic_step(a, b1)
    _, info2 = sac.critic_step(one, b2)
    assert float(info["cql_gap"]) == pytest.approx(0.5 * (float(info1["cql_gap"]) + float(info2["cql_gap"])),
                                                   rel=1e-5)
    assert float(cql.lagrange_alpha(new.cql_multiplier.params["param"])) > 1.0  # the gap exceeds its target


def test_iql_losses():
    config = iql.IQLConfig(critic_hidden_dims=(4,), value_hidden_dims=(4,), actor_hidden_dims=(4,), num_critics=2,
                           expectile=0.7, beta=3.0)
    a, b = iql.create(config, OBS, ACT, seed=0), batch()
    diff = np.array([-2.0, 0.5, 3.0])
    np.testing.assert_allclose(iql.expectile_loss(jnp.asarray(diff), 0.7), [0.3 * 4, 0.7 * 0.25, 0.7 * 9], rtol=1e-6)
    np.testing.assert_allclose(iql.awr_weights(jnp.array([0.0, 1.0, 10.0]), 3.0, 100.0),
                               [1.0, math.exp(3.0), 100.0], rtol=1e-5)
    q = reference.q_values(a.target_critic_params, b["observations"], b["actions"], use_layer_norm=False).min(0)
    v = reference.value(a.value.params, b["observations"])
    loss, _ = iql.value_loss(a.value.params, a, b)
    d = q - v
    assert float(loss) == pytest.approx(np.mean(np.where(d < 0, 0.3, 0.7) * d**2), rel=RTOL, abs=1e-7)
    next_v = reference.value(a.value.params, b["next_observations"])
    y = b["rewards"] + 0.99 * b["masks"] * next_v
    qs = reference.q_values(a.critic.params, b["observations"], b["actions"], use_layer_norm=False)
    loss, _ = iql.critic_loss(a.critic.params, a, b)
    assert float(loss) == pytest.approx(np.mean((qs - y) ** 2), rel=RTOL)


@pytest.mark.parametrize("tanh_mean", [False, True])
def test_iql_actor_loss(tanh_mean):
    """AWR: -mean(min(exp(beta (min_i Q_target - V)), 100) log N(a; mu, sigma)), mu the network's mean or, with
    `tanh_mean`, its tanh (dataset actions at +-1 included); acting takes clip(mu, -1, 1)."""
    config = iql.IQLConfig(critic_hidden_dims=(4,), value_hidden_dims=(4,), actor_hidden_dims=(4,), num_critics=2,
                           beta=3.0, tanh_mean=tanh_mean, state_dependent_std=tanh_mean)
    a, b = iql.create(config, OBS, ACT, seed=0), batch(1)
    b["actions"][0] = [1.0, -1.0]  # clipped dataset actions
    q = reference.q_values(a.target_critic_params, b["observations"], b["actions"], use_layer_norm=False).min(0)
    v = reference.value(a.value.params, b["observations"])
    weights = np.minimum(np.exp(3.0 * (q - v)), 100.0)
    net_mean, log_std = reference.policy(a.actor.params, b["observations"], use_layer_norm=False)
    mean = np.tanh(net_mean) if tanh_mean else net_mean
    log_prob = np.sum(-0.5 * ((b["actions"] - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi), -1)
    loss, _ = iql.actor_loss(a.actor.params, a, b)
    assert float(loss) == pytest.approx(-np.mean(weights * log_prob), rel=RTOL)
    obs = jnp.asarray(b["observations"])
    np.testing.assert_allclose(iql.eval_actions(a, obs), np.clip(mean, -1, 1), rtol=RTOL, atol=ATOL)
    key = jax.random.PRNGKey(3)
    eps = np.asarray(jax.random.normal(key, (B, ACT)), np.float64)  # the learner's draw with this key
    np.testing.assert_allclose(iql.sample_actions(a, obs, key), np.clip(mean + np.exp(log_std) * eps, -1, 1),
                               rtol=RTOL, atol=ATOL)
