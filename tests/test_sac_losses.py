"""Reference tests for the SAC learner (docs/methods.md, 'One actor-critic learner'): every loss against a
float64 NumPy re-computation.

The NumPy side re-computes the networks (`reference.py`) and the maths from docs/methods.md; only the random draws
are reproduced by calling the same `jax.random` functions with the keys the learner derives (`sac.td_target_keys`,
`sac.critic_step_keys`, `sac.actor_step_keys`). Parameters are re-drawn at O(1) scale so that
Q-values and policy means are far from zero and the comparisons are not trivially satisfied.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wsrl.agents import sac
from wsrl import networks as nets

import reference
from reference import leaves_equal

OBS, ACT, B, N = 3, 2, 5, 3
HID = (4, 4)
RTOL, ATOL = 1e-4, 1e-5
GAMMA = 0.99
MASKS = np.array([1.0, 0.0, 1.0, 1.0, 0.0], np.float32)


# ---- Adam and fixtures ------------------------------------------------------------------------------------

def check_first_adam_step(old, new, grad, lr, min_grad=1e-4):
    """From a fresh Adam state the first update is -lr * g / (|g| + 1e-8) (bias-corrected moments = g, g^2)."""
    checked = total = 0
    for o, n, g in zip(jax.tree_util.tree_leaves(old), jax.tree_util.tree_leaves(new),
                       jax.tree_util.tree_leaves(grad)):
        delta = np.asarray(n, np.float64) - np.asarray(o, np.float64)
        expected = -lr * g / (np.abs(g) + 1e-8)
        sel = np.abs(g) > min_grad
        np.testing.assert_allclose(delta[sel], expected[sel], atol=0.02 * lr)
        # Elements with a (numerically) zero gradient barely move.
        assert np.all(np.abs(delta[~sel]) <= 1.02 * lr)
        checked += sel.sum()
        total += g.size
    assert checked >= 0.6 * total, (checked, total)


def randomize(tree, rng, scale=0.6):
    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "LayerNorm" in name and "scale" in name:
            v = 1.0 + 0.2 * rng.normal(size=leaf.shape)
        else:
            v = scale * rng.normal(size=leaf.shape)
        return jnp.asarray(v, leaf.dtype)
    return jax.tree_util.tree_map_with_path(draw, tree)


def config(**overrides):
    return sac.ActorCriticConfig(critic_hidden_dims=HID, actor_hidden_dims=HID, num_critics=N, **overrides)


def make_agent(seed=0, temperature=0.3, mean_bias=None, **overrides):
    agent = sac.create(config(**overrides), OBS, ACT, seed)
    rng = np.random.default_rng(1000 + seed)
    actor = randomize(agent.actor.params, rng)
    if mean_bias is not None:
        actor["params"]["Dense_0"]["bias"] = jnp.asarray(mean_bias, jnp.float32)
    critic = randomize(agent.critic.params, rng)
    target = randomize(agent.target_critic_params, rng)  # differs from the online critic on purpose
    temp = {"log_temperature": jnp.asarray(math.log(temperature), jnp.float32)}
    return agent.replace(actor=agent.actor.replace(params=actor), critic=agent.critic.replace(params=critic),
                         target_critic_params=target, temperature=agent.temperature.replace(params=temp))


def make_batch(seed=0, lead=()):
    r = np.random.default_rng(seed)
    shape = lead + (B,)
    return {"observations": jnp.asarray(r.normal(size=shape + (OBS,)), jnp.float32),
            "actions": jnp.asarray(r.uniform(-0.95, 0.95, shape + (ACT,)), jnp.float32),
            "rewards": jnp.asarray(r.normal(size=shape), jnp.float32),
            "next_observations": jnp.asarray(r.normal(size=shape + (OBS,)), jnp.float32),
            "masks": jnp.asarray(np.broadcast_to(MASKS, shape), jnp.float32),
            "mc_returns": jnp.asarray(r.normal(size=shape), jnp.float32)}


def alpha_of(agent):
    return math.exp(float(agent.temperature.params["log_temperature"]))


def np_so2(agent, actions, k_noise):
    c = agent.config
    raw = c.target_noise_std * np.asarray(jax.random.normal(k_noise, actions.shape, jnp.float32), np.float64)
    noise = np.clip(raw, -c.target_noise_clip, c.target_noise_clip)
    return np.clip(actions + noise, -1.0, 1.0), raw


def np_td_target(agent, batch, key):
    """The TD target (docs/methods.md, 'One actor-critic learner') with the learner's key split."""
    c = agent.config
    k_action, k_subset, k_noise = sac.td_target_keys(key)
    nobs = np.asarray(batch["next_observations"], np.float64)
    r, m = np.asarray(batch["rewards"], np.float64), np.asarray(batch["masks"], np.float64)
    idx = np.asarray(jax.random.choice(k_subset, c.num_critics, (c.critic_subsample,),
                                       replace=c.subsample_with_replacement))
    if c.backup == "max_over_actions":
        a, lp = reference.policy_sample(agent.actor.params, nobs, k_action, c.num_backup_actions)
        if c.target_noise_std > 0:
            a, _ = np_so2(agent, a, k_noise)
        obs_rep = np.broadcast_to(nobs[:, None, :], a.shape[:2] + (OBS,))
        q = reference.q_values(agent.target_critic_params, obs_rep, a)[idx].min(0)  # (B, n)
        best = q.argmax(-1)
        next_q = q[np.arange(B), best]
        next_lp = lp[np.arange(B), best]
    else:
        a, next_lp = reference.policy_sample(agent.actor.params, nobs, k_action)
        if c.target_noise_std > 0:
            a, _ = np_so2(agent, a, k_noise)
        q_all = reference.q_values(agent.target_critic_params, nobs, a)
        next_q = q_all.max(0) if c.backup == "max_over_ensemble" else q_all[idx].min(0)
    if c.backup_entropy:
        next_q = next_q - alpha_of(agent) * next_lp
    return r + c.discount * m * next_q, idx


def np_critic_loss(critic_params, batch, y):
    q = reference.q_values(critic_params, batch["observations"], batch["actions"])  # (N, B)
    return np.mean((q - np.asarray(y, np.float64)[None]) ** 2)


def np_actor_loss(actor_params, critic_params, obs, key, alpha):
    a, lp = reference.policy_sample(actor_params, obs, key)
    q_min = reference.q_values(critic_params, obs, a).min(0)
    return np.mean(alpha * lp - q_min), lp


def adam_count(opt):
    return int(opt.opt_state[0].count)


# ---- the reference itself matches the flax modules (otherwise every test below is meaningless) -------------

def test_numpy_networks_match_flax_modules():
    agent, batch = make_agent(), make_batch()
    q = sac.q_values(agent, agent.critic.params, batch["observations"], batch["actions"])
    np.testing.assert_allclose(q, reference.q_values(agent.critic.params, batch["observations"], batch["actions"]),
                               rtol=RTOL, atol=ATOL)
    mean, log_std = sac.policy_mean_log_std(agent, agent.actor.params, batch["observations"])
    ref_mean, ref_log_std = reference.policy(agent.actor.params, batch["observations"])
    np.testing.assert_allclose(mean, ref_mean, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(log_std, ref_log_std, rtol=RTOL, atol=ATOL)
    assert np.abs(ref_mean).max() > 0.1 and np.abs(q).max() > 0.1  # non-trivial magnitudes


def test_log_one_minus_tanh_sq_identity():
    u = np.linspace(-5, 5, 41)
    np.testing.assert_allclose(reference.log_one_minus_tanh_sq(u), np.log(1 - np.tanh(u) ** 2), rtol=1e-10, atol=1e-12)


# ---- tanh-Gaussian policy ----------------------------------------------------------------------------------

def test_tanh_gaussian_sample_and_log_prob_including_extreme_u():
    mean = jnp.asarray([[0.3, -0.7], [2.0, -1.5], [30.0, -25.0], [-40.0, 0.1]], jnp.float32)
    log_std = jnp.asarray([[-0.5, 0.4], [0.0, -1.0], [0.0, 0.3], [-2.0, 1.0]], jnp.float32)
    key = jax.random.PRNGKey(7)
    a, lp = nets.sample_tanh_gaussian(key, mean, log_std)
    eps = np.asarray(jax.random.normal(key, mean.shape, jnp.float32))
    ref_a, ref_lp = reference.tanh_gaussian(mean, log_std, eps)
    assert np.all(np.isfinite(np.asarray(lp)))
    np.testing.assert_allclose(a, ref_a, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(lp, ref_lp, rtol=RTOL, atol=ATOL)
    # The extreme rows really are extreme: naive float32 log(1 - tanh(u)^2) would be -inf there.
    u32 = np.asarray(mean) + np.exp(np.asarray(log_std)) * eps
    with np.errstate(divide="ignore"):
        assert np.isinf(np.log(1 - np.tanh(u32[2:]).astype(np.float32) ** 2)).any()
    # Several samples: shape sample_shape + mean.shape.
    a5, lp5 = nets.sample_tanh_gaussian(key, mean, log_std, (5,))
    eps5 = np.asarray(jax.random.normal(key, (5,) + mean.shape, jnp.float32))
    ref_a5, ref_lp5 = reference.tanh_gaussian(np.asarray(mean)[None], np.asarray(log_std)[None], eps5)
    np.testing.assert_allclose(a5, ref_a5, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(lp5, ref_lp5, rtol=RTOL, atol=ATOL)


def test_tanh_gaussian_log_prob_of_given_actions():
    mean = np.array([[0.3, -0.7], [1.0, -1.5], [0.0, 0.0]])
    log_std = np.array([[-0.5, 0.4], [0.0, -1.0], [0.2, 0.2]])
    actions = np.array([[0.1, -0.9], [0.95, -0.999], [-0.5, 0.7]])
    lp = nets.tanh_gaussian_log_prob(jnp.asarray(mean, jnp.float32), jnp.asarray(log_std, jnp.float32),
                                     jnp.asarray(actions, jnp.float32))
    u = np.arctanh(actions)
    ref = (np.sum(-0.5 * ((u - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi), -1)
           - np.sum(np.log(1 - actions ** 2), -1))
    np.testing.assert_allclose(lp, ref, rtol=RTOL, atol=1e-3)  # arctanh near 1 amplifies float32 rounding
    edge = nets.tanh_gaussian_log_prob(jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.asarray([[1.0, -1.0]]))
    assert np.all(np.isfinite(np.asarray(edge)))


# ---- TD target -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("with_replacement", [False, True])
def test_td_target_min_over_a_random_subset_of_2_of_3(with_replacement):
    agent = make_agent(critic_subsample=2, subsample_with_replacement=with_replacement)
    batch = make_batch()
    nobs = batch["next_observations"]
    differs_from_full_min = False
    for seed in range(6):
        key = jax.random.PRNGKey(seed)
        y = np.asarray(sac.td_target(agent, batch, key))
        ref, idx = np_td_target(agent, batch, key)
        assert idx.shape == (2,) and np.all((0 <= idx) & (idx < N))
        if not with_replacement:
            assert idx[0] != idx[1]
        np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)
        # The value is the min over exactly the drawn members: every other candidate subset is rejected
        # wherever it gives a different number.
        a, _ = reference.policy_sample(agent.actor.params, nobs, sac.td_target_keys(key).action)
        q = reference.q_values(agent.target_critic_params, nobs, a)
        r, m = np.asarray(batch["rewards"], np.float64), np.asarray(batch["masks"], np.float64)
        for size in (1, 2, 3):
            for subset in itertools.combinations(range(N), size):
                cand = r + GAMMA * m * q[list(subset)].min(0)
                if set(subset) != set(idx.tolist()) and np.abs(cand - ref).max() > 1e-3:
                    assert np.abs(cand - y).max() > 1e-3
        full = r + GAMMA * m * q.min(0)
        differs_from_full_min |= bool(np.abs(full - y).max() > 1e-3)
        # masks = 0 -> y = r exactly
        np.testing.assert_array_equal(y[MASKS == 0], np.asarray(batch["rewards"])[MASKS == 0])
    assert differs_from_full_min  # the subsample is not secretly the whole ensemble


@pytest.mark.parametrize("with_replacement", [False, True])
def test_subset_draws_are_valid(with_replacement):
    cfg = config(critic_subsample=2, subsample_with_replacement=with_replacement)
    keys = jax.random.split(jax.random.PRNGKey(3), 300)
    idx = np.asarray(jax.vmap(lambda k: sac.subset_indices(cfg, k))(keys))
    assert idx.shape == (300, 2) and idx.min() >= 0 and idx.max() < N
    dup = idx[:, 0] == idx[:, 1]
    if with_replacement:
        assert dup.any() and not dup.all()
    else:
        assert not dup.any()
        assert {tuple(sorted(p)) for p in idx.tolist()} == {(0, 1), (0, 2), (1, 2)}
    # Exactly the draw the learner is documented to use.
    np.testing.assert_array_equal(
        idx[0], np.asarray(jax.random.choice(keys[0], N, (2,), replace=with_replacement)))


def test_td_target_subsample_of_whole_ensemble_is_full_min_and_evaluate_all_is_equivalent():
    batch, key = make_batch(1), jax.random.PRNGKey(11)
    agent = make_agent(critic_subsample=N)
    y = sac.td_target(agent, batch, key)
    a, _ = reference.policy_sample(agent.actor.params, batch["next_observations"], sac.td_target_keys(key).action)
    q = reference.q_values(agent.target_critic_params, batch["next_observations"], a)
    ref = np.asarray(batch["rewards"], np.float64) + GAMMA * MASKS * q.min(0)
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)
    a2 = make_agent(critic_subsample=2)
    a3 = make_agent(critic_subsample=2, evaluate_all_target_critics=True)
    np.testing.assert_allclose(sac.td_target(a2, batch, key), sac.td_target(a3, batch, key), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backup_entropy", [False, True])
def test_td_target_max_over_actions(backup_entropy):
    agent = make_agent(backup="max_over_actions", num_backup_actions=4, backup_entropy=backup_entropy)
    batch = make_batch(2)
    for seed in range(3):
        key = jax.random.PRNGKey(20 + seed)
        y = sac.td_target(agent, batch, key)
        ref, _ = np_td_target(agent, batch, key)
        np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)
    # max over actions >= the value at any single sampled action (without entropy term)
    if not backup_entropy:
        k_action, k_subset, _ = sac.td_target_keys(key)
        a, _ = reference.policy_sample(agent.actor.params, batch["next_observations"], k_action, 4)
        idx = np.asarray(jax.random.choice(k_subset, N, (2,), replace=False))
        obs_rep = np.broadcast_to(np.asarray(batch["next_observations"])[:, None], (B, 4, OBS))
        q = reference.q_values(agent.target_critic_params, obs_rep, a)[idx].min(0)
        bootstrap = (np.asarray(y) - np.asarray(batch["rewards"])) / GAMMA
        live = MASKS == 1
        assert np.all(bootstrap[live] >= q[live].max(-1) - 1e-4)
        assert np.all(q[live].max(-1) > q[live].min(-1) + 1e-4)  # the max is a real choice


def test_td_target_max_over_ensemble():
    agent = make_agent(backup="max_over_ensemble")
    batch = make_batch(3)
    key = jax.random.PRNGKey(5)
    y = sac.td_target(agent, batch, key)
    ref, _ = np_td_target(agent, batch, key)
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


def test_td_target_backup_entropy_subtracts_temperature_times_log_pi():
    batch, key = make_batch(4), jax.random.PRNGKey(9)
    plain = make_agent(temperature=0.7)
    ent = make_agent(temperature=0.7, backup_entropy=True)
    y_plain, y_ent = np.asarray(sac.td_target(plain, batch, key)), np.asarray(sac.td_target(ent, batch, key))
    ref, _ = np_td_target(ent, batch, key)
    np.testing.assert_allclose(y_ent, ref, rtol=RTOL, atol=ATOL)
    _, lp = reference.policy_sample(ent.actor.params, batch["next_observations"], sac.td_target_keys(key).action)
    np.testing.assert_allclose(y_plain - y_ent, GAMMA * MASKS * 0.7 * lp, rtol=1e-3, atol=1e-4)


def test_masks_zero_out_the_bootstrap():
    agent = make_agent()
    batch = make_batch(5)
    key = jax.random.PRNGKey(1)
    zero = dict(batch, masks=jnp.zeros(B, jnp.float32))
    np.testing.assert_array_equal(sac.td_target(agent, zero, key), batch["rewards"])
    one = dict(batch, masks=jnp.ones(B, jnp.float32), rewards=jnp.zeros(B, jnp.float32))
    ref, idx = np_td_target(agent, one, key)
    np.testing.assert_allclose(sac.td_target(agent, one, key), ref, rtol=RTOL, atol=ATOL)
    assert np.all(np.abs(ref) > 1e-3)


@pytest.mark.parametrize("backup", ["min", "max_over_actions"])
def test_so2_target_noise_is_clipped_and_actions_stay_in_bounds(backup):
    agent = make_agent(backup=backup, num_backup_actions=3, target_noise_std=1.0, target_noise_clip=0.6,
                       mean_bias=[3.0, -3.0])
    batch, key = make_batch(6), jax.random.PRNGKey(13)
    y = sac.td_target(agent, batch, key)
    ref, _ = np_td_target(agent, batch, key)
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)
    # The library's perturbation itself.
    k_action, _, k_noise = sac.td_target_keys(key)
    n = 3 if backup == "max_over_actions" else None
    a, _ = reference.policy_sample(agent.actor.params, batch["next_observations"], k_action, n)
    a32 = jnp.asarray(a, jnp.float32)
    pert = np.asarray(sac.perturb_target_action(agent.config, a32, k_noise))
    ref_pert, raw = np_so2(agent, a, k_noise)
    np.testing.assert_allclose(pert, ref_pert, rtol=RTOL, atol=ATOL)
    assert np.all(np.abs(pert) <= 1.0) and np.all(np.abs(pert - np.asarray(a32)) <= 0.6 + 1e-6)
    assert (np.abs(raw) > 0.6).any()  # the noise clip was exercised
    assert (np.abs(a + np.clip(raw, -0.6, 0.6)) > 1.0).any()  # the action clip was exercised
    # Without noise the target differs (the noise is really applied).
    quiet = make_agent(backup=backup, num_backup_actions=3, mean_bias=[3.0, -3.0])
    assert np.abs(np.asarray(sac.td_target(quiet, batch, key)) - np.asarray(y)).max() > 1e-4


# ---- critic, actor and temperature losses ------------------------------------------------------------------

def test_plain_critic_loss_is_mean_squared_td_error_over_ensemble_and_batch():
    agent, batch = make_agent(), make_batch(7)
    y = np.random.default_rng(0).normal(size=B)
    loss, info = sac.critic_loss(agent.critic.params, agent, batch, jnp.asarray(y, jnp.float32),
                                 jax.random.PRNGKey(0))
    ref = np_critic_loss(agent.critic.params, batch, y)
    np.testing.assert_allclose(loss, ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(info["td_loss"], ref, rtol=RTOL, atol=ATOL)
    q = reference.q_values(agent.critic.params, batch["observations"], batch["actions"])
    np.testing.assert_allclose(info["q_data"], q.mean(), rtol=RTOL, atol=ATOL)


def test_critic_step_loss_gradient_polyak_and_untouched_networks():
    agent, batch = make_agent(), make_batch(8)
    new, info = sac.critic_step(agent, batch)
    rng, k_target, _ = sac.critic_step_keys(agent.rng)
    y, _ = np_td_target(agent, batch, k_target)
    np.testing.assert_allclose(info["critic_loss"], np_critic_loss(agent.critic.params, batch, y),
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(np.asarray(new.rng), np.asarray(rng))
    # Gradient of the critic loss in docs/methods.md (target fixed) via float64 finite differences -> Adam's first step.
    grad = reference.numeric_grad(lambda p: np_critic_loss(p, batch, y), agent.critic.params)
    check_first_adam_step(agent.critic.params, new.critic.params, grad, agent.config.critic_lr)
    # Polyak after the critic update.
    tau = agent.config.tau
    for t_old, t_new, o_new in zip(jax.tree_util.tree_leaves(agent.target_critic_params),
                                   jax.tree_util.tree_leaves(new.target_critic_params),
                                   jax.tree_util.tree_leaves(new.critic.params)):
        ref = (1 - tau) * np.asarray(t_old, np.float64) + tau * np.asarray(o_new, np.float64)
        np.testing.assert_allclose(t_new, ref, rtol=1e-6, atol=1e-7)
    assert leaves_equal(new.actor, agent.actor) and leaves_equal(new.temperature, agent.temperature)
    assert adam_count(new.critic) == 1


@pytest.mark.parametrize("state_dependent_std", [True, False])
def test_actor_loss(state_dependent_std):
    agent = make_agent(temperature=0.4, state_dependent_std=state_dependent_std)
    obs = make_batch(9)["observations"]
    key = jax.random.PRNGKey(17)
    loss, info = sac.actor_loss(agent.actor.params, agent, obs, key)
    ref, lp = np_actor_loss(agent.actor.params, agent.critic.params, obs, key, 0.4)
    np.testing.assert_allclose(loss, ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(info["entropy"], -lp.mean(), rtol=RTOL, atol=ATOL)
    # The min is over ALL critics: a subset min would be larger somewhere.
    a, _ = reference.policy_sample(agent.actor.params, obs, key)
    q = reference.q_values(agent.critic.params, obs, a)
    assert any(np.abs(q[list(s)].min(0).mean() - q.min(0).mean()) > 1e-3
               for s in itertools.combinations(range(N), 2))


def test_temperature_loss_and_target_entropy():
    agent = make_agent(temperature=0.25)
    assert sac.target_entropy(agent) == -ACT
    for entropy in (-3.5, 0.7, 2.0):
        loss = sac.temperature_loss(agent.temperature.params, jnp.float32(entropy), sac.target_entropy(agent))
        np.testing.assert_allclose(loss, 0.25 * (entropy - (-ACT)), rtol=RTOL, atol=ATOL)
        g = jax.grad(sac.temperature_loss)(agent.temperature.params, jnp.float32(entropy), -ACT)
        np.testing.assert_allclose(g["log_temperature"], 0.25 * (entropy + ACT), rtol=RTOL, atol=ATOL)
    # SAC from scratch starts at alpha = 1.
    fresh = sac.create(config(), OBS, ACT, 0)
    np.testing.assert_allclose(sac.temperature_value(fresh), 1.0, rtol=1e-6)


def test_actor_and_temperature_step_gradients_and_untouched_critic():
    agent = make_agent(temperature=0.5)
    obs = make_batch(10, lead=(2,))["observations"].reshape(-1, OBS)
    new, info = sac.actor_and_temperature_step(agent, obs)
    key = sac.actor_step_keys(agent.rng).actor
    ref, lp = np_actor_loss(agent.actor.params, agent.critic.params, obs, key, 0.5)
    np.testing.assert_allclose(info["actor_loss"], ref, rtol=RTOL, atol=ATOL)
    # Actor gradient: reparameterised through a = tanh(mean + std * eps) into min_i Q_i; critics fixed.
    grad = reference.numeric_grad(lambda p: np_actor_loss(p, agent.critic.params, obs, key, 0.5)[0], agent.actor.params)
    check_first_adam_step(agent.actor.params, new.actor.params, grad, agent.config.actor_lr)
    # Temperature: d/dlog(alpha) [alpha (H - H_target)] = alpha (H - H_target), one Adam step.
    g_t = 0.5 * (-lp.mean() - (-ACT))
    old_lt = float(agent.temperature.params["log_temperature"])
    exp_lt = old_lt - agent.config.temperature_lr * g_t / (abs(g_t) + 1e-8)
    np.testing.assert_allclose(new.temperature.params["log_temperature"], exp_lt, rtol=0, atol=2e-6)
    assert leaves_equal(new.critic, agent.critic)
    assert leaves_equal(new.target_critic_params, agent.target_critic_params)
    assert adam_count(new.actor) == 1 and adam_count(new.temperature) == 1 and adam_count(new.critic) == 0


# ---- whole update: which optimizers step, Polyak, determinism, UTD --------------------------------------------

def test_update_without_actor_leaves_actor_and_temperature_bit_identical():
    agent, batch = make_agent(), make_batch(11, lead=(4,))
    new, _ = sac.update(agent, batch, update_actor=False)
    assert leaves_equal(new.actor, agent.actor)  # params and Adam state
    assert leaves_equal(new.temperature, agent.temperature)
    assert not leaves_equal(new.critic.params, agent.critic.params)
    assert adam_count(new.critic) == 4 and adam_count(new.actor) == 0 and adam_count(new.temperature) == 0


def test_update_steps_critic_optimizer_utd_times_and_actor_once():
    agent, batch = make_agent(), make_batch(12, lead=(4,))
    new, _ = sac.update(agent, batch)
    assert adam_count(new.critic) == 4
    assert adam_count(new.actor) == 1 and adam_count(new.temperature) == 1
    new2, _ = sac.update(new, make_batch(13, lead=(4,)))
    assert adam_count(new2.critic) == 8 and adam_count(new2.actor) == 2 and adam_count(new2.temperature) == 2
    assert new.cql_multiplier is None


def test_target_is_polyak_average_after_utd1_update():
    agent, batch = make_agent(), make_batch(14, lead=(1,))
    new, _ = sac.update(agent, batch)
    tau = agent.config.tau
    assert tau == 0.005
    for t_old, t_new, o_new in zip(jax.tree_util.tree_leaves(agent.target_critic_params),
                                   jax.tree_util.tree_leaves(new.target_critic_params),
                                   jax.tree_util.tree_leaves(new.critic.params)):
        ref = (1 - tau) * np.asarray(t_old, np.float64) + tau * np.asarray(o_new, np.float64)
        np.testing.assert_allclose(t_new, ref, rtol=1e-6, atol=1e-7)
        assert not np.allclose(t_new, t_old, rtol=0, atol=1e-6)


def _run(seed):
    agent = sac.create(config(), OBS, ACT, seed)
    infos = []
    for t in range(3):
        agent, info = sac.update(agent, make_batch(20 + t, lead=(4,)))
        infos.append(info)
    return agent, infos


def test_one_seed_gives_bit_identical_results():
    a1, i1 = _run(0)
    a2, i2 = _run(0)
    assert leaves_equal(a1, a2)
    assert leaves_equal(i1, i2)
    a3, _ = _run(1)
    assert not leaves_equal(a1.critic.params, a3.critic.params)


def test_utd_update_equals_sequential_critic_steps_then_one_actor_step_on_the_union():
    agent, batch = make_agent(), make_batch(30, lead=(4,))
    fused, info = sac.update(agent, batch)
    seq = agent
    losses = []
    for i in range(4):
        seq, ci = sac.critic_step(seq, jax.tree_util.tree_map(lambda x: x[i], batch))
        losses.append(float(ci["critic_loss"]))
    union = jnp.concatenate([batch["observations"][i] for i in range(4)], axis=0)
    seq, ai = sac.actor_and_temperature_step(seq, union)
    for x, y in zip(jax.tree_util.tree_leaves(fused), jax.tree_util.tree_leaves(seq)):
        if jnp.issubdtype(x.dtype, jnp.floating):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_allclose(info["critic_loss"], np.mean(losses), rtol=1e-5)
    np.testing.assert_allclose(info["actor_loss"], ai["actor_loss"], rtol=1e-5, atol=1e-6)
