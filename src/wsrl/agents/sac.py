"""The actor-critic learner behind WSRL, SAC (fast), RLPD, JSRL, SO2, CQL and Cal-QL.

One pure, jitted `update(agent, batch)` per environment step: the batch carries a leading UTD axis; the critic
takes one gradient step per minibatch inside `lax.scan`, then the actor and the temperature take one step on the
union of the minibatches ("actor delay" = UTD). CQL and Cal-QL are the same learner with a conservative term
(`regularizer="cql"` / `"calql"`); they differ from SAC only in the critic loss.

Only the network being updated has its optimizer stepped: each network has its own Adam state.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any, NamedTuple

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax

from wsrl import networks as nets
from wsrl.agents import cql
from wsrl.errors import ConfigError

BACKUPS = ("min", "max_over_actions", "max_over_ensemble")
REGULARIZERS = ("none", "cql", "calql")


@dataclasses.dataclass(frozen=True)
class ActorCriticConfig:
    """Hyper-parameters of the actor-critic learner (defaults: WSRL / RLPD fine-tuning; docs/methods.md)."""

    critic_hidden_dims: tuple[int, ...] = (256, 256)
    actor_hidden_dims: tuple[int, ...] = (256, 256)
    critic_layer_norm: bool = True
    actor_layer_norm: bool = True
    state_dependent_std: bool = True
    # Scale of the orthogonal init of the last hidden layer (authors' `kernel_scale_final`); None: sqrt(2).
    final_init_scale: float | None = None
    num_critics: int = 10
    # TD target: min over a random subset of `critic_subsample` target critics, drawn without replacement
    # (the REDQ definition; the authors' code draws with replacement: `subsample_with_replacement=True`).
    # With a conservative regulariser the CQL term acts on a second subset of the same size, drawn independently
    # (the authors' `cql.py` with `--use_redq`); the TD loss trains every member.
    critic_subsample: int = 2
    subsample_with_replacement: bool = False
    # "min": min over the subset at one a' ~ pi(s'); "max_over_actions": sample `num_backup_actions` a' and take
    # the max over them of the subset-min (authors' antmaze / CQL max-target backup); "max_over_ensemble": max over
    # all target critics at one a' (the paper's wording for antmaze).
    backup: str = "min"
    num_backup_actions: int = 10
    backup_entropy: bool = False
    discount: float = 0.99
    tau: float = 0.005
    # SO2: Gaussian noise on the target action, clipped; 0 disables.
    target_noise_std: float = 0.0
    target_noise_clip: float = 0.6
    # The authors' formulation evaluates every target critic then subsamples; kept for benchmarks only.
    evaluate_all_target_critics: bool = False
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 1e-4
    init_temperature: float = 1.0
    target_entropy: float | None = None  # None -> -action_dim
    # Conservative term (offline pre-training and CQL / Cal-QL fine-tuning).
    regularizer: str = "none"
    cql_alpha: float = 5.0
    cql_lagrange: bool = False
    cql_target_gap: float = 0.8
    cql_alpha_lr: float = 3e-4
    cql_num_actions: int = 10
    cql_importance_sample: bool = True
    cql_temperature: float = 1.0

    def __post_init__(self):
        check_choice("backup", self.backup, BACKUPS)
        check_choice("regularizer", self.regularizer, REGULARIZERS)
        check_positive("num_critics", self.num_critics)
        if not 1 <= self.critic_subsample <= self.num_critics and not self.subsample_with_replacement:
            raise ConfigError(f"critic_subsample={self.critic_subsample} must be between 1 and num_critics="
                             f"{self.num_critics} (or set subsample_with_replacement)")
        if not 0.0 <= self.discount < 1.0:
            raise ConfigError(f"discount={self.discount} must be in [0, 1)")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"tau={self.tau} must be in (0, 1]")
        for name in ("actor_lr", "critic_lr", "temperature_lr", "init_temperature", "cql_num_actions",
                     "num_backup_actions", "cql_temperature"):
            check_positive(name, getattr(self, name))


def check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.4)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}.{hint}")


def check_positive(name: str, value) -> None:
    if not value > 0:
        raise ConfigError(f"{name}={value} must be > 0")


class Optimized(struct.PyTreeNode):
    """Parameters and the Adam state that belongs to them."""

    params: Any
    opt_state: Any


class ActorCritic(struct.PyTreeNode):
    actor: Optimized
    critic: Optimized
    target_critic_params: Any
    temperature: Optimized  # params: {"log_temperature": scalar}
    cql_multiplier: Optimized | None  # params: {"param": scalar}, alpha' = softplus(param); None unless Lagrange
    rng: jax.Array
    config: ActorCriticConfig = struct.field(pytree_node=False)
    action_dim: int = struct.field(pytree_node=False)


# ---- construction ------------------------------------------------------------------------------------------

def critic_module(config: ActorCriticConfig) -> nets.QFunction:
    return nets.QFunction(config.critic_hidden_dims, config.critic_layer_norm, config.final_init_scale)


def actor_module(config: ActorCriticConfig, action_dim: int) -> nets.GaussianPolicy:
    return nets.GaussianPolicy(config.actor_hidden_dims, action_dim, config.actor_layer_norm,
                               config.state_dependent_std, config.final_init_scale)


def adam(lr: float):
    return optax.adam(lr)


def optimized(params, lr: float) -> Optimized:
    return Optimized(params, adam(lr).init(params))


def create(config: ActorCriticConfig, obs_dim: int, action_dim: int, seed: int) -> ActorCritic:
    rng, k_actor, k_critic = jax.random.split(jax.random.PRNGKey(seed), 3)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
    actor_params = actor_module(config, action_dim).init(k_actor, obs)
    critic_params = nets.init_ensemble(critic_module(config), k_critic, config.num_critics, obs, act)
    temperature = {"log_temperature": jnp.asarray(math.log(config.init_temperature), jnp.float32)}
    multiplier = None
    if config.regularizer != "none" and config.cql_lagrange:
        multiplier = optimized({"param": jnp.asarray(cql.inverse_softplus(1.0), jnp.float32)}, config.cql_alpha_lr)
    return ActorCritic(
        actor=optimized(actor_params, config.actor_lr),
        critic=optimized(critic_params, config.critic_lr),
        target_critic_params=critic_params,
        temperature=optimized(temperature, config.temperature_lr),
        cql_multiplier=multiplier,
        rng=rng,
        config=config,
        action_dim=action_dim,
    )


# ---- random keys: every split the learner makes, in its order (the reference tests draw through these) -------

class CriticStepKeys(NamedTuple):
    rng: jax.Array  # the agent's key after the step
    target: jax.Array  # the TD target's draws (`td_target_keys`)
    loss: jax.Array  # the critic loss's draws (`conservative_keys`)


class ActorStepKeys(NamedTuple):
    rng: jax.Array  # the agent's key after the step
    actor: jax.Array  # the actor loss's a ~ pi(s) (IQL: the actor's dropout)


class TDTargetKeys(NamedTuple):
    action: jax.Array  # a' ~ pi(s')
    subset: jax.Array  # the target critics the min is over
    noise: jax.Array  # SO2's target-action noise


class ConservativeKeys(NamedTuple):
    uniform: jax.Array  # n uniform actions
    policy: jax.Array  # n actions from pi(s)
    next_policy: jax.Array  # n actions from pi(s')
    members: jax.Array  # the critics the CQL term acts on, independent of the TD target's subset


def critic_step_keys(rng) -> CriticStepKeys:
    return CriticStepKeys(*jax.random.split(rng, 3))


def actor_step_keys(rng) -> ActorStepKeys:
    return ActorStepKeys(*jax.random.split(rng))


def td_target_keys(key) -> TDTargetKeys:
    return TDTargetKeys(*jax.random.split(key, 3))


def conservative_keys(key) -> ConservativeKeys:
    uniform, policy, next_policy = jax.random.split(key, 3)
    return ConservativeKeys(uniform, policy, next_policy, jax.random.fold_in(key, 1))


# ---- pieces shared by the losses and the diagnostics ------------------------------------------------------

def temperature_value(agent: ActorCritic):
    return jnp.exp(agent.temperature.params["log_temperature"])


def target_entropy(agent: ActorCritic) -> float:
    t = agent.config.target_entropy
    return -float(agent.action_dim) if t is None else t


def policy_mean_log_std(agent: ActorCritic, actor_params, observations):
    return actor_module(agent.config, agent.action_dim).apply(actor_params, observations)


def sample_policy(agent: ActorCritic, actor_params, observations, key, num_samples: int | None = None):
    """a ~ pi(.|s) with log pi(a|s). With `num_samples`, shapes are (B, n, action_dim) and (B, n)."""
    mean, log_std = policy_mean_log_std(agent, actor_params, observations)
    if num_samples is None:
        return nets.sample_tanh_gaussian(key, mean, log_std)
    actions, log_pi = nets.sample_tanh_gaussian(key, mean, log_std, (num_samples,))
    return jnp.swapaxes(actions, 0, 1), jnp.swapaxes(log_pi, 0, 1)


def q_values(agent: ActorCritic, critic_params, observations, actions):
    """Every ensemble member's Q(s, a) -> (num_critics, *actions.shape[:-1]).

    `observations` may be (B, obs_dim) against actions (B, n, action_dim): Q(s_b, a_bj) for every sampled
    action, with the observation's share of the first layer computed once per state (`nets.apply_q_ensemble`).
    """
    return nets.apply_q_ensemble(critic_module(agent.config), critic_params, observations, actions)


def min_q_values(agent: ActorCritic, critic_params, observations, actions):
    """min over every critic of Q(s, a) -> (B,) for observations (B, obs_dim) and actions (B, action_dim), with the
    gradient of autodiff through `q_values(...).min(axis=0)` with respect to the actions (the critics and the
    observations are constants: the actor's loss). From 3 critics on, the backward pass runs only each state's
    minimising critic, grouped by critic in blocks (`nets.apply_q_min`): with 10 critics the actor step is
    1.8-2.4x and the WSRL update 1.3-1.4x faster than with autodiff through every critic (docs/performance.md)."""
    return nets.apply_q_min(critic_module(agent.config), critic_params, observations, actions)


def dense_min_q_values(agent: ActorCritic, critic_params, observations, actions):
    """`min_q_values` by autodiff through every critic: the reference formulation (tests, benchmarks)."""
    return q_values(agent, critic_params, observations, actions).min(axis=0)


def uses_every_critic(config: ActorCriticConfig) -> bool:
    return config.critic_subsample == config.num_critics and not config.subsample_with_replacement


def subset_indices(config: ActorCriticConfig, key):
    n, k = config.num_critics, config.critic_subsample
    if uses_every_critic(config):
        return jnp.arange(n)
    return jax.random.choice(key, n, (k,), replace=config.subsample_with_replacement)


def subset_min_target_q(agent: ActorCritic, observations, actions, key):
    """min over a random subset of target critics of Q(s, a)."""
    idx = subset_indices(agent.config, key)
    if agent.config.evaluate_all_target_critics:
        return q_values(agent, agent.target_critic_params, observations, actions)[idx].min(axis=0)
    subset = nets.take_members(agent.target_critic_params, idx)
    return q_values(agent, subset, observations, actions).min(axis=0)


def perturb_target_action(config: ActorCriticConfig, actions, key):
    noise = jnp.clip(config.target_noise_std * jax.random.normal(key, actions.shape),
                     -config.target_noise_clip, config.target_noise_clip)
    return jnp.clip(actions + noise, -1.0, 1.0)


def td_target(agent: ActorCritic, batch, key):
    """y = r + gamma * mask * Q_target(s', a'), with the configured backup (no gradient flows through it)."""
    config = agent.config
    k_action, k_subset, k_noise = td_target_keys(key)
    next_obs = batch["next_observations"]
    if config.backup == "max_over_actions":
        n = config.num_backup_actions
        actions, log_pi = sample_policy(agent, agent.actor.params, next_obs, k_action, n)  # (B, n, ...)
        if config.target_noise_std > 0:
            actions = perturb_target_action(config, actions, k_noise)
        q = subset_min_target_q(agent, next_obs, actions, k_subset)  # (B, n): s' paired with each of its n a'
        best = jnp.argmax(q, axis=-1)[:, None]
        next_q = jnp.take_along_axis(q, best, axis=-1)[:, 0]
        next_log_pi = jnp.take_along_axis(log_pi, best, axis=-1)[:, 0]
    else:
        actions, next_log_pi = sample_policy(agent, agent.actor.params, next_obs, k_action)
        if config.target_noise_std > 0:
            actions = perturb_target_action(config, actions, k_noise)
        if config.backup == "max_over_ensemble":
            next_q = q_values(agent, agent.target_critic_params, next_obs, actions).max(axis=0)
        else:
            next_q = subset_min_target_q(agent, next_obs, actions, k_subset)
    if config.backup_entropy:
        next_q = next_q - temperature_value(agent) * next_log_pi
    return jax.lax.stop_gradient(batch["rewards"] + config.discount * batch["masks"] * next_q)


def cql_actions(agent: ActorCritic, batch, keys: ConservativeKeys):
    """Actions whose Q-values enter the CQL soft maximum: (B, 3n, action_dim) and the policy log-densities.

    Order along axis 1: n uniform actions, n from pi(s), n from pi(s').
    """
    n = agent.config.cql_num_actions
    obs = batch["observations"]
    random_actions = jax.random.uniform(keys.uniform, (obs.shape[0], n, agent.action_dim), minval=-1.0, maxval=1.0)
    current, log_pi_current = sample_policy(agent, agent.actor.params, obs, keys.policy, n)
    nxt, log_pi_next = sample_policy(agent, agent.actor.params, batch["next_observations"], keys.next_policy, n)
    actions = jnp.concatenate([random_actions, current, nxt], axis=1)
    return jax.lax.stop_gradient(actions), jax.lax.stop_gradient(log_pi_current), jax.lax.stop_gradient(log_pi_next)


def conservative_members(config: ActorCriticConfig, critic_params, key):
    """(parameters, indices) of the critics the CQL term acts on: all, or a random subset of `critic_subsample`
    drawn independently of the TD target's (with `ConservativeKeys.members`)."""
    if uses_every_critic(config):
        return critic_params, None
    idx = subset_indices(config, key)
    return nets.take_members(critic_params, idx), idx


# ---- losses --------------------------------------------------------------------------------------------------

def critic_loss(critic_params, agent: ActorCritic, batch, target, key):
    config = agent.config
    if config.regularizer == "none":
        q = q_values(agent, critic_params, batch["observations"], batch["actions"])  # (N, B)
        td = jnp.mean((q - target) ** 2)
        return td, {"critic_loss": td, "td_loss": td, "q_data": q.mean(), "target_q": target.mean()}

    n = config.cql_num_actions
    q_all = q_values(agent, critic_params, batch["observations"], batch["actions"])  # (N, B): TD on every member
    td = jnp.mean((q_all - target) ** 2)
    keys = conservative_keys(key)
    actions, log_pi_current, log_pi_next = cql_actions(agent, batch, keys)
    members, idx = conservative_members(config, critic_params, keys.members)
    q = q_all if idx is None else q_all[idx]  # (k, B)
    q_sampled = q_values(agent, members, batch["observations"], actions)  # (k, B, 3n): s_b with each of its 3n a
    q_random, q_current, q_next = q_sampled[..., :n], q_sampled[..., n:2 * n], q_sampled[..., 2 * n:]
    info = {}
    if config.regularizer == "calql":
        q_current, rate_current = cql.calql_lower_bound(q_current, batch["mc_returns"])
        q_next, rate_next = cql.calql_lower_bound(q_next, batch["mc_returns"])
        # Share of ALL 3n sampled values raised (uniform actions are never bounded), as the authors log it.
        info["calql_bound_rate"] = (rate_current + rate_next) / 3.0
    soft_max = cql.cql_soft_max(q_random, q_current, q_next, log_pi_current, log_pi_next, q,
                                action_dim=agent.action_dim, importance_sample=config.cql_importance_sample,
                                temperature=config.cql_temperature)
    gap = cql.cql_penalty(soft_max, q)  # (N,)
    if config.cql_lagrange:
        alpha = jax.lax.stop_gradient(cql.lagrange_alpha(agent.cql_multiplier.params["param"]))
        penalty = alpha * (gap - config.cql_target_gap)
    else:
        alpha = jnp.asarray(config.cql_alpha)
        penalty = alpha * gap
    loss = td + penalty.mean()
    info.update({"critic_loss": loss, "td_loss": td, "q_data": q_all.mean(), "target_q": target.mean(),
                 "cql_gap": gap.mean(), "cql_alpha": alpha, "q_random": q_random.mean(),
                 "q_policy": q_current.mean()})
    return loss, info


def actor_loss(actor_params, agent: ActorCritic, observations, key):
    actions, log_pi = sample_policy(agent, actor_params, observations, key)
    q = min_q_values(agent, agent.critic.params, observations, actions)  # the min over ALL critics
    loss = jnp.mean(temperature_value(agent) * log_pi - q)
    return loss, {"actor_loss": loss, "entropy": -log_pi.mean(), "q_policy_actor": q.mean()}


def temperature_loss(temperature_params, entropy, target):
    return jnp.exp(temperature_params["log_temperature"]) * (entropy - target)


def lagrange_loss(multiplier_params, gap, target_gap):
    """Dual ascent on alpha': minimise -alpha' * (gap - target gap)."""
    return -cql.lagrange_alpha(multiplier_params["param"]) * (gap - target_gap)


# ---- updates -------------------------------------------------------------------------------------------------

def adam_step(state: Optimized, grads, lr: float) -> Optimized:
    updates, opt_state = adam(lr).update(grads, state.opt_state, state.params)
    return Optimized(optax.apply_updates(state.params, updates), opt_state)


def polyak(target, online, tau: float):
    return jax.tree_util.tree_map(lambda t, o: (1 - tau) * t + tau * o, target, online)


def critic_step(agent: ActorCritic, batch):
    config = agent.config
    rng, k_target, k_loss = critic_step_keys(agent.rng)
    target = td_target(agent, batch, k_target)
    grads, info = jax.grad(critic_loss, has_aux=True)(agent.critic.params, agent, batch, target, k_loss)
    critic = adam_step(agent.critic, grads, config.critic_lr)
    agent = agent.replace(critic=critic, target_critic_params=polyak(agent.target_critic_params, critic.params,
                                                                    config.tau), rng=rng)
    return agent, info


def lagrange_step(agent: ActorCritic, gap):
    """One dual step per environment step on the whole batch's gap (the authors step the multiplier with the
    actor, once per `update_high_utd`); `gap` is the mean over the critic steps' minibatch gaps, each taken at
    the critic before its step, as the authors' single update evaluates every loss."""
    multiplier = agent.cql_multiplier
    g = jax.grad(lagrange_loss)(multiplier.params, jax.lax.stop_gradient(gap), agent.config.cql_target_gap)
    return agent.replace(cql_multiplier=adam_step(multiplier, g, agent.config.cql_alpha_lr))


def actor_and_temperature_step(agent: ActorCritic, observations):
    rng, key = actor_step_keys(agent.rng)
    grads, info = jax.grad(actor_loss, has_aux=True)(agent.actor.params, agent, observations, key)
    actor = adam_step(agent.actor, grads, agent.config.actor_lr)
    t_grads = jax.grad(temperature_loss)(agent.temperature.params, info["entropy"], target_entropy(agent))
    temperature = adam_step(agent.temperature, t_grads, agent.config.temperature_lr)
    agent = agent.replace(actor=actor, temperature=temperature, rng=rng)
    info["temperature"] = temperature_value(agent)
    return agent, info


def _update(agent: ActorCritic, batch, update_actor: bool = True):
    """One environment step's worth of learning. `batch` arrays have shape (utd, batch_size, ...)."""
    agent, critic_info = jax.lax.scan(critic_step, agent, batch)
    info = {k: v.mean() for k, v in critic_info.items()}
    if agent.cql_multiplier is not None:
        agent = lagrange_step(agent, info["cql_gap"])
    if update_actor:
        union = batch["observations"].reshape(-1, batch["observations"].shape[-1])
        agent, actor_info = actor_and_temperature_step(agent, union)
        info.update(actor_info)
    return agent, info


update = jax.jit(_update, static_argnames=("update_actor",))


@jax.jit
def sample_actions(agent: ActorCritic, observations, key):
    actions, _ = sample_policy(agent, agent.actor.params, observations, key)
    return actions


@jax.jit
def eval_actions(agent: ActorCritic, observations):
    mean, _ = policy_mean_log_std(agent, agent.actor.params, observations)
    return jnp.tanh(mean)
