"""What one seed's step costs for each learner of the study, at candidate network sizes: the figures the study's
budget was chosen from (docs/results.md, "Budget").

    python benchmarks/study_budget.py [--repeats 10] [--sizes 64x64,64x256,128x128,256x256]

Prints a Markdown table, one row per size (critic width x actor width, two hidden layers each), in milliseconds
per call of the compiled update on a fixed random batch (median of --repeats calls), HalfCheetah's observation
and action sizes (17, 6), batch 256:
- WSRL / SAC-fast / RLPD per environment step: the UTD-4 update with 10 LayerNorm critics (4 x 256 rows);
- Cal-QL offline step with 10 LayerNorm critics (what WSRL's default pre-training costs) and with 2 critics (the
  `calql-ft` baseline's pre-training and, at UTD 1, its fine-tuning step);
- IQL step with 10 LayerNorm critics (IQL with WSRL's ensemble; WSRL cannot load an IQL policy, which is an
  un-squashed Gaussian) and with 2 (the `iql-ft` baseline).
Sampling, environment steps and evaluation are not included: multiply by the steps of a run for a lower bound of
its wall time on one core.
"""

from __future__ import annotations

import argparse
import os
import platform

import jax

from update_throughput import measure
from wsrl import agents

OBS_DIM, ACT_DIM, BATCH = 17, 6, 256


def learners(critic: int, actor: int) -> dict:
    """{row name: (learner config, UTD)} at this size."""
    nets = dict(critic_hidden_dims=(critic, critic), actor_hidden_dims=(actor, actor))
    two = dict(num_critics=2, critic_layer_norm=False, actor_layer_norm=False)
    return {
        "WSRL update per env step (UTD 4, 10 Q)": (agents.ActorCriticConfig(**nets), 4),
        "Cal-QL step (10 Q, LN)": (agents.ActorCriticConfig(**nets, regularizer="calql", critic_subsample=2), 1),
        "Cal-QL step (2 Q)": (agents.ActorCriticConfig(**nets, **two, regularizer="calql", critic_subsample=2), 1),
        "IQL step (10 Q, LN)": (agents.IQLConfig(**nets, value_hidden_dims=(critic, critic), num_critics=10,
                                                 critic_layer_norm=True, actor_layer_norm=True), 1),
        "IQL step (2 Q)": (agents.IQLConfig(**nets, value_hidden_dims=(critic, critic)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--sizes", default="64x64,64x256,128x128,256x256", help="criticxactor widths, comma-separated")
    args = parser.parse_args()
    sizes = [tuple(int(w) for w in size.split("x")) for size in args.sizes.split(",")]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; jax {jax.__version__} on {jax.default_backend()}; "
          f"load {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    names = list(learners(64, 64))
    print("| critic x actor | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for critic, actor in sizes:
        cells = []
        for config, utd in learners(critic, actor).values():
            rate, _ = measure(config, OBS_DIM, ACT_DIM, utd, BATCH, args.repeats)
            cells.append(f"{1e3 / rate:.1f} ms")
        print(f"| {critic}x{actor} | " + " | ".join(cells) + " |", flush=True)
    print(f"load after: {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
