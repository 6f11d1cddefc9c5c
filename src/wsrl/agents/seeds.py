"""Several seeds of one learner as one agent: every array gains a leading seed axis, and one jitted call updates
(or acts for) all seeds at once. Each seed keeps its own random key inside its agent.

The seeds are processed one after another inside the jitted call (`lax.map`), not vectorised (`vmap`): measured
here (benchmarks/seed_layouts.py, docs/performance.md) it is as fast or faster per seed on a CPU, and it runs
each seed's single-seed computation, so seed s of a group is seed s alone up to float rounding (XLA may fuse the
computation differently inside the loop)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from wsrl.data.transitions import to_batch


def _module(agent):
    from wsrl.agents import module_of  # the package imports this module
    return module_of(agent)


def stack(members: list):
    """One agent whose arrays have a leading seed axis; every member must share the learner config."""
    configs = {m.config for m in members}
    if len(configs) != 1:
        raise ValueError("stacked seeds must share one learner config")
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *members)


@jax.jit
def member(stacked, index):
    """Seed `index` of a stacked agent, as a single agent. One jitted call: sliced leaf by leaf outside a jit,
    each of the agent's ~80 arrays was its own dispatch (about 1.5 s of a 25 s demo-size run, docs/performance.md)."""
    return jax.tree_util.tree_map(lambda x: x[index], stacked)


@functools.partial(jax.jit, static_argnames=("update_actor",))
def update(stacked, batch, update_actor: bool = True):
    """One environment step's learning for every seed: `batch` arrays are (seeds, utd, batch_size, ...)."""
    module = _module(stacked)
    return jax.lax.map(lambda args: module._update(*args, update_actor=update_actor), (stacked, batch))


def draw_batch(dataset: dict, key, batch_size: int) -> dict:
    """A (utd 1, batch_size) minibatch of whole rows of `dataset`, drawn uniformly with replacement."""
    return to_batch(dataset, jax.random.randint(key, (1, batch_size), 0, dataset["rewards"].shape[0]))


@functools.partial(jax.jit, static_argnames=("batch_size",))
def offline_block(stacked, dataset: dict, sample_keys, steps, batch_size: int):
    """`steps` offline gradient steps for every seed in one call (the step count is traced: one compilation).

    Each step, seed s draws `batch_size` rows of `dataset` (device arrays named as `Transitions` fields) uniformly
    with replacement, from its own key `sample_keys[s]`. Returns (agents, next sample keys, the last step's info)."""
    module = _module(stacked)

    def step(carry):
        learners, keys = carry
        keys, use = split_keys(keys)
        batch = jax.vmap(draw_batch, in_axes=(None, 0, None))(dataset, use, batch_size)
        learners, info = jax.lax.map(lambda args: module._update(*args), (learners, batch))
        return (learners, keys), info

    no_info = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                     jax.eval_shape(lambda c: step(c)[1], (stacked, sample_keys)))
    (stacked, sample_keys), info = jax.lax.fori_loop(0, steps, lambda _, state: step(state[0]),
                                                     ((stacked, sample_keys), no_info))
    return stacked, sample_keys, info


@jax.jit
def sample_actions(stacked, observations, keys):
    """observations (seeds, n, obs_dim), keys (seeds, 2) -> (each seed's next key, actions (seeds, n, action_dim)),
    each seed's action drawn with `jax.random.split(key)[1]` as one seed alone would (one call per step)."""
    module = _module(stacked)
    keys, use = split_keys(keys)
    return keys, jax.lax.map(lambda args: module.sample_actions(*args), (stacked, observations, use))


@jax.jit
def eval_actions(stacked, observations):
    module = _module(stacked)
    return jax.lax.map(lambda args: module.eval_actions(*args), (stacked, observations))


@jax.jit
def split_keys(keys):
    """Each seed's key -> (its next key, a key to use now), as `jax.random.split` would give one seed alone."""
    pairs = jax.lax.map(jax.random.split, keys)
    return pairs[:, 0], pairs[:, 1]
