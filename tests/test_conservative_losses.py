"""Conservative (CQL / Cal-QL) and IQL losses against a float64 NumPy re-computation on tiny networks
(docs/methods.md).

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
    config = sac.ActorCriticConfig(**{"critic_hidden_dims": (4, 4), "actor_hidden_dims": (4, 4), "num_critics": 3,
                                      **kw})
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
    with --use_redq, here from `fold_in(key, 1)`. Returns (loss, bound rate)."""
    c = a.config
    k_rand, k_cur, k_next = jax.random.split(key, 3)
    uniform = np.asarray(jax.random.uniform(k_rand, (B, n, ACT), minval=-1.0, maxval=1.0), np.float64)
    cur, lp_cur = policy_sample_np(a, b["observations"], k_cur, n=n)
    nxt, lp_next = policy_sample_np(a, b["next_observations"], k_next, n=n)
    actions = np.concatenate([uniform, cur, nxt], 1)
    obs = np.repeat(b["observations"][:, None], actions.shape[1], axis=1)
    q_data = np.stack([np_q(a.critic.params, m, b["observations"], b["actions"]) for m in range(c.num_critics)])
    td = np.mean((q_data - target) ** 2)
    if c.critic_subsample == c.num_critics:
        members = np.arange(c.num_critics)
    else:
        members = np.asarray(jax.random.choice(jax.random.fold_in(key, 1), c.num_critics, (c.critic_subsample,),
                                               replace=False))
    q = np.stack([np_q(a.critic.params, m, obs, actions) for m in members])  # (k, B, 3n)
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
    members = set(np.asarray(jax.random.choice(jax.random.fold_in(key, 1), 4, (2,), replace=False)).tolist())
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
