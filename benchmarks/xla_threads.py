"""Wall time of real `wsrl` jobs under XLA CPU thread settings, to choose them by measurement on this machine.

    python benchmarks/xla_threads.py [--repeats 5] [--steps 1500]

Jobs, each a fresh `python -m wsrl.cli` process (compile and process start counted, as a user sees them), at the
demo's size (2 critics 64x64, actor 64x64), 3 seeds trained together:
- "finetune": `wsrl finetune --method sac-fast` on the demo's maze (uniform warmup of a third of the steps,
  then SAC with UTD 4; no checkpoint or dataset needed), the job of `benchmarks/seeds_throughput.py`;
- "pretrain": `wsrl pretrain --algorithm cal-ql` for `--steps` gradient steps on a planner dataset of the demo's
  maze generated once before timing (evaluation only at the end).
Settings (the XLA_FLAGS environment variable of the job):
- "default": no flags (XLA's Eigen thread pool over both cores);
- "one thread": `--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`.
One interleaved run: every repeat runs every (job, setting) in turn, the settings' order alternating between
repeats; the median wall time per pair and the median of the per-repeat ratios are printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

from seeds_throughput import SIZES, finetune_command

SETTINGS = {"default": "", "one thread": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
TASK = "pointmaze-umaze-repeat4-v0"
SEEDS = [0, 1, 2]


def pretrain_command(run_dir: str, dataset: str, steps: int) -> list[str]:
    return [sys.executable, "-m", "wsrl.cli", "pretrain", "--task", TASK, "--algorithm", "cal-ql", "--dataset",
            dataset, "--steps", str(steps), "--eval-interval", str(steps), "--eval-episodes", "5",
            "--save-interval", str(10 * steps), "--discount", "0.9", "--init-temperature", "0.05", "--progress",
            "false", "--run-dir", run_dir, "--seeds", ",".join(map(str, SEEDS)), *SIZES["demo"]]


def wall_seconds(command: list[str], flags: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "XLA_FLAGS": flags})
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="wsrl-threads-")
    dataset = f"{root}/data.hdf5"
    subprocess.run([sys.executable, "-m", "wsrl.cli", "datagen", "--task", TASK, "--recipe", "maze-planner",
                    "--steps", "4000", "--out", dataset, "--quiet"], check=True, capture_output=True)
    jobs = {
        "finetune": lambda run_dir: finetune_command(run_dir, SEEDS, "demo", args.steps, task=TASK),
        "pretrain": lambda run_dir: pretrain_command(run_dir, dataset, args.steps),
    }
    times = {(job, s): [] for job in jobs for s in SETTINGS}
    print(f"{platform.machine()}, {os.cpu_count()} cores, load average at start "
          f"{os.getloadavg()[0]:.2f}; {args.repeats} repeats, {args.steps} steps, seeds {SEEDS}", flush=True)
    for r in range(args.repeats):
        order = list(SETTINGS) if r % 2 == 0 else list(reversed(SETTINGS))
        for job, make in jobs.items():
            for setting in order:
                seconds = wall_seconds(make(f"{root}/{job}-{setting.replace(' ', '-')}-{r}"), SETTINGS[setting])
                times[(job, setting)].append(seconds)
                print(f"repeat {r}: {job:<9} {setting:<11} {seconds:7.1f} s", flush=True)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}\n")
    print("| job | default | one thread | ratio (default / one thread) | per-repeat ratios |")
    print("|---|---|---|---|---|")
    for job in jobs:
        base, one = np.array(times[(job, "default")]), np.array(times[(job, "one thread")])
        ratios = base / one
        print(f"| {job} | {np.median(base):.1f} s | {np.median(one):.1f} s | {np.median(ratios):.2f}x | "
              f"{ratios.min():.2f}-{ratios.max():.2f}x |")


if __name__ == "__main__":
    main()
