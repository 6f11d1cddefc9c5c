"""The actor's min over the critic ensemble: autodiff through every critic (dense) against the backward pass through
each state's minimising critic only (grouped, `networks.apply_q_min`).

    python benchmarks/actor_step.py [--repeats 9] [--families antmaze,locomotion] [--critics 10]
                                    [--block-sizes 128,64,256] [--no-update]

For each task family's network sizes (its preset, docs/tasks-and-data.md) and each number of critics, times one
jitted actor + temperature step on the 1,024-state union (4 x 256) and the whole WSRL update (UTD 4, 4 x 256,
one actor step), dense and grouped, alternating call by call (the order rotated every repeat), and prints the median
milliseconds per call and the ratio dense / grouped (> 1: grouped is faster) with the range of the per-repeat
ratios. Extra `--block-sizes` time the grouped actor step with other block sizes as well. The dense formulation
is `sac.dense_min_q_values`, traced in place of `sac.min_q_values`; the grouped one is `networks.apply_q_min`
with `grouped=True`, also with 1 or 2 critics, where the learner takes the dense one.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time
from contextlib import contextmanager

import jax
import numpy as np

from update_throughput import FAMILY_SIZES, random_batch
from wsrl import agents
from wsrl import networks as nets
from wsrl.agents import sac
from wsrl.config import PRESETS


@contextmanager
def min_q_values_as(fn):
    """Trace the actor loss with `fn` as `sac.min_q_values` (module global, looked up at trace time)."""
    saved = sac.min_q_values
    sac.min_q_values = fn
    try:
        yield
    finally:
        sac.min_q_values = saved


def grouped_with(block_size: int):
    """`sac.min_q_values` grouped whatever the number of critics, on blocks of `block_size` rows."""
    def min_q_values(agent, critic_params, observations, actions):
        return nets.apply_q_min(sac.critic_module(agent.config), critic_params, observations, actions,
                                grouped=True, block_size=block_size)
    return min_q_values


def compiled(fn, min_q_values, *args):
    """`fn` jitted and compiled with `min_q_values` in the actor loss -> a call with no arguments."""
    jax.clear_caches()  # `min_q_values` is read at trace time; jit and lax.scan cache traces per function
    with min_q_values_as(min_q_values):
        call = jax.jit(fn).lower(*args).compile()
    return functools.partial(call, *args)


def time_alternating(calls: dict, repeats: int) -> dict:
    """{name: () -> result} -> {name: [seconds per call]}: every repeat calls each once, in turn, starting one
    further along each repeat (a call right after another variant's can be slower: each variant takes each place
    in the order equally often over len(calls) repeats)."""
    for call in calls.values():
        jax.block_until_ready(call())  # first touch
    seconds = {name: [] for name in calls}
    names = list(calls)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            t = time.perf_counter()
            jax.block_until_ready(calls[name]())
            seconds[name].append(time.perf_counter() - t)
    return seconds


def rows_for(family: str, critics: int, block_sizes: list[int], repeats: int, update: bool):
    p = PRESETS[family]
    obs_dim, act_dim = FAMILY_SIZES[family]
    config = agents.ActorCriticConfig(critic_hidden_dims=p.critic_hidden_dims, actor_hidden_dims=p.actor_hidden_dims,
                                      state_dependent_std=p.state_dependent_std, num_critics=critics,
                                      critic_subsample=min(2, critics))
    agent = agents.create(config, obs_dim, act_dim, seed=0)
    batch = jax.device_put(random_batch(obs_dim, act_dim, 4, 256))
    union = batch["observations"].reshape(-1, obs_dim)
    label = lambda bs: f"blocks of {bs}" + (", the default" if bs == nets.MIN_BLOCK_SIZE else "")
    calls = {"actor step, dense": compiled(sac.actor_and_temperature_step, sac.dense_min_q_values, agent, union)}
    for bs in block_sizes:
        calls[f"actor step, grouped ({label(bs)})"] = compiled(sac.actor_and_temperature_step, grouped_with(bs),
                                                               agent, union)
    if update:
        calls["WSRL update, dense"] = compiled(sac._update, sac.dense_min_q_values, agent, batch)
        calls[f"WSRL update, grouped ({label(block_sizes[0])})"] = compiled(sac._update,
                                                                           grouped_with(block_sizes[0]), agent, batch)
    seconds = time_alternating(calls, repeats)
    dense = {"actor": seconds["actor step, dense"], "WSRL": seconds.get("WSRL update, dense")}
    for name, times in seconds.items():
        if name.endswith("dense"):
            continue
        reference = np.asarray(dense[name.split()[0]])
        ratios = reference / np.asarray(times)
        yield (family, critics, name, 1e3 * float(np.median(reference)), 1e3 * float(np.median(times)),
               float(np.median(reference) / np.median(times)), float(ratios.min()), float(ratios.max()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--families", default="antmaze,locomotion")
    parser.add_argument("--critics", default="10", help="comma-separated numbers of critics")
    parser.add_argument("--block-sizes", default=str(nets.MIN_BLOCK_SIZE),
                        help="comma-separated rows per block; the first one is also used in the whole update")
    parser.add_argument("--no-update", action="store_true", help="time the actor step only")
    args = parser.parse_args()
    block_sizes = [int(b) for b in args.block_sizes.split(",")]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}; "
          f"jax {jax.__version__} on {jax.default_backend()}; load average {os.getloadavg()[0]:.2f}\n")
    print("| family | critics | step | dense ms | grouped ms | dense / grouped | per-repeat range |")
    print("|---|---|---|---|---|---|---|")
    for family in args.families.split(","):
        for critics in (int(c) for c in args.critics.split(",")):
            for fam, n, name, dense_ms, grouped_ms, ratio, low, high in rows_for(family, critics, block_sizes,
                                                                                   args.repeats,
                                                                                   not args.no_update):
                print(f"| {fam} | {n} | {name} | {dense_ms:.1f} | {grouped_ms:.1f} | {ratio:.2f}x | "
                      f"{low:.2f}-{high:.2f}x |", flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
