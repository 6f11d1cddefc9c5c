"""Learner throughput on this machine, as a fraction of a float32 matmul ceiling measured in the same run.

    python benchmarks/update_throughput.py [--repeats 20] [--families antmaze,kitchen,adroit,locomotion]

Prints a Markdown table: for each task family's network sizes (its preset, docs/tasks-and-data.md), the WSRL
update (UTD 4, 10 Q, 4x256 batch, one actor step on the 1024 union) in environment steps/s, the same update in the
authors' formulation (all 10 target critics evaluated, then 2 picked), and offline Cal-QL / IQL gradient steps/s.
FLOPs are XLA's own count of the compiled update (`cost_analysis`), so GFLOP/s and "% of ceiling" are measured, not
estimated.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from wsrl import agents
from wsrl.config import PRESETS

# Observation / action sizes of a representative task per family (D4RL layouts).
FAMILY_SIZES = {"antmaze": (29, 8), "kitchen": (59, 9), "adroit": (39, 30), "locomotion": (17, 6)}


def matmul_ceiling(n: int = 1024, repeats: int = 20) -> float:
    """Best float32 GFLOP/s of an n x n matmul."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def random_batch(obs_dim: int, act_dim: int, utd: int, batch: int) -> dict:
    r = np.random.default_rng(0)
    return {"observations": r.normal(size=(utd, batch, obs_dim)).astype(np.float32),
            "actions": r.uniform(-1, 1, (utd, batch, act_dim)).astype(np.float32),
            "rewards": r.normal(size=(utd, batch)).astype(np.float32),
            "next_observations": r.normal(size=(utd, batch, obs_dim)).astype(np.float32),
            "masks": np.ones((utd, batch), np.float32),
            "mc_returns": r.normal(size=(utd, batch)).astype(np.float32)}


def measure(config, obs_dim: int, act_dim: int, utd: int, batch: int, repeats: int) -> tuple[float, float]:
    """-> (updates per second, GFLOP per update)."""
    agent = agents.create(config, obs_dim, act_dim, seed=0)
    data = jax.device_put(random_batch(obs_dim, act_dim, utd, batch))
    module = agents.module_of(agent)
    compiled = jax.jit(module._update).lower(agent, data).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", float("nan")))
    agent, _ = compiled(agent, data)
    jax.block_until_ready(agent)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        agent, _ = compiled(agent, data)
        jax.block_until_ready(agent)
        times.append(time.perf_counter() - t)
    return 1.0 / float(np.median(times)), flops / 1e9


def rows_for(family: str, repeats: int, ceiling: float):
    p = PRESETS[family]
    obs_dim, act_dim = FAMILY_SIZES[family]
    common = dict(critic_hidden_dims=p.critic_hidden_dims, actor_hidden_dims=p.actor_hidden_dims,
                  state_dependent_std=p.state_dependent_std)
    variants = {
        "WSRL update (UTD 4, 10 Q)": (agents.ActorCriticConfig(**common), 4),
        "  authors' formulation (all 10 target Q)": (agents.ActorCriticConfig(**common,
                                                                              evaluate_all_target_critics=True), 4),
        "Cal-QL offline step (10 Q, LN, REDQ)": (agents.ActorCriticConfig(**common, regularizer="calql",
                                                                         critic_subsample=2,
                                                                         backup="max_over_actions"), 1),
        "Cal-QL offline step (2 Q)": (agents.ActorCriticConfig(**common, regularizer="calql", num_critics=2,
                                                              critic_subsample=2, critic_layer_norm=False,
                                                              actor_layer_norm=False, backup="max_over_actions"), 1),
        "IQL offline step (2 Q)": (agents.IQLConfig(critic_hidden_dims=p.critic_hidden_dims,
                                                    value_hidden_dims=p.critic_hidden_dims,
                                                    actor_hidden_dims=p.actor_hidden_dims), 1),
    }
    for name, (config, utd) in variants.items():
        rate, gflop = measure(config, obs_dim, act_dim, utd, 256, repeats)
        yield family, name, rate, gflop, 100 * rate * gflop / ceiling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--families", default=",".join(FAMILY_SIZES))
    args = parser.parse_args()
    ceiling = matmul_ceiling()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}; "
          f"jax {jax.__version__} on {jax.default_backend()}")
    print(f"float32 matmul ceiling (1024x1024): {ceiling:.1f} GFLOP/s\n")
    print("| family | update | per second | GFLOP / update | GFLOP/s | % of ceiling |")
    print("|---|---|---|---|---|---|")
    for family in args.families.split(","):
        for fam, name, rate, gflop, pct in rows_for(family, args.repeats, ceiling):
            print(f"| {fam} | {name} | {rate:.2f} | {gflop:.2f} | {rate * gflop:.1f} | {pct:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
