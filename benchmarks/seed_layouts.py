"""How to run one SAC learner update for N random seeds at once on this machine.

    python benchmarks/seed_layouts.py [--quick] [--seeds 1,3,5] [--sizes demo,paper] [--budget 30]

Layouts, each timed as ms per call (one call = one update of all N seeds; median after compile):
  (a) sequential  N dispatches of `sac.update`, one per unstacked agent
  (b) vmap        `jit(vmap(_update))` on the stacked agent and a stacked batch (N, utd, B, ...)
  (c) lax.map     `jit(lax.map(_update))`: the seeds one after another inside one jitted call
  (d) vmap+all-Q  (b) with `evaluate_all_target_critics=True` (no per-seed gather of the target-critic subset)
  (b') vmap critic-only  (b) with `update_actor=False`: the UTD critic steps alone, for scale

Layouts are interleaved within each repeat (rotating order) so that load from other jobs on a shared machine
hits them alike. Each layout's output is also compared with every seed's own `sac.update`. The max abs
difference alone can mislead: Adam's first steps move a parameter by about lr * sign(gradient), so float noise
on a near-zero gradient can flip a few parameters by up to ~lr. The share of critic parameters off by more than
1e-5 separates the cases: a handful (<0.1%) when the seed's RNG stream is kept, most of them (see the "control"
row: seed 0 updated from another rng key) when it is not.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from wsrl.agents import sac

UTD, BATCH = 4, 256
SIZES = {  # name -> (obs_dim, action_dim, config fields)
    "demo": (4, 2, dict(critic_hidden_dims=(64, 64), actor_hidden_dims=(64, 64), num_critics=2,
                        critic_subsample=2, backup="min", critic_layer_norm=True, actor_layer_norm=True)),
    "paper": (29, 8, dict(critic_hidden_dims=(256,) * 4, actor_hidden_dims=(256, 256), num_critics=10,
                          critic_subsample=2, backup="min")),
}

# Module-level jits: one compile per (config, N), shared by every repeat.
vmapped = jax.jit(jax.vmap(functools.partial(sac._update, update_actor=True)))
vmapped_critic_only = jax.jit(jax.vmap(functools.partial(sac._update, update_actor=False)))
mapped = jax.jit(lambda a, b: jax.lax.map(lambda ab: sac._update(*ab), (a, b)))


def stack(trees):
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *trees)


def unstack(tree, n: int):
    return [jax.tree_util.tree_map(lambda x: x[i], tree) for i in range(n)]


def random_batches(obs_dim: int, act_dim: int, n: int) -> dict:
    """A different batch per seed, stacked: (n, utd, B, ...)."""
    r = np.random.default_rng(0)
    shape = (n, UTD, BATCH)
    return jax.device_put({
        "observations": r.normal(size=(*shape, obs_dim)).astype(np.float32),
        "actions": r.uniform(-1, 1, (*shape, act_dim)).astype(np.float32),
        "rewards": r.normal(size=shape).astype(np.float32),
        "next_observations": r.normal(size=(*shape, obs_dim)).astype(np.float32),
        "masks": np.ones(shape, np.float32),
        "mc_returns": r.normal(size=shape).astype(np.float32)})


def sequential(agents, batches):
    return [sac.update(a, b) for a, b in zip(agents, batches)]


def layouts(size: str, n: int, with_critic_only: bool):
    """name -> (function, args, seed i's updated agent from the output, or None: not a full update)."""
    obs_dim, act_dim, fields = SIZES[size]
    agents = [sac.create(sac.ActorCriticConfig(**fields), obs_dim, act_dim, seed=s) for s in range(n)]
    all_q = [sac.create(sac.ActorCriticConfig(**fields, evaluate_all_target_critics=True), obs_dim, act_dim, seed=s)
             for s in range(n)]
    batch = random_batches(obs_dim, act_dim, n)
    seq_out = lambda out: [agent for agent, _ in out]
    stacked_out = lambda out: unstack(out[0], n)
    result = {
        "(a) sequential": (sequential, (agents, unstack(batch, n)), seq_out),
        "(b) vmap": (vmapped, (stack(agents), batch), stacked_out),
        "(c) lax.map": (mapped, (stack(agents), batch), stacked_out),
        "(d) vmap+all-Q": (vmapped, (stack(all_q), batch), stacked_out),
    }
    if with_critic_only:
        result["(b') vmap critic-only"] = (vmapped_critic_only, (stack(agents), batch), None)
    return result, agents, unstack(batch, n)


def critic_diff(x, y) -> tuple[float, float]:
    """(max |x - y|, share of elements off by more than 1e-5) over two critics' parameters."""
    pairs = list(zip(jax.tree_util.tree_leaves(x.critic.params), jax.tree_util.tree_leaves(y.critic.params)))
    worst = max(float(jnp.max(jnp.abs(a - b))) for a, b in pairs)
    off = sum(int(jnp.sum(jnp.abs(a - b) > 1e-5)) for a, b in pairs) / sum(a.size for a, _ in pairs)
    return worst, off


def check_against_single_seed(table, first_outputs, agents, batches) -> dict:
    """Per layout, the worst seed's difference from `sac.update` of that seed alone, i.e. from (a)'s output."""
    reference = table["(a) sequential"][2](first_outputs["(a) sequential"])
    diffs = {}
    for name, (_, _, per_seed) in table.items():
        if per_seed is not None:
            pairs = [critic_diff(o, r) for o, r in zip(per_seed(first_outputs[name]), reference)]
            diffs[name] = (max(p[0] for p in pairs), max(p[1] for p in pairs))
    # Scale of a broken RNG stream: the same seed and batch, updated from another rng key.
    other_rng = agents[0].replace(rng=jax.random.fold_in(agents[0].rng, 1))
    diffs["control"] = critic_diff(sac.update(other_rng, batches[0])[0], reference[0])
    return diffs


def time_interleaved(table, max_repeats: int, budget: float) -> tuple[dict, int, dict]:
    """-> (median seconds per call of each layout, repeats done, each layout's first (compiling) call's output).

    The order rotates every repeat; repeats stop once `budget` seconds are spent (at least 3 of them), so the
    slow paper-size N = 5 case gets fewer repeats instead of blowing the run time.
    """
    names = list(table)
    first = {name: jax.block_until_ready(fn(*args)) for name, (fn, args, _) in table.items()}
    times = {name: [] for name in names}
    start = time.perf_counter()
    for r in range(max_repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, args, _ = table[name]
            t = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - t)
        if r + 1 >= 3 and time.perf_counter() - start > budget:
            break
    return {name: float(np.median(ts)) for name, ts in times.items()}, r + 1, first


def report(size: str, n: int, times: dict, repeats: int, diffs: dict) -> None:
    base = times["(a) sequential"]
    for name, t in times.items():
        diff = f"{diffs[name][0]:.1e} | {100 * diffs[name][1]:.3f}%" if name in diffs else "- | -"
        print(f"| {size} | {n} | {name} | {1e3 * t:.2f} | {1e3 * t / n:.2f} | {base / t:.2f}x | {repeats} | {diff} |",
              flush=True)
    worst, off = diffs["control"]
    print(f"| {size} | {n} | control: seed 0, other rng key | | | | | {worst:.1e} | {100 * off:.1f}% |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,3,5", help="comma-separated N values")
    parser.add_argument("--sizes", default="demo,paper", help=f"comma-separated, from {','.join(SIZES)}")
    parser.add_argument("--repeats", type=int, default=15, help="most timed calls per layout (median reported)")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds of timed calls per (size, N)")
    parser.add_argument("--no-critic-only", action="store_true", help="skip the (b') critic-only row")
    parser.add_argument("--quick", action="store_true", help="N in 1,3 and 3 repeats")
    args = parser.parse_args()
    seeds = [1, 3] if args.quick else [int(s) for s in args.seeds.split(",")]
    repeats, budget = (3, 0.0) if args.quick else (args.repeats, args.budget)

    print(f"jax {jax.__version__} on {jax.default_backend()} ({len(jax.devices())} device); "
          f"{os.cpu_count()} cpus, {len(os.sched_getaffinity(0))} usable; {platform.machine()}; "
          f"load average {os.getloadavg()[0]:.2f}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"utd {UTD}, batch {BATCH}; speed = ms per seed of (a) / ms per seed of the layout; "
          f"diff = vs each seed's own sac.update (worst seed), off = share of critic params off by > 1e-5\n")
    print("| size | N | layout | ms/call | ms/seed | per-seed speed vs (a) | repeats | max abs diff | off |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        for n in seeds:
            table, agents, batches = layouts(size, n, not args.no_critic_only)
            times, done, first = time_interleaved(table, repeats, budget)
            report(size, n, times, done, check_against_single_seed(table, first, agents, batches))


if __name__ == "__main__":
    main()
