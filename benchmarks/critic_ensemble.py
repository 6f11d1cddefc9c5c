"""Critic-ensemble evaluation: flax apply under `jax.vmap` (old) against the einsum apply (new).

    python benchmarks/critic_ensemble.py [--repeats 7] [--sample-ms 200] [--skip-antmaze]

Times, interleaved (every repeat runs every variant in turn for ~`--sample-ms`), the median milliseconds per
call of
1. the Q-ensemble forward and value_and_grad w.r.t. the critic parameters over B x n rows (the CQL term's shape):
   "old" = `networks.apply_ensemble` (vmap of flax's apply) on observations broadcast to the actions' shape, as
   sac.py used to call it; "new" = `networks.apply_q_ensemble` on (B, obs_dim) observations; and two ablations
   of "new": on the broadcast observations (no per-state observation term), and in one piece (no chunks);
2. one jitted `sac.update` (Cal-QL at demo and antmaze sizes, the WSRL fine-tuning update at antmaze size) with
   `sac.q_values` in its old formulation ("old") against the current one ("new").
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from contextlib import contextmanager

import jax
import jax.numpy as jnp
import numpy as np

from wsrl import networks as nets
from wsrl.agents import sac


def broadcast_obs(observations, actions):
    """(B, obs_dim) -> actions' leading shape + (obs_dim,), as the call sites in sac.py used to do it."""
    extra = actions.ndim - observations.ndim
    obs = observations.reshape(observations.shape[:-1] + (1,) * extra + observations.shape[-1:])
    return jnp.broadcast_to(obs, actions.shape[:-1] + observations.shape[-1:])


def old_q_values(agent, critic_params, observations, actions):
    """The previous `sac.q_values` (vmap of flax apply on broadcast observations)."""
    obs = broadcast_obs(observations, actions)
    return nets.apply_ensemble(sac.critic_module(agent.config), critic_params, obs, actions)


@contextmanager
def q_values_as(fn):
    """Trace sac's losses with `fn` as `sac.q_values` (module global, looked up at trace time)."""
    saved = sac.q_values
    sac.q_values = fn
    try:
        yield
    finally:
        sac.q_values = saved


def time_interleaved(fns: dict, repeats: int, sample_ms: float) -> dict:
    """{name: () -> result} -> {name: median ms per call}. Every repeat runs every fn in turn, each for about
    `sample_ms` (a number of back-to-back calls fixed from its warm-up), so load drifts hit all variants alike."""
    calls = {}
    for name, fn in fns.items():
        jax.block_until_ready(fn())  # compile / first-touch
        t = time.perf_counter()
        jax.block_until_ready(fn())
        calls[name] = max(1, round(sample_ms / 1e3 / (time.perf_counter() - t)))
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(calls[name]):
                out = fn()
            jax.block_until_ready(out)
            samples[name].append((time.perf_counter() - t) / calls[name] * 1e3)
    return {name: float(np.median(v)) for name, v in samples.items()}


# ---- 1. the ensemble alone ---------------------------------------------------------------------------------

def ensemble_fns(hidden, members: int, obs_dim: int, act_dim: int, batch: int, n: int) -> dict:
    module = nets.QFunction(hidden, layer_norm=True)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = nets.init_ensemble(module, keys[0], members, jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)))
    obs = jax.random.normal(keys[1], (batch, obs_dim))
    act = jax.random.uniform(keys[2], (batch, n, act_dim), minval=-1, maxval=1)
    variants = {
        "old": lambda p, o, a: nets.apply_ensemble(module, p, broadcast_obs(o, a), a),
        "new, obs broadcast": lambda p, o, a: nets.apply_q_ensemble(module, p, broadcast_obs(o, a), a),
        "new, no chunks": lambda p, o, a: nets.apply_q_ensemble(module, p, o, a, chunk_elements=None),
        "new": lambda p, o, a: nets.apply_q_ensemble(module, p, o, a),
    }
    transforms = {"forward": jax.jit, "value_and_grad": lambda q: jax.jit(jax.value_and_grad(
        lambda p, o, a: q(p, o, a).mean()))}
    return {(measure, name): lambda f=transform(q): f(params, obs, act)
            for measure, transform in transforms.items() for name, q in variants.items()}


# ---- 2. the whole update -----------------------------------------------------------------------------------

def random_batch(obs_dim: int, act_dim: int, utd: int, batch: int) -> dict:
    r = np.random.default_rng(0)
    return jax.device_put({"observations": r.normal(size=(utd, batch, obs_dim)).astype(np.float32),
                           "actions": r.uniform(-1, 1, (utd, batch, act_dim)).astype(np.float32),
                           "rewards": r.normal(size=(utd, batch)).astype(np.float32),
                           "next_observations": r.normal(size=(utd, batch, obs_dim)).astype(np.float32),
                           "masks": np.ones((utd, batch), np.float32),
                           "mc_returns": r.normal(size=(utd, batch)).astype(np.float32)})


def update_fns(config, obs_dim: int, act_dim: int, utd: int, batch: int) -> dict:
    data = random_batch(obs_dim, act_dim, utd, batch)
    fns = {}
    for name, q in (("old", old_q_values), ("new", sac.q_values)):
        agent = sac.create(config, obs_dim, act_dim, seed=0)
        jax.clear_caches()  # `q_values` is read at trace time; jit and lax.scan cache traces per function
        with q_values_as(q):
            compiled = jax.jit(sac._update).lower(agent, data).compile()
        state = {"agent": agent}

        def step(compiled=compiled, state=state):
            state["agent"], _ = compiled(state["agent"], data)
            return state["agent"]
        fns[name] = step
    return fns


def calql_config(critic_hidden, actor_hidden, num_critics: int, **extra):
    return sac.ActorCriticConfig(critic_hidden_dims=critic_hidden, actor_hidden_dims=actor_hidden,
                                 num_critics=num_critics, critic_subsample=2, backup="max_over_actions",
                                 regularizer="calql", cql_lagrange=True, discount=0.9, init_temperature=0.05,
                                 **extra)


def cases(skip_antmaze: bool):
    """(label, fns factory): ensemble-only rows first, then whole updates."""
    yield "Q ensemble, demo (2 x 64x64 LN, 256x31 rows, obs 4, act 2)", lambda: ensemble_fns((64, 64), 2, 4, 2,
                                                                                              256, 31)
    yield "Cal-QL update, demo (2 Q 64x64, obs 4, act 2, batch 1x256)", lambda: update_fns(
        calql_config((64, 64), (64, 64), 2), 4, 2, 1, 256)
    if skip_antmaze:
        return
    big = (256, 256, 256, 256)
    yield "Q ensemble, antmaze (10 x 256^4 LN, 256x31 rows, obs 29, act 8)", lambda: ensemble_fns(big, 10, 29, 8,
                                                                                                 256, 31)
    for members in (2, 10):
        yield f"Cal-QL update, antmaze ({members} Q 256^4, obs 29, act 8, batch 1x256)", lambda m=members: update_fns(
            calql_config(big, (256, 256), m), 29, 8, 1, 256)
    yield "WSRL/SAC update, antmaze (10 Q 256^4, UTD 4, batch 4x256)", lambda: update_fns(
        sac.ActorCriticConfig(critic_hidden_dims=big, actor_hidden_dims=(256, 256)), 29, 8, 4, 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sample-ms", type=float, default=200.0)
    parser.add_argument("--skip-antmaze", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}; "
          f"python {platform.python_version()}, jax {jax.__version__} on {jax.default_backend()}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"median of {args.repeats} interleaved repeats of ~{args.sample_ms:g} ms each\n")
    print("| case | measure | variant | ms | old / variant |")
    print("|---|---|---|---|---|")
    for label, make in cases(args.skip_antmaze):
        ms = time_interleaved(make(), args.repeats, args.sample_ms)
        for key, value in ms.items():
            measure, variant = key if isinstance(key, tuple) else ("update", key)
            old = ms[(measure, "old") if isinstance(key, tuple) else "old"]
            print(f"| {label} | {measure} | {variant} | {value:.2f} | {old / value:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
