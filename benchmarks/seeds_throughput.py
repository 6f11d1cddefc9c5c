"""Environment steps per second of N seeds: trained together in one process (`--seeds`), one after another in
one process, and as N separate processes run two at a time; and the peak memory of a group against one seed.

    python benchmarks/seeds_throughput.py [--seeds 5] [--size demo|paper] [--steps 1500] [--repeats 2]

Each way runs `wsrl finetune --method sac-fast` on pointmaze-umaze-v0 (uniform warmup, then SAC with UTD 4; no
checkpoint or dataset needed) in fresh processes, so that compile time and process start are counted alike. The
ways are interleaved (rotating order) in every repeat, since the machine is shared; the median is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

SIZES = {
    "demo": ["--critic-hidden-dims", "64,64", "--actor-hidden-dims", "64,64", "--num-critics", "2"],
    "paper": ["--critic-hidden-dims", "256,256,256,256", "--actor-hidden-dims", "256,256", "--num-critics", "10"],
}


def finetune_command(run_dir: str, seeds: list[int], size: str, steps: int,
                     task: str = "pointmaze-umaze-v0") -> list[str]:
    seed_flag = ["--seeds", ",".join(map(str, seeds))] if len(seeds) > 1 else ["--seed", str(seeds[0])]
    return [sys.executable, "-m", "wsrl.cli", "finetune", "--task", task, "--method", "sac-fast",
            "--steps", str(steps), "--warmup-steps", str(steps // 3), "--eval-interval", str(steps),
            "--eval-episodes", "5", "--diagnostic-samples", "0", "--save-interval", str(10 * steps),
            "--progress", "false", "--run-dir", run_dir, *seed_flag, *SIZES[size]]


def timed(commands: list[list[str]], parallel: int) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB of the largest child) of running the commands, `parallel` at a time."""
    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(lambda c: subprocess.run(c, capture_output=True, text=True), commands))
    for result in results:
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(result.args)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def ways(n: int, size: str, steps: int, root: str, repeat: int) -> dict:
    """name -> (commands, how many at a time)."""
    seeds = list(range(n))
    sequential = ("import sys; from wsrl import cli; "
                  + "; ".join(f"cli.main({finetune_command(f'{root}/seq{repeat}/seed{s}', [s], size, steps)[3:]!r})"
                              for s in seeds))
    return {
        f"{n} seeds in one process (--seeds)": ([finetune_command(f"{root}/group{repeat}", seeds, size, steps)], 1),
        f"{n} seeds one after another, one process": ([[sys.executable, "-c", sequential]], 1),
        f"{n} processes, two at a time": (
            [finetune_command(f"{root}/proc{repeat}/seed{s}", [s], size, steps) for s in seeds], 2),
    }


def peak_memory(n: int, size: str, steps: int, root: str) -> float:
    """Peak RSS (MiB) of one process training `n` seeds together (measured in a fresh child each)."""
    probe = ("import resource, sys; from wsrl import cli; "
             f"cli.main({finetune_command(f'{root}/mem{n}', list(range(n)), size, steps)[3:]!r}); "
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--size", choices=tuple(SIZES), default="demo")
    parser.add_argument("--steps", type=int, default=1500, help="environment steps per seed")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.2f}; {args.size} size, {args.steps} steps per seed, {args.seeds} seeds")
    with tempfile.TemporaryDirectory() as root:
        walls: dict[str, list[float]] = {}
        for repeat in range(args.repeats):
            table = ways(args.seeds, args.size, args.steps, root, repeat)
            names = list(table)
            for name in names[repeat % 3:] + names[:repeat % 3]:
                commands, parallel = table[name]
                walls.setdefault(name, []).append(timed(commands, parallel)[0])
        total = args.seeds * args.steps
        base = np.median(walls[names[1]])
        print("| way | wall s (median) | env steps/s | vs one after another |\n|---|---|---|---|")
        for name in names:
            wall = float(np.median(walls[name]))
            print(f"| {name} | {wall:.1f} | {total / wall:.1f} | {base / wall:.2f}x |")
        one, group = peak_memory(1, args.size, args.steps, root), peak_memory(args.seeds, args.size, args.steps, root)
        # a row: observation and next observation (6 each), action (2), reward, terminal, timeout, MC return
        buffer_mib = (args.steps + args.steps // 3 + 1) * (2 * 6 + 2 + 4) * 4 / 2**20
        print(f"peak RSS: 1 seed {one:.0f} MiB, {args.seeds} seeds {group:.0f} MiB: "
              f"{(group - one) / (args.seeds - 1):.1f} MiB per extra seed (its replay buffer: {buffer_mib:.2f} MiB)")


if __name__ == "__main__":
    main()
