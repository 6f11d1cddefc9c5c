"""Several seeds of one learner as one agent: every array gains a leading seed axis, and one jitted call updates
(or acts for) all seeds at once. Each seed keeps its own random key inside its agent, so seed s follows the same
random streams in a group as alone (up to float rounding of the batched kernels)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _module(agent):
    from wsrl.agents import module_of  # the package imports this module
    return module_of(agent)


def stack(members: list):
    """One agent whose arrays have a leading seed axis; every member must share the learner config."""
    configs = {m.config for m in members}
    if len(configs) != 1:
        raise ValueError("stacked seeds must share one learner config")
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *members)


def member(stacked, index: int):
    """Seed `index` of a stacked agent, as a single agent."""
    return jax.tree_util.tree_map(lambda x: x[index], stacked)


def size(stacked) -> int:
    return int(jax.tree_util.tree_leaves(stacked)[0].shape[0])


@functools.partial(jax.jit, static_argnames=("update_actor",))
def update(stacked, batch, update_actor: bool = True):
    """One environment step's learning for every seed: `batch` arrays are (seeds, utd, batch_size, ...)."""
    module = _module(stacked)
    return jax.vmap(lambda agent, b: module._update(agent, b, update_actor=update_actor))(stacked, batch)


@jax.jit
def sample_actions(stacked, observations, keys):
    """observations (seeds, n, obs_dim), keys (seeds, 2) -> actions (seeds, n, action_dim)."""
    module = _module(stacked)
    return jax.vmap(lambda agent, obs, key: module.sample_actions(agent, obs, key))(stacked, observations, keys)


@jax.jit
def eval_actions(stacked, observations):
    module = _module(stacked)
    return jax.vmap(module.eval_actions)(stacked, observations)


@jax.jit
def split_keys(keys):
    """Each seed's key -> (its next key, a key to use now), as `jax.random.split` would give one seed alone."""
    pairs = jax.vmap(jax.random.split)(keys)
    return pairs[:, 0], pairs[:, 1]
