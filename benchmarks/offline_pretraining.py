"""Offline pre-training: one jitted call per gradient step with NumPy minibatches (old) against blocks of 50
steps in one call on a device-resident dataset (new); and evaluation episode by episode (old) against all of a
seed's episodes in lockstep (new).

    python benchmarks/offline_pretraining.py [--repeats 5] [--quick]

(`--quick`: one repeat of the IQL 1-seed and hopper evaluation cases only, to check that the script works.)

One interleaved run: every repeat runs every variant in turn (old and new of a case back to back, their order
alternating between repeats), so load drifts on a shared machine hit both alike; the median over repeats is
reported, with the range of the per-repeat ratios.

1. Gradient steps per second of `wsrl pretrain`'s loop, without evaluation or snapshots:
   "per step" = the previous loop, re-implemented here: each step, every seed draws its minibatch from its own
   `np.random.default_rng(seed)` (`offline_batch(data, rng.integers(0, len(data), size=(1, batch)))`), the
   batches are stacked over seeds and `agents.seeds.update` makes one step for all seeds;
   "blocks" = `agents.seeds.offline_block(stacked, dataset, keys, 50, batch)` on the dataset as device arrays,
   as `wsrl.train.offline` runs it now. Both make the same number of steps per sample, each sample starting
   from the same freshly created agents.
   Cases: Cal-QL at the demo's size (pointmaze-umaze-v0, `wsrl.demo.DemoSettings`: 2 critics 64x64, actor 64x64,
   discount 0.9, initial temperature 0.05) and IQL at locomotion size (hopper-medium-v2, the learner `iql-ft`
   pre-trains: 2 critics, value and actor 256x256, no LayerNorm), with batch 256, for 1 and 3 seeds. Learner
   configs are built as offline.py builds them (`learner_config_for_pretrain(cfg, PRESETS[task.preset])`).
   The datasets are SYNTHETIC: `Transitions` of random numbers (50,000 rows; the task's observation and action
   sizes, sparse 0/1 rewards, 1% terminals, random returns-to-go), so no dataset file is needed. A step's cost
   does not depend on the values (row gathers, dense layers), so this times the loop, not learning.
2. Wall time of one evaluation (10 episodes per seed, 3 seeds) of freshly created, untrained agents:
   "one at a time" = the previous `common.evaluate`, re-implemented here: one environment per seed, the seeds'
   episodes stepped together (`common.run_episodes`), one episode after another;
   "lockstep" = `common.evaluate` on `common.eval_envs` (up to `common.EVAL_LANES` episodes of every seed
   stepped together). Both play the same episodes (same reset seeds, same deterministic policy). Untrained
   hopper episodes fall over and end early; the printed mean episode length says how early.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import jax
import numpy as np

from wsrl import agents
from wsrl.config import PRESETS, FinetuneConfig, PretrainConfig, learner_config_for_pretrain, pretrain_config_for
from wsrl.data.replay import BATCH_KEYS, offline_batch
from wsrl.data.transitions import Transitions
from wsrl.demo import TASK as DEMO_TASK, DemoSettings
from wsrl.tasks import get_task
from wsrl.train import common
from wsrl.train.offline import BLOCK_STEPS, device_dataset, first_sample_keys

ROWS = 50_000
BATCH = 256
EVAL_EPISODES = 10
EVAL_SEEDS = (0, 1, 2)
HOPPER = "hopper-medium-v2"


# ---- learners and data ------------------------------------------------------------------------------------------

def demo_calql_config():
    s = DemoSettings()
    return PretrainConfig(task=DEMO_TASK, algorithm="cal-ql", discount=s.discount, final_init_scale=s.final_init_scale,
                          critic_hidden_dims=s.hidden, actor_hidden_dims=s.hidden, init_temperature=s.init_temperature,
                          num_critics=s.num_critics, batch_size=BATCH)


def hopper_iql_config():
    return dataclasses.replace(pretrain_config_for(FinetuneConfig(task=HOPPER, method="iql-ft")), batch_size=BATCH)


def learner_for(cfg: PretrainConfig):
    task = get_task(cfg.task)
    return task, learner_config_for_pretrain(cfg, PRESETS[task.preset])


def synthetic_data(obs_dim: int, act_dim: int, rows: int, seed: int = 0) -> Transitions:
    """Random numbers of the right shapes and dtypes (timing only)."""
    r = np.random.default_rng(seed)
    data = Transitions.from_arrays(
        "synthetic", observations=r.normal(size=(rows, obs_dim)), actions=r.uniform(-1, 1, (rows, act_dim)),
        rewards=(r.random(rows) < 0.1), next_observations=r.normal(size=(rows, obs_dim)),
        terminals=(r.random(rows) < 0.01), timeouts=np.zeros(rows))
    return data.with_mc_returns(r.normal(size=rows))


# ---- 1. offline training ----------------------------------------------------------------------------------------

def training_variants(cfg: PretrainConfig, n_seeds: int, rows: int) -> dict:
    """{"per step": run(steps), "blocks": run(steps)}: each makes `steps` gradient steps for every seed from
    freshly created agents (the same ones every call) and returns something to block on."""
    task, learner = learner_for(cfg)
    obs_dim, act_dim = common.env_dims(task.make_env(0))
    seeds = list(range(n_seeds))
    data = synthetic_data(obs_dim, act_dim, rows)
    initial = agents.seeds.stack([agents.create(learner, obs_dim, act_dim, seed) for seed in seeds])
    dataset = device_dataset(data)
    initial_keys = first_sample_keys(seeds)

    def per_step(steps: int):  # the previous loop of wsrl.train.offline
        stacked, rngs = initial, [np.random.default_rng(seed) for seed in seeds]
        for _ in range(steps):
            batches = [offline_batch(data, rng.integers(0, len(data), size=(1, cfg.batch_size))) for rng in rngs]
            stacked, info = agents.seeds.update(stacked, {k: np.stack([b[k] for b in batches]) for k in BATCH_KEYS})
        return stacked, info

    def blocks(steps: int):  # the loop now (without evaluation and snapshot boundaries)
        stacked, keys, step = initial, initial_keys, 0
        while step < steps:
            block = min(BLOCK_STEPS, steps - step)
            stacked, keys, info = agents.seeds.offline_block(stacked, dataset, keys, block, cfg.batch_size)
            step += block
        return stacked, info

    return {"per step": per_step, "blocks": blocks}


# ---- 2. evaluation ----------------------------------------------------------------------------------------------

def evaluate_one_at_a_time(task, envs: list, stacked, episodes: int, seeds: list[int]) -> list[dict]:
    """The previous `common.evaluate`: one environment per seed, the seeds stepped together, one episode after
    another (episode e of seed i reset with seeds[i] + e)."""
    def act(observations):
        return np.asarray(agents.seeds.eval_actions(stacked, observations[:, None]))[:, 0]

    per_seed = [[] for _ in envs]
    for e in range(episodes):
        for results, episode in zip(per_seed, common.run_episodes(envs, act, [seed + e for seed in seeds])):
            results.append(episode)
    return [common.score_episodes(task, results) for results in per_seed]


class CountSteps:
    """An environment that counts its steps (used in the untimed warm-up only)."""

    def __init__(self, env):
        self.env, self.steps = env, 0

    def reset(self, **kwargs):
        return self.env.reset(**kwargs)

    def step(self, action):
        self.steps += 1
        return self.env.step(action)


def evaluation_variants(cfg: PretrainConfig) -> tuple[dict, dict, float]:
    """({"one at a time": run(), "lockstep": run()}, {variant: environment steps of one evaluation}, seconds of
    the untimed warm-up of both variants)."""
    task, learner = learner_for(cfg)
    old_envs = [task.make_env(seed + 10_000) for seed in EVAL_SEEDS]  # as the previous pretrain / finetune did
    new_envs = [common.eval_envs(task, seed, EVAL_EPISODES) for seed in EVAL_SEEDS]
    obs_dim, act_dim = common.env_dims(old_envs[0])
    stacked = agents.seeds.stack([agents.create(learner, obs_dim, act_dim, seed) for seed in EVAL_SEEDS])
    episode_seeds = [common.episode_seed(seed, 0) for seed in EVAL_SEEDS]

    def old(envs=old_envs):
        return evaluate_one_at_a_time(task, envs, stacked, EVAL_EPISODES, episode_seeds)

    def new(envs=new_envs):
        return common.evaluate(task, envs, stacked, EVAL_EPISODES, episode_seeds)

    counted_old = [CountSteps(env) for env in old_envs]
    counted_new = [[CountSteps(env) for env in envs] for envs in new_envs]
    started = time.perf_counter()
    scores = old(counted_old), new(counted_new)  # warm-up (compiles eval_actions for both shapes)
    warmup_s = time.perf_counter() - started  # an upper bound of the old variant's time, to size samples
    steps = {"one at a time": sum(e.steps for e in counted_old),
             "lockstep": sum(e.steps for envs in counted_new for e in envs)}
    if [round(s["return"], 3) for s in scores[0]] != [round(s["return"], 3) for s in scores[1]]:
        print(f"note: {cfg.task}: mean returns differ between the variants: {scores}")
    return {"one at a time": old, "lockstep": new}, steps, warmup_s


# ---- timing -----------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    label: str
    kind: str  # "train" (unit: steps/s, higher is better) or "eval" (unit: s, lower is better)
    fns: dict  # variant -> () -> result
    work: int  # gradient steps per call (train) or environment steps per call (eval, the lockstep variant's)
    calls: int = 1
    note: str = ""


def seconds(fn, calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / calls


def training_case(label: str, cfg: PretrainConfig, n_seeds: int, rows: int, sample_s: float) -> Case:
    started = time.perf_counter()
    variants = training_variants(cfg, n_seeds, rows)
    for run in variants.values():
        jax.block_until_ready(run(1))  # compile (the block's step count is traced: any count reuses it)
    per_step = seconds(lambda: variants["per step"](10), 1) / 10  # the slower one, as a rule
    steps = max(BLOCK_STEPS, round(sample_s / per_step / BLOCK_STEPS) * BLOCK_STEPS)
    print(f"  set up {label} in {time.perf_counter() - started:.0f} s", flush=True)
    return Case(label, "train", {name: (lambda run=run: run(steps)) for name, run in variants.items()}, steps)


def evaluation_case(label: str, cfg: PretrainConfig, sample_s: float) -> Case:
    started = time.perf_counter()
    fns, env_steps, warmup_s = evaluation_variants(cfg)
    episodes = EVAL_EPISODES * len(EVAL_SEEDS)
    note = (f"{episodes} episodes, mean length {env_steps['lockstep'] / episodes:.0f} of "
            f"{get_task(cfg.task).max_episode_steps}")
    if env_steps["one at a time"] != env_steps["lockstep"]:
        note += f" (environment steps differ: {env_steps})"
    print(f"  set up {label} in {time.perf_counter() - started:.0f} s", flush=True)
    return Case(label, "eval", fns, env_steps["lockstep"], max(1, round(sample_s / warmup_s)), note)


def run_interleaved(cases: list[Case], repeats: int) -> dict:
    """{(case label, variant): [seconds per call, one per repeat]}."""
    samples = {(c.label, name): [] for c in cases for name in c.fns}
    for repeat in range(repeats):
        for case in cases:
            names = list(case.fns) if repeat % 2 == 0 else list(case.fns)[::-1]
            for name in names:
                samples[(case.label, name)].append(seconds(case.fns[name], case.calls))
        print(f"  repeat {repeat + 1}/{repeats} done, load {load()}", flush=True)
    return samples


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 5, --quick 1)")
    parser.add_argument("--quick", action="store_true",
                        help="check that the script works in about a minute: one repeat of short samples of the "
                             "IQL 1-seed training case and the hopper evaluation only (Cal-QL compiles take long)")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 5)
    train_s, eval_s = (0.5, 0.2) if args.quick else (3.0, 1.0)  # target seconds of an old-variant sample
    load_start = load()
    started = time.perf_counter()

    calql, iql = demo_calql_config(), hopper_iql_config()
    print("compiling and sizing samples ...", flush=True)
    cases = []
    for n_seeds in ((1,) if args.quick else (1, 3)):
        if not args.quick:
            cases.append(training_case(f"Cal-QL demo (pointmaze-umaze, 2 Q 64x64, batch {BATCH}), {n_seeds} "
                                       f"seed(s)", calql, n_seeds, ROWS, train_s))
        cases.append(training_case(f"IQL locomotion (hopper-medium, 2 Q/V/actor 256x256, batch {BATCH}), "
                                   f"{n_seeds} seed(s)", iql, n_seeds, ROWS, train_s))
    if not args.quick:
        cases.append(evaluation_case(f"evaluation pointmaze-umaze (Cal-QL demo size), {len(EVAL_SEEDS)} seeds",
                                     calql, eval_s))
    cases.append(evaluation_case(f"evaluation hopper-medium (IQL 256x256), {len(EVAL_SEEDS)} seeds, untrained: "
                                 f"episodes end early", iql, eval_s))
    setup = time.perf_counter() - started
    samples = run_interleaved(cases, repeats)

    print(f"\nmachine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} cores; python "
          f"{platform.python_version()}, jax {jax.__version__} on {jax.default_backend()}; load average "
          f"(1/5/15 min) at start {load_start}, at end {load()}")
    print(f"median of {repeats} interleaved repeat(s); synthetic random datasets of {ROWS:,} rows; setup "
          f"(compiles) {setup:.0f} s, total {time.perf_counter() - started:.0f} s\n")
    print("| variant | old | new | ratio (old time / new time) | per-repeat ratio range | per sample |")
    print("|---|---|---|---|---|---|")
    for case in cases:
        old_name, new_name = list(case.fns)
        old, new = (np.array(samples[(case.label, name)]) for name in (old_name, new_name))
        ratios = old / new  # speed-up: seconds per call, paired within a repeat
        if case.kind == "train":
            cells = f"{case.work / np.median(old):,.0f} steps/s | {case.work / np.median(new):,.0f} steps/s"
            per = f"{case.work} steps (each a step of every seed)"
        else:
            cells = f"{np.median(old):.2f} s | {np.median(new):.2f} s"
            per = f"{case.calls} evaluation(s); {case.note}"
        print(f"| {case.label}: {old_name} (old) vs {new_name} (new) | {cells} | "
              f"{np.median(old) / np.median(new):.2f}x | {ratios.min():.2f}-{ratios.max():.2f}x | {per} |",
              flush=True)


if __name__ == "__main__":
    main()
