"""Implicit Q-Learning (Kostrikov et al.): expectile value, Q through V(s'), advantage-weighted actor.

Same calling convention as `wsrl.agents.sac`: one jitted `update(agent, batch)` per step, batch arrays with a
leading UTD axis; the value and Q-functions take one step per minibatch, the actor one step on their union.
The policy is a Gaussian, actions clipped to [-1, 1] when acting (the authors' IQL). With `tanh_mean` the
Gaussian's mean is tanh(m) (as CORL's IQL): its deterministic action tanh(m) is then exactly that of SAC's
tanh-Gaussian with the same network, so a SAC learner (WSRL) can start from it (paper Fig. 24). Squashing the
whole Gaussian instead would fit atanh of the dataset's clipped +-1 actions, outliers that stall the actor.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct as struct
import jax
import jax.numpy as jnp

from wsrl import networks as nets
from wsrl.errors import ConfigError
from wsrl.agents.sac import Optimized, actor_step_keys, adam_step, check_positive, optimized, polyak


@dataclasses.dataclass(frozen=True)
class IQLConfig:
    critic_hidden_dims: tuple[int, ...] = (256, 256)
    value_hidden_dims: tuple[int, ...] = (256, 256)
    actor_hidden_dims: tuple[int, ...] = (256, 256)
    critic_layer_norm: bool = False
    actor_layer_norm: bool = False
    state_dependent_std: bool = False
    tanh_mean: bool = False  # the Gaussian's mean is tanh(m): acts as SAC's tanh-Gaussian with the same network
    actor_dropout: float = 0.0  # dropout in the actor's hidden layers while training (authors: 0.1 on kitchen, adroit)
    num_critics: int = 2
    expectile: float = 0.7
    beta: float = 3.0  # inverse temperature of the advantage weights
    max_weight: float = 100.0
    discount: float = 0.99
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4

    def __post_init__(self):
        if not 0.0 < self.expectile < 1.0:
            raise ConfigError(f"expectile={self.expectile} must be in (0, 1)")
        if not 0.0 <= self.discount < 1.0:
            raise ConfigError(f"discount={self.discount} must be in [0, 1)")
        if not 0.0 <= self.actor_dropout < 1.0:
            raise ConfigError(f"actor_dropout={self.actor_dropout} must be in [0, 1)")
        for name in ("beta", "max_weight", "actor_lr", "critic_lr", "value_lr", "num_critics", "tau"):
            check_positive(name, getattr(self, name))


class IQL(struct.PyTreeNode):
    actor: Optimized
    critic: Optimized
    target_critic_params: Any
    value: Optimized
    rng: jax.Array
    config: IQLConfig = struct.field(pytree_node=False)
    action_dim: int = struct.field(pytree_node=False)


def critic_module(config: IQLConfig):
    return nets.QFunction(config.critic_hidden_dims, config.critic_layer_norm)


def value_module(config: IQLConfig):
    return nets.ValueFunction(config.value_hidden_dims, config.critic_layer_norm)


def actor_module(config: IQLConfig, action_dim: int):
    return nets.GaussianPolicy(config.actor_hidden_dims, action_dim, config.actor_layer_norm,
                               config.state_dependent_std, dropout_rate=config.actor_dropout)


def create(config: IQLConfig, obs_dim: int, action_dim: int, seed: int) -> IQL:
    rng, k_actor, k_critic, k_value = jax.random.split(jax.random.PRNGKey(seed), 4)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
    critic_params = nets.init_ensemble(critic_module(config), k_critic, config.num_critics, obs, act)
    return IQL(
        actor=optimized(actor_module(config, action_dim).init(k_actor, obs), config.actor_lr),
        critic=optimized(critic_params, config.critic_lr),
        target_critic_params=critic_params,
        value=optimized(value_module(config).init(k_value, obs), config.value_lr),
        rng=rng,
        config=config,
        action_dim=action_dim,
    )


def q_values(agent: IQL, critic_params, observations, actions):
    return nets.apply_ensemble(critic_module(agent.config), critic_params, observations, actions)


def expectile_loss(diff, expectile: float):
    """Asymmetric squared loss |tau - 1(diff < 0)| * diff^2 (diff = Q - V)."""
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff**2


def value_loss(value_params, agent: IQL, batch):
    q = q_values(agent, agent.target_critic_params, batch["observations"], batch["actions"]).min(axis=0)
    v = value_module(agent.config).apply(value_params, batch["observations"])
    loss = expectile_loss(q - v, agent.config.expectile).mean()
    return loss, {"value_loss": loss, "v": v.mean()}


def policy_mean_log_std(agent: IQL, actor_params, observations, dropout_key=None):
    """Without `dropout_key` the actor is deterministic (acting, evaluation, diagnostics)."""
    if dropout_key is None:
        return actor_module(agent.config, agent.action_dim).apply(actor_params, observations)
    return actor_module(agent.config, agent.action_dim).apply(actor_params, observations, train=True,
                                                              rngs={"dropout": dropout_key})


def td_target(agent: IQL, batch, key=None):
    """r + gamma * mask * V(s') (IQL never evaluates Q at s'). `key` is unused; kept for a common signature."""
    next_v = value_module(agent.config).apply(agent.value.params, batch["next_observations"])
    return batch["rewards"] + agent.config.discount * batch["masks"] * next_v


def critic_loss(critic_params, agent: IQL, batch):
    target = td_target(agent, batch)
    q = q_values(agent, critic_params, batch["observations"], batch["actions"])
    loss = jnp.mean((q - target) ** 2)
    return loss, {"critic_loss": loss, "q_data": q.mean(), "target_q": target.mean()}


def action_mean(config: IQLConfig, mean):
    """The Gaussian's mean in action space: tanh(m) with `tanh_mean`, else the network's output."""
    return jnp.tanh(mean) if config.tanh_mean else mean


def awr_weights(advantages, beta: float, max_weight: float):
    return jnp.minimum(jnp.exp(beta * advantages), max_weight)


def actor_loss(actor_params, agent: IQL, batch, dropout_key=None):
    obs = batch["observations"]
    v = value_module(agent.config).apply(agent.value.params, obs)
    q = q_values(agent, agent.target_critic_params, obs, batch["actions"]).min(axis=0)
    weights = jax.lax.stop_gradient(awr_weights(q - v, agent.config.beta, agent.config.max_weight))
    mean, log_std = policy_mean_log_std(agent, actor_params, obs, dropout_key)
    log_prob = nets.gaussian_log_prob(action_mean(agent.config, mean), log_std, batch["actions"])
    loss = -jnp.mean(weights * log_prob)
    return loss, {"actor_loss": loss, "adv": (q - v).mean(), "awr_weight": weights.mean()}


def value_and_critic_step(agent: IQL, batch):
    config = agent.config
    grads, v_info = jax.grad(value_loss, has_aux=True)(agent.value.params, agent, batch)
    agent = agent.replace(value=adam_step(agent.value, grads, config.value_lr))
    grads, q_info = jax.grad(critic_loss, has_aux=True)(agent.critic.params, agent, batch)
    critic = adam_step(agent.critic, grads, config.critic_lr)
    agent = agent.replace(critic=critic,
                          target_critic_params=polyak(agent.target_critic_params, critic.params, config.tau))
    return agent, {**v_info, **q_info}


def _update(agent: IQL, batch, update_actor: bool = True):
    agent, info = jax.lax.scan(value_and_critic_step, agent, batch)
    info = {k: v.mean() for k, v in info.items()}
    if update_actor:
        union = jax.tree_util.tree_map(lambda x: x.reshape(-1, *x.shape[2:]), batch)
        rng, key = actor_step_keys(agent.rng)
        key = key if agent.config.actor_dropout > 0 else None
        grads, actor_info = jax.grad(actor_loss, has_aux=True)(agent.actor.params, agent, union, key)
        agent = agent.replace(actor=adam_step(agent.actor, grads, agent.config.actor_lr), rng=rng)
        info.update(actor_info)
    return agent, info


update = jax.jit(_update, static_argnames=("update_actor",))


@jax.jit
def sample_actions(agent: IQL, observations, key):
    mean, log_std = policy_mean_log_std(agent, agent.actor.params, observations)
    mean = action_mean(agent.config, mean)
    return jnp.clip(mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape), -1.0, 1.0)


@jax.jit
def eval_actions(agent: IQL, observations):
    mean, _ = policy_mean_log_std(agent, agent.actor.params, observations)
    return jnp.clip(action_mean(agent.config, mean), -1.0, 1.0)
