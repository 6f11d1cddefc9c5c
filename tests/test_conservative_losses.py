"""Conservative (CQL / Cal-QL) and IQL losses against a float64 NumPy re-computation on tiny networks (SPEC §2-§3).

The SAC losses, TD targets, gradients and the fused UTD update are checked in `test_sac_losses.py`.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wsrl import networks as nets
from wsrl.agents import cql, iql, sac

OBS, ACT, B = 3, 2, 5
RTOL, ATOL = 1e-4, 1e-5


def np_mlp(params: dict, x: np.ndarray, layer_norm: bool) -> np.ndarray:
    """Flax MLP params -> NumPy forward pass (Dense, LayerNorm eps 1e-6, ReLU), then the output Dense."""
    p = {k: jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), v) for k, v in params["params"].items()}
    mlp, out = p.get("MLP_0", {}), p["Dense_0"]
    i = 0
    while f"Dense_{i}" in mlp:
        x = x @ mlp[f"Dense_{i}"]["kernel"] + mlp[f"Dense_{i}"]["bias"]
        if layer_norm:
            ln = mlp[f"LayerNorm_{i}"]
            x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6) * ln["scale"] + ln["bias"]
        x = np.maximum(x, 0)
        i += 1
    return x @ out["kernel"] + out["bias"]


def np_q(params, member: int, obs, act, layer_norm=True) -> np.ndarray:
    single = jax.tree_util.tree_map(lambda a: a[member], params)
    return np_mlp(single, np.concatenate([obs, act], -1).astype(np.float64), layer_norm)[..., 0]


def np_policy(actor_params, obs, layer_norm=True):
    p = {k: v for k, v in actor_params["params"].items()}
    trunk = np_mlp({"params": {"MLP_0": p["MLP_0"], "Dense_0": p["Dense_0"]}}, obs.astype(np.float64), layer_norm)
    h_params = {"params": {"MLP_0": p["MLP_0"], "Dense_0": p["Dense_1"]}}
    log_std = np_mlp(h_params, obs.astype(np.float64), layer_norm)
    return trunk, np.clip(log_std, nets.LOG_STD_MIN, nets.LOG_STD_MAX)


def np_tanh_gaussian(mean, log_std, eps):
    u = mean + np.exp(log_std) * eps
    log_prob = np.sum(-0.5 * eps**2 - log_std - 0.5 * np.log(2 * np.pi), -1) - np.sum(np.log(1 - np.tanh(u) ** 2), -1)
    return np.tanh(u), log_prob


def batch(seed=0):
    r = np.random.default_rng(seed)
    return {"observations": r.normal(size=(B, OBS)).astype(np.float32),
            "actions": r.uniform(-0.9, 0.9, (B, ACT)).astype(np.float32),
            "rewards": r.normal(size=B).astype(np.float32),
            "next_observations": r.normal(size=(B, OBS)).astype(np.float32),
            "masks": np.array([1, 0, 1, 1, 0], np.float32),
            "mc_returns": r.normal(size=B).astype(np.float32)}


def agent(**kw):
    config = sac.ActorCriticConfig(critic_hidden_dims=(4, 4), actor_hidden_dims=(4, 4), num_critics=3, **kw)
    a = sac.create(config, OBS, ACT, seed=0)
    # Perturb so that the tiny outputs are not all near zero.
    bump = lambda t: jax.tree_util.tree_map(lambda x: x + 0.3 * jnp.sin(jnp.arange(x.size).reshape(x.shape)), t)
    return a.replace(actor=a.actor.replace(params=bump(a.actor.params)),
                     critic=a.critic.replace(params=bump(a.critic.params)),
                     target_critic_params=bump(bump(a.target_critic_params)))


def policy_sample_np(a, obs, key, n=None):
    """The library's own noise draw (same key), squashed and scored in NumPy."""
    mean, log_std = np_policy(a.actor.params, obs)
    shape = mean.shape if n is None else (n,) + mean.shape
    eps = np.asarray(jax.random.normal(key, shape, jnp.float32), np.float64)
    actions, log_prob = np_tanh_gaussian(mean, log_std, eps)
    return (actions, log_prob) if n is None else (np.swapaxes(actions, 0, 1), np.swapaxes(log_prob, 0, 1))


@pytest.mark.parametrize("importance_sample", [True, False])
def test_cql_soft_max(importance_sample):
    r = np.random.default_rng(2)
    n = 4
    q_rand, q_cur, q_next = (r.normal(size=(3, B, n)) for _ in range(3))
    lp_cur, lp_next, q_data = r.normal(size=(B, n)), r.normal(size=(B, n)), r.normal(size=(3, B))
    got = cql.cql_soft_max(*(jnp.asarray(x, jnp.float32) for x in (q_rand, q_cur, q_next, lp_cur, lp_next, q_data)),
                           action_dim=ACT, importance_sample=importance_sample)
    if importance_sample:
        cat = np.concatenate([q_rand - ACT * np.log(0.5), q_cur - lp_cur, q_next - lp_next], -1)
        ref = np.log(np.exp(cat).sum(-1))
    else:
        cat = np.concatenate([q_rand, q_data[..., None], q_cur, q_next], -1)
        ref = np.log(np.exp(cat).sum(-1)) - np.log(3 * n + 1)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(cql.cql_penalty(got, jnp.asarray(q_data)), (ref - q_data).mean(-1), rtol=RTOL, atol=ATOL)


def test_calql_bound_and_rate():
    q = jnp.array([[[1.0, -2.0], [0.5, 3.0]]])  # (1 critic, B=2, n=2)
    bounded, rate = cql.calql_lower_bound(q, jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(bounded, [[[1.0, 0.0], [1.0, 3.0]]])
    assert float(rate) == pytest.approx(0.5)


@pytest.mark.parametrize("regularizer, lagrange", [("cql", False), ("calql", False), ("calql", True)])
def test_full_conservative_critic_loss(regularizer, lagrange):
    a = agent(regularizer=regularizer, cql_lagrange=lagrange, cql_alpha=2.0, cql_num_actions=3,
              cql_importance_sample=True)
    b, key = batch(), jax.random.PRNGKey(11)
    target = np.random.default_rng(3).normal(size=B).astype(np.float32)
    loss, info = sac.critic_loss(a.critic.params, a, b, target, key)
    # The data action, 3 uniform actions, 3 from pi(s), 3 from pi(s'), all scored at s: the learner's key split.
    k_rand, k_cur, k_next = jax.random.split(key, 3)
    uniform = np.asarray(jax.random.uniform(k_rand, (B, 3, ACT), minval=-1.0, maxval=1.0), np.float64)
    cur, lp_cur = policy_sample_np(a, b["observations"], k_cur, n=3)
    nxt, lp_next = policy_sample_np(a, b["next_observations"], k_next, n=3)
    actions = np.concatenate([b["actions"][:, None].astype(np.float64), uniform, cur, nxt], 1)
    obs = np.repeat(b["observations"][:, None], actions.shape[1], axis=1)
    q = np.stack([np_q(a.critic.params, m, obs, actions) for m in range(3)])  # (3, B, 1 + 3n)
    q_data, q_rand, q_cur, q_next = q[..., 0], q[..., 1:4], q[..., 4:7], q[..., 7:]
    if regularizer == "calql":
        mc = b["mc_returns"][None, :, None]
        rate = 0.5 * ((q_cur < mc).mean() + (q_next < mc).mean())
        q_cur, q_next = np.maximum(q_cur, mc), np.maximum(q_next, mc)
        assert float(info["calql_bound_rate"]) == pytest.approx(rate)
    cat = np.concatenate([q_rand - ACT * np.log(0.5), q_cur - lp_cur, q_next - lp_next], -1)
    gap = (np.log(np.exp(cat).sum(-1)) - q_data).mean(-1)
    alpha = 1.0 if lagrange else 2.0  # the Lagrange multiplier starts at softplus(x) = 1
    penalty = alpha * (gap - 0.8) if lagrange else alpha * gap
    expected = np.mean((q_data - target) ** 2) + penalty.mean()
    assert float(loss) == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_lagrange_multiplier_rises_when_the_gap_exceeds_its_target():
    a = agent(regularizer="cql", cql_lagrange=True, cql_target_gap=-100.0)
    before = float(cql.lagrange_alpha(a.cql_multiplier.params["param"]))
    a, _ = sac.critic_step(a, batch())
    assert float(cql.lagrange_alpha(a.cql_multiplier.params["param"])) > before


def test_iql_losses():
    config = iql.IQLConfig(critic_hidden_dims=(4,), value_hidden_dims=(4,), actor_hidden_dims=(4,), num_critics=2,
                           expectile=0.7, beta=3.0)
    a, b = iql.create(config, OBS, ACT, seed=0), batch()
    diff = np.array([-2.0, 0.5, 3.0])
    np.testing.assert_allclose(iql.expectile_loss(jnp.asarray(diff), 0.7), [0.3 * 4, 0.7 * 0.25, 0.7 * 9], rtol=1e-6)
    np.testing.assert_allclose(iql.awr_weights(jnp.array([0.0, 1.0, 10.0]), 3.0, 100.0),
                               [1.0, math.exp(3.0), 100.0], rtol=1e-5)
    q = np.min([np_q(a.target_critic_params, m, b["observations"], b["actions"], False) for m in range(2)], 0)
    v = np_mlp(a.value.params, b["observations"].astype(np.float64), False)[..., 0]
    loss, _ = iql.value_loss(a.value.params, a, b)
    d = q - v
    assert float(loss) == pytest.approx(np.mean(np.where(d < 0, 0.3, 0.7) * d**2), rel=RTOL, abs=1e-7)
    next_v = np_mlp(a.value.params, b["next_observations"].astype(np.float64), False)[..., 0]
    y = b["rewards"] + 0.99 * b["masks"] * next_v
    qs = np.stack([np_q(a.critic.params, m, b["observations"], b["actions"], False) for m in range(2)])
    loss, _ = iql.critic_loss(a.critic.params, a, b)
    assert float(loss) == pytest.approx(np.mean((qs - y) ** 2), rel=RTOL)
