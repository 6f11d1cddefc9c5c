"""Online fine-tuning: WSRL and every baseline, as one loop with options (docs/methods.md), for one seed or a
group of seeds trained together.

Per environment step, for every seed at once: choose who acts (frozen pre-trained policy during warmup or a JSRL
roll-in, uniform random, or the learner) with one batched action call, step each seed's environment, store each
transition in that seed's buffer, and after the warmup make one jitted update of all seeds on a batch of `utd`
minibatches per seed (offline share 0 = no retention; the dataset is then not even kept). Evaluation,
diagnostics and resumable snapshots happen at fixed step counts. Each seed writes its own run directory, exactly
as if it ran alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wsrl import agents
from wsrl.config import (CHECKPOINT_ALGORITHM, PRESETS, ConfigError, FinetuneConfig, FinetunePlan, for_seed,
                         resolve_finetune, run_seeds, seed_run_dir, task_flag)
from wsrl.data import DataError
from wsrl.data.replay import BATCH_KEYS, BatchMixer, ReplayBuffer
from wsrl.errors import CheckpointError
from wsrl.io import checkpoint
from wsrl.io.runlog import progress_bar
from wsrl.tasks import resolve_task
from wsrl.train import common
from wsrl.train.diagnostics import diagnostics
from wsrl.train.run import Run, RunDirError, resume_step

JSRL_GEOMETRIC_P = 0.01  # roll-in length ~ Geometric(1 - 0.99): mean 100 steps (paper App. I)


@dataclasses.dataclass
class Lane:
    """One seed of a group: its environments, buffer, random streams and run directory."""

    seed: int
    run: Run
    env: Any
    eval_envs: list
    buffer: ReplayBuffer
    rng: np.random.Generator
    held_out: dict | None
    mixer: BatchMixer | None = None
    episode: int = 0
    rollin_left: int = 0  # JSRL: steps of the current episode still taken by the pre-trained policy
    obs: np.ndarray | None = None
    done: bool = False
    episode_actions: list = dataclasses.field(default_factory=list)  # replayed on resume to restore the env


# ---- starting points -------------------------------------------------------------------------------------------

def check_pretrained(cfg: FinetuneConfig, plan: FinetunePlan, meta: dict, obs_dim: int, action_dim: int) -> None:
    """The pre-trained agent (its checkpoint metadata) must come from this task and, for a method that continues
    it, from that method's algorithm."""
    source = cfg.checkpoint
    if meta.get("task") not in (None, cfg.task_label):
        raise ConfigError(f"checkpoint {source} was pre-trained on task {meta['task']!r}, not "
                          f"{cfg.task_label!r}; pre-train on this task with `wsrl pretrain {task_flag(cfg)}`")
    if plan.method.learner == "checkpoint" and meta.get("algorithm") not in (None, CHECKPOINT_ALGORITHM[cfg.method]):
        raise ConfigError(f"method {cfg.method!r} continues {CHECKPOINT_ALGORITHM[cfg.method]} training, but "
                          f"{source} was pre-trained with {meta['algorithm']}; pre-train with "
                          f"`--algorithm {CHECKPOINT_ALGORITHM[cfg.method]}`")
    if (meta["obs_dim"], meta["action_dim"]) != (obs_dim, action_dim):
        raise CheckpointError(f"checkpoint {source} does not fit this task: observation/action sizes "
                              f"{meta['obs_dim']}/{meta['action_dim']} in the checkpoint, {obs_dim}/{action_dim} in "
                              f"the task (was it pre-trained on another task?)")


def check_continued_options(cfg: FinetuneConfig, saved) -> None:
    """A method that continues its checkpoint's learner cannot change it: options that differ are refused (not
    silently ignored while config.json records them)."""
    given = {"num_critics": (cfg.num_critics, saved.num_critics),
             "critic_hidden_dims": (cfg.critic_hidden_dims, saved.critic_hidden_dims),
             "actor_hidden_dims": (cfg.actor_hidden_dims, saved.actor_hidden_dims),
             "layer_norm": (cfg.layer_norm, saved.critic_layer_norm), "discount": (cfg.discount, saved.discount),
             "temperature_lr": (cfg.temperature_lr, getattr(saved, "temperature_lr", cfg.temperature_lr))}
    problems = [f"{name}: checkpoint has {have}, fine-tuning asks for {want}"
                for name, (want, have) in given.items() if want is not None and want != have]
    if problems:
        raise CheckpointError(
            f"method {cfg.method!r} continues the learner of {cfg.checkpoint}, which these options would change:\n"
            f"  - " + "\n  - ".join(problems) + "\nDrop them or pass the checkpoint's values.")


def build_agents(cfg: FinetuneConfig, plan: FinetunePlan, obs_dim: int, action_dim: int, pretrained=None):
    """(learner, frozen pre-trained agent, pre-training metadata) of one seed. `pretrained`: (agent, metadata)
    already in memory; otherwise the checkpoint is loaded. Without one the 'pre-trained' agent is the initial
    learner."""
    if cfg.checkpoint is None:
        agent = agents.create(plan.learner, obs_dim, action_dim, cfg.seed)
        return agent, agent, {}
    pre, meta = pretrained or checkpoint.load(cfg.checkpoint)
    check_pretrained(cfg, plan, meta, obs_dim, action_dim)
    if plan.method.learner == "checkpoint":
        check_continued_options(cfg, pre.config)
        return pre, pre, meta
    return agents.warm_start(pre, plan.learner, obs_dim, action_dim, init=plan.init, seed=cfg.seed), pre, meta


def fill_from_dataset(buffer: ReplayBuffer, data, count: int, rng: np.random.Generator) -> None:
    """'Dataset warmup' (paper App. K): K random offline transitions seed the online buffer."""
    if data is None or count > len(data):
        raise DataError(f"dataset warmup needs {count} transitions; the dataset has "
                        f"{0 if data is None else len(data)}")
    for i in np.sort(rng.choice(len(data), size=count, replace=False)):
        buffer.insert(data.observations[i], data.actions[i], float(data.rewards[i]), data.next_observations[i],
                      bool(data.terminals[i]), bool(data.timeouts[i]), mc_return=float(data.mc_returns[i]))
    buffer.episode_start = buffer.cursor  # these rows already carry their returns


def load_offline_data(cfg: FinetuneConfig, plan: FinetunePlan, task, obs_dim: int, action_dim: int, fresh: bool,
                      given=None):
    """The dataset (`given`: Transitions passed through the API) when fine-tuning reads it, or (fresh runs) for
    the held-out diagnostics sample only."""
    if plan.uses_dataset:
        return common.load_training_data(task, cfg.dataset, obs_dim, action_dim, cfg.discount, given)
    if cfg.diagnostic_samples == 0 or not fresh:
        return None
    try:
        return common.load_training_data(task, cfg.dataset, obs_dim, action_dim, cfg.discount, given)
    except (DataError, FileNotFoundError) as err:
        if cfg.dataset is not None:  # a dataset the user named must load, even for diagnostics only
            raise
        print(f"[wsrl] no offline diagnostics: {err}")
        return None


# ---- the loop ------------------------------------------------------------------------------------------------

def finetune(cfg: FinetuneConfig, pretrained: dict | None = None, env=None, data=None,
             inputs: common.Inputs | None = None) -> Path | list[Path]:
    """Run (or resume) fine-tuning; returns the run directory, or with `cfg.seeds` one per seed.
    `pretrained`: {seed: (agent, checkpoint metadata)} already in memory (from `wsrl.api.run`). `env` (a
    Gymnasium id or a function making the environment) and `data` (Transitions) are objects in place of names
    (`common.with_inputs`)."""
    cfg, inputs = common.with_inputs(cfg, env, data, inputs)
    with contextlib.ExitStack() as stack:
        dirs = _finetune(cfg, stack, pretrained or {}, inputs)
    return dirs if cfg.seeds is not None else dirs[0]


def _finetune(cfg: FinetuneConfig, stack: contextlib.ExitStack, pretrained: dict,
              inputs: common.Inputs) -> list[Path]:
    task = resolve_task(cfg, inputs.env_factory)
    plan = resolve_finetune(cfg, PRESETS[task.preset], task.max_episode_steps)
    name = cfg.label or cfg.method
    members = [for_seed(cfg, seed, seed_run_dir(cfg, name, seed)) for seed in run_seeds(cfg)]
    runs = [Run(Path(m.run_dir), cfg.resume, common.run_record(
        "finetune", m, task, method=name, base_method=cfg.method,
        algorithm="sac" if plan.method.learner == "sac" else cfg.method,
        resolved=dataclasses.replace(plan, config=None), **inputs.record))
        for m in members]
    start = resume_step(runs)
    lanes_env = [(task.make_env(m.seed), common.eval_envs(task, m.seed, cfg.eval_episodes)) for m in members]
    obs_dim, action_dim = common.env_dims(lanes_env[0][0])

    # Everything that can fail on bad input happens before any run directory is touched.
    built = [build_agents(m, plan, obs_dim, action_dim, pretrained.get(m.seed)) for m in members] if not start \
        else None
    data = load_offline_data(cfg, plan, task, obs_dim, action_dim, fresh=not start, given=inputs.data)
    fresh_data = data is not None and not start
    data_record = common.dataset_record(task, cfg.dataset, inputs.data, data) if fresh_data else {}
    lanes = []
    for m, run, (env, eval_envs) in zip(members, runs, lanes_env):
        held_out = common.held_out_sample(data, cfg.diagnostic_samples, m.seed) if data is not None else None
        buffer = ReplayBuffer(cfg.steps + plan.warmup_steps + 1, obs_dim, action_dim, gamma=cfg.discount,
                              sparse_negative_reward=task.sparse_negative_reward)
        lanes.append(Lane(m.seed, run, env, eval_envs, buffer, np.random.default_rng(m.seed), held_out))
    if not start and plan.prefill:
        for lane in lanes:
            fill_from_dataset(lane.buffer, data, plan.prefill, lane.rng)
    if plan.offline_fraction == 0:
        data = None  # no retention: the dataset is dropped before fine-tuning starts; no batch can reach it
    for lane in lanes:
        lane.mixer = BatchMixer(lane.buffer, data, plan.offline_fraction)
        lane.run.open(stack, start)

    if start:
        learner, pre, keys = restore(lanes, start, action_dim)
    else:
        for lane, (agent, pre_agent, meta) in zip(lanes, built):
            lane.run.write_config({"pretrain_run": meta.get("pretrain_run"),
                                   "pretrain_steps": meta.get("pretrain_steps"), **data_record})
            lane.run.save_start_agent("pre_agent", pre_agent, obs_dim)
            lane.run.save_start_arrays("held_out", lane.held_out)
        learner = agents.seeds.stack([b[0] for b in built])
        pre = agents.seeds.stack([b[1] for b in built])
        keys = jnp.stack([jax.random.PRNGKey(lane.seed + 1) for lane in lanes])
    return Loop(plan, task, lanes, learner, pre, keys, obs_dim, action_dim).run(start)


def restore(lanes: list[Lane], step: int, action_dim: int):
    """Each seed's learner, buffer, random streams and environment as they were at snapshot `step`: the running
    episode is replayed from its reset seed and recorded actions (the environments are deterministic)."""
    learners, pres, keys = [], [], []
    for lane in lanes:
        directory = lane.run.snapshot_dir(step)
        learners.append(checkpoint.load(directory / "agent")[0])
        pres.append(lane.run.load_start_agent("pre_agent"))
        lane.held_out = lane.run.load_start_arrays("held_out")
        lane.buffer.load(directory / "buffer.npz")
        loop = json.loads((directory / "loop.json").read_text())
        lane.episode, lane.rollin_left = loop["episode"], loop["rollin_left"]
        lane.rng = common.rng_from_state(loop["rng"])
        keys.append(common.key_from_list(loop["act_key"]))
        with np.load(directory / "episode.npz") as f:
            actions, expected = f["actions"], f["obs"]
        lane.obs, _ = lane.env.reset(seed=common.episode_seed(lane.seed, lane.episode))
        for action in actions:
            lane.obs = lane.env.step(action)[0]
        lane.episode_actions = list(actions)
        if not np.array_equal(lane.obs, expected):
            raise RunDirError(f"{lane.run.path}: replaying the running episode of the snapshot of step {step} did "
                              f"not reach the saved state (is the environment deterministic?); start the run again")
    return agents.seeds.stack(learners), agents.seeds.stack(pres), jnp.stack(keys)


@dataclasses.dataclass
class Loop:
    plan: FinetunePlan
    task: Any
    lanes: list[Lane]
    learner: Any  # stacked over seeds
    pre: Any  # the frozen pre-trained agents, stacked over seeds
    keys: Any  # each seed's action key
    obs_dim: int
    action_dim: int

    @property
    def cfg(self) -> FinetuneConfig:
        return self.plan.config

    def run(self, start: int) -> list[Path]:
        plan, cfg = self.plan, self.cfg
        step, info = start, None
        if not start:
            for lane in self.lanes:
                self.start_episode(lane, step)
            self.record(step, None, evaluate=True)  # step 0: the pre-trained agent
        diagnostic_interval = cfg.diagnostic_interval or cfg.eval_interval
        with progress_bar(cfg.steps, start, cfg.progress, cfg.label or cfg.method) as bar:
            while step < cfg.steps:
                actions = self.choose_actions(step)
                for lane, action in zip(self.lanes, actions):
                    self.env_step(lane, action)
                step += 1
                if step > plan.updates_start:
                    batches = self.batches()
                    batch = {k: np.stack([b[k] for b in batches]) for k in BATCH_KEYS}
                    self.learner, info = agents.seeds.update(
                        self.learner, batch, update_actor=step > plan.updates_start + cfg.freeze_policy_steps)
                if step % cfg.eval_interval == 0 or step == cfg.steps:
                    scores = self.record(step, info, evaluate=True)
                    bar.set_postfix_str(f"{self.phase(step)} | score {np.mean(scores):.1f}", refresh=False)
                elif step % diagnostic_interval == 0:
                    self.record(step, info, evaluate=False)
                for lane in self.lanes:
                    if lane.done:
                        lane.buffer.end_episode(cfg.discount, self.task.sparse_negative_reward)
                        lane.episode += 1
                        self.start_episode(lane, step)
                if step % cfg.save_interval == 0 and step < cfg.steps:
                    self.snapshot(step)
                bar.update(1)
        return [self.finish(i, lane, step) for i, lane in enumerate(self.lanes)]

    def phase(self, step: int) -> str:
        return "warmup" if step < self.plan.warmup_end else "finetune"

    def start_episode(self, lane: Lane, step: int) -> None:
        lane.obs, _ = lane.env.reset(seed=common.episode_seed(lane.seed, lane.episode))
        lane.done, lane.episode_actions = False, []
        lane.rollin_left = self.jsrl_rollin(lane.rng, step)

    def jsrl_rollin(self, rng: np.random.Generator, step: int) -> int:
        """JSRL: with probability 0.5, decaying linearly to 0, the episode starts with a Geometric roll-in."""
        if not self.plan.method.jsrl:
            return 0
        p = 0.5 * max(0.0, 1.0 - step / self.cfg.jsrl_horizon_decay_steps)
        return int(rng.geometric(JSRL_GEOMETRIC_P)) if rng.random() < p else 0

    def choose_actions(self, step: int) -> np.ndarray:
        """Each seed's action; every seed's action key advances once per step whoever acts."""
        plan = self.plan
        if step < plan.warmup_end and plan.warmup_source == "uniform":
            self.keys = agents.seeds.split_keys(self.keys)[0]
            return np.stack([lane.rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32) for lane in self.lanes])
        obs = np.stack([lane.obs for lane in self.lanes]).astype(np.float32)[:, None]
        frozen = np.array([step < plan.warmup_end or lane.rollin_left > 0 for lane in self.lanes])
        if frozen.all() or not frozen.any():
            self.keys, actions = agents.seeds.sample_actions(self.pre if frozen.all() else self.learner, obs, self.keys)
            return np.asarray(actions)[:, 0]
        _, pre = agents.seeds.sample_actions(self.pre, obs, self.keys)
        self.keys, own = agents.seeds.sample_actions(self.learner, obs, self.keys)
        return np.where(frozen[:, None], np.asarray(pre)[:, 0], np.asarray(own)[:, 0])

    def env_step(self, lane: Lane, action: np.ndarray) -> None:
        next_obs, reward, terminated, truncated, _ = lane.env.step(action)
        lane.buffer.insert(lane.obs, action, float(self.task.reward_transform(np.float32(reward))), next_obs,
                           terminated, truncated)
        lane.episode_actions.append(action)
        lane.obs, lane.done = next_obs, bool(terminated or truncated)
        lane.rollin_left = max(lane.rollin_left - 1, 0)

    def batches(self) -> list[dict]:
        return [lane.mixer.sample(lane.rng, self.plan.utd, self.cfg.batch_size) for lane in self.lanes]

    def record(self, step: int, info: dict | None, evaluate: bool) -> list[float]:
        """Evaluate (all seeds together) and measure the diagnostics; one metrics record per seed."""
        cfg, results = self.cfg, [{} for _ in self.lanes]
        if evaluate:
            seeds = [common.episode_seed(lane.seed + 1, step) for lane in self.lanes]
            results = common.evaluate(self.task, [lane.eval_envs for lane in self.lanes], self.learner,
                                      cfg.eval_episodes, seeds)
        for i, lane in enumerate(self.lanes):
            # As many replay rows as held-out rows: both samples go through one compiled `measure`.
            rows = len(lane.held_out["rewards"]) if lane.held_out is not None else cfg.batch_size
            online = lane.buffer.sample(np.random.default_rng(step), (rows,)) if len(lane.buffer) else None
            diag = diagnostics(agents.seeds.member(self.learner, i), agents.seeds.member(self.pre, i), lane.held_out,
                               online, jax.random.PRNGKey(step))
            train = {f"train/{k}": float(v[i]) for k, v in (info or {}).items()}
            lane.run.log({"step": step, "phase": self.phase(step), **results[i], **diag, **train})
        return [r.get("score", np.nan) for r in results]

    def snapshot(self, step: int) -> None:
        for i, lane in enumerate(self.lanes):
            def write(directory: Path, i=i, lane=lane) -> None:
                checkpoint.save(directory / "agent", agents.seeds.member(self.learner, i), obs_dim=self.obs_dim)
                lane.buffer.save(directory / "buffer.npz")
                loop = {"step": step, "episode": lane.episode, "rollin_left": lane.rollin_left,
                        "rng": common.rng_state(lane.rng), "act_key": common.key_to_list(self.keys[i])}
                (directory / "loop.json").write_text(json.dumps(loop))
                actions = np.array(lane.episode_actions, np.float32).reshape(-1, self.action_dim)
                np.savez(directory / "episode.npz", actions=actions, obs=lane.obs)
            lane.run.snapshot(step, write)

    def finish(self, i: int, lane: Lane, step: int) -> Path:
        cfg = self.cfg
        if cfg.save_replay:
            from wsrl.datagen import write_replay
            write_replay(lane.run.path / "replay.hdf5", lane.buffer.state_dict(), self.task,
                         {"run_dir": str(lane.run.path.resolve()), "method": cfg.method, "seed": lane.seed})
        lane.run.finish(agents.seeds.member(self.learner, i), self.obs_dim,
                        {"task": self.task.name, "method": cfg.method, "online_steps": step})
        return lane.run.path
