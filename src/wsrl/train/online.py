"""Online fine-tuning: WSRL and every baseline, as one loop with options (docs/methods.md).

Per environment step: choose who acts (frozen pre-trained policy during warmup or a JSRL roll-in, uniform
random, or the learner), store the transition, and after the warmup make one jitted learner update on a batch of
`utd` minibatches drawn by the mixer (offline share 0 = no retention; the dataset is then not even kept).
Evaluation, diagnostics and resumable snapshots happen at fixed step counts / episode ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import jax
import numpy as np

from wsrl import agents
from wsrl.config import (CHECKPOINT_ALGORITHM, PRESETS, ConfigError, FinetuneConfig, ResolvedFinetune,
                         resolve_finetune)
from wsrl.data import DataError
from wsrl.data.replay import BatchMixer, ReplayBuffer
from wsrl.io import checkpoint
from wsrl.io.runlog import MetricsLog, Progress
from wsrl.tasks import get_task
from wsrl.train import common, rundir
from wsrl.train.diagnostics import diagnostics

JSRL_GEOMETRIC_P = 0.01  # roll-in length ~ Geometric(1 - 0.99): mean 100 steps (paper App. I)


@dataclasses.dataclass
class Loop:
    """Everything besides the agents and the buffer that a resumed run needs to continue identically."""

    step: int = 0
    episode: int = 0
    last_snapshot: int = 0
    rollin_left: int = 0  # JSRL: steps of the current episode still taken by the pre-trained policy
    rng: dict | None = None
    act_key: list | None = None


def episode_seed(seed: int, episode: int) -> int:
    return seed * 1_000_003 + episode


def build_agents(cfg: FinetuneConfig, resolved: ResolvedFinetune, obs_dim: int, action_dim: int):
    """(learner, frozen pre-trained agent). Without a checkpoint the 'pre-trained' agent is the initial one."""
    if cfg.checkpoint is not None:
        pre_task = checkpoint.read_meta(cfg.checkpoint).get("task")
        if pre_task not in (None, cfg.task):
            raise ConfigError(f"checkpoint {cfg.checkpoint} was pre-trained on task {pre_task!r}, not {cfg.task!r}; "
                              f"pre-train on this task with `wsrl pretrain --task {cfg.task}`")
    if resolved.method.learner == "checkpoint":
        expected = CHECKPOINT_ALGORITHM[cfg.method]
        meta = checkpoint.read_meta(cfg.checkpoint)
        if meta.get("algorithm") not in (None, expected):
            raise ConfigError(f"method {cfg.method!r} continues {expected} training, but {cfg.checkpoint} was "
                              f"pre-trained with {meta['algorithm']}; pre-train with `--algorithm {expected}`")
        checkpoint.check_sizes(meta, obs_dim, action_dim, cfg.checkpoint)
        agent, _ = checkpoint.load(cfg.checkpoint)
        check_continued_options(cfg, agent.config)
        return agent, agent
    agent = checkpoint.warm_start(cfg.checkpoint, resolved.learner, obs_dim, action_dim, init=resolved.init,
                                  seed=cfg.seed) if resolved.init != "none" else \
        agents.create(resolved.learner, obs_dim, action_dim, cfg.seed)
    pre = checkpoint.load(cfg.checkpoint)[0] if cfg.checkpoint else agent
    return agent, pre


def check_continued_options(cfg: FinetuneConfig, saved) -> None:
    """A method that continues its checkpoint's learner cannot change it: options that differ are refused (not
    silently ignored while config.json records them)."""
    given = {"num_critics": (cfg.num_critics, saved.num_critics),
             "critic_hidden_dims": (cfg.critic_hidden_dims, saved.critic_hidden_dims),
             "actor_hidden_dims": (cfg.actor_hidden_dims, saved.actor_hidden_dims),
             "layer_norm": (cfg.layer_norm, saved.critic_layer_norm), "discount": (cfg.discount, saved.discount)}
    problems = [f"{name}: checkpoint has {have}, fine-tuning asks for {want}"
                for name, (want, have) in given.items() if want is not None and want != have]
    if problems:
        raise checkpoint.CheckpointError(
            f"method {cfg.method!r} continues the learner of {cfg.checkpoint}, which these options would change:\n"
            f"  - " + "\n  - ".join(problems) + "\nDrop them or pass the checkpoint's values.")


def needs_dataset(cfg: FinetuneConfig, resolved: ResolvedFinetune) -> bool:
    return resolved.offline_fraction > 0 or resolved.warmup_source == "dataset"


def finetune(cfg: FinetuneConfig) -> Path:
    with contextlib.ExitStack() as lock:
        return _finetune(cfg, lock)


def _finetune(cfg: FinetuneConfig, lock: contextlib.ExitStack) -> Path:
    task = get_task(cfg.task)
    resolved = resolve_finetune(cfg, PRESETS[task.preset], task.max_episode_steps)
    run_dir = common.default_run_dir(cfg, cfg.label or cfg.method)
    record = common.run_record("finetune", cfg, task, method=cfg.label or cfg.method, base_method=cfg.method,
                               algorithm="sac" if resolved.method.learner == "sac" else cfg.method,
                               resolved=resolved)
    start = rundir.prepare(run_dir, cfg.resume, record)
    resume = start == "continue"
    env, eval_env = task.make_env(cfg.seed), task.make_env(cfg.seed + 10_000)
    obs_dim, action_dim = common.env_dims(env)

    # Everything that can fail on bad input happens before the run directory is touched.
    if not resume:
        agent, pre_agent = build_agents(cfg, resolved, obs_dim, action_dim)
    discount = cfg.discount  # the learner's: checked against a loaded checkpoint, recorded for a resumed run
    data, held_out = None, None
    if needs_dataset(cfg, resolved):
        data = common.load_training_data(task, cfg.dataset, obs_dim, action_dim, discount)
    elif cfg.diagnostic_samples > 0 and not resume:
        try:
            data = common.load_training_data(task, cfg.dataset, obs_dim, action_dim, discount)
        except (DataError, FileNotFoundError) as err:
            if cfg.dataset is not None:  # a dataset the user named must load, even for diagnostics only
                raise
            print(f"[wsrl] no offline diagnostics: {err}")
    if resume:
        held_out = _load_held_out(run_dir)
    elif data is not None:
        held_out = common.held_out_sample(data, cfg.diagnostic_samples, cfg.seed)

    buffer = ReplayBuffer(cfg.steps + resolved.warmup_steps + 1, obs_dim, action_dim, gamma=discount,
                          sparse_negative_reward=task.sparse_negative_reward)
    if resolved.offline_fraction == 0 and resolved.warmup_source != "dataset":
        data = None  # no retention: drop the dataset before fine-tuning starts
    rundir.enter(lock, run_dir, start)
    if resume:
        snapshot_dir = rundir.current_snapshot(run_dir)
        agent, _ = checkpoint.load(snapshot_dir / "agent")
        pre_agent, _ = checkpoint.load(run_dir / rundir.STATE_DIR / "pre_agent")
        loop = Loop(**json.loads((snapshot_dir / "loop.json").read_text()))
        buffer.load(snapshot_dir / "buffer.npz")
        rng, act_key = common.rng_from_state(loop.rng), common.key_from_list(loop.act_key)
    else:
        pretrain_meta = checkpoint.read_meta(cfg.checkpoint) if cfg.checkpoint else {}
        common.write_run_config(run_dir, {**record, "pretrain_run": pretrain_meta.get("pretrain_run"),
                                          "pretrain_steps": pretrain_meta.get("pretrain_steps")})
        loop, rng, act_key = Loop(), np.random.default_rng(cfg.seed), jax.random.PRNGKey(cfg.seed + 1)
        if resolved.warmup_source == "dataset":
            fill_from_dataset(buffer, data, resolved.warmup_steps, rng)
            data = data if resolved.offline_fraction > 0 else None
        snapshot_pre_agent(run_dir, pre_agent, obs_dim, held_out)
    mixer = BatchMixer(buffer, data, resolved.offline_fraction)
    warmup_end = resolved.warmup_steps if resolved.warmup_source in ("policy", "uniform") else 0
    # The buffer holds `prefill` rows before the first step (dataset warmup); updates wait for the warmup to end
    # and for more than `update_after` rows.
    prefill = resolved.warmup_steps if resolved.warmup_source == "dataset" else 0
    updates_start = max(warmup_end, resolved.update_after - prefill)

    diagnostic_interval = cfg.diagnostic_interval or cfg.eval_interval
    log = MetricsLog(run_dir)
    log.truncate_after(loop.step)
    progress = Progress(cfg.steps, start=loop.step, enabled=cfg.progress, label=cfg.label or cfg.method)

    def phase() -> str:
        return "warmup" if loop.step < warmup_end else "finetune"

    def record(info: dict, evaluate: bool = True) -> None:
        result = {}
        if evaluate:
            result = common.evaluate(task, eval_env, agent, cfg.eval_episodes,
                                     seed=episode_seed(cfg.seed + 1, loop.step))
            progress.last_score = result["score"]
        online = None
        if len(buffer) > 0:
            online = buffer.sample(np.random.default_rng(loop.step), (cfg.batch_size,))
        diag = diagnostics(agent, pre_agent, held_out, online, jax.random.PRNGKey(loop.step))
        log.write({"step": loop.step, "phase": phase(), **result, **diag,
                   **{f"train/{k}": float(v) for k, v in info.items()}})

    if not resume:
        record({})  # step 0: the pre-trained agent
    obs, _ = env.reset(seed=episode_seed(cfg.seed, loop.episode))
    loop.rollin_left = jsrl_rollin(resolved, cfg, loop.step, rng)
    info = {}
    while loop.step < cfg.steps:
        act_key, key = jax.random.split(act_key)
        action = choose_action(resolved, loop, agent, pre_agent, obs, key, rng, warmup_end, action_dim)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.insert(obs, action, float(task.reward_transform(np.float32(reward))), next_obs, terminated,
                      truncated)
        obs = next_obs
        loop.step += 1
        loop.rollin_left = max(loop.rollin_left - 1, 0)
        if loop.step > updates_start:
            batch = mixer.sample(rng, resolved.utd, cfg.batch_size)
            update_actor = loop.step > updates_start + cfg.freeze_policy_steps
            agent, info = agents.update(agent, batch, update_actor=update_actor)
        if loop.step % cfg.eval_interval == 0 or loop.step == cfg.steps:
            record(info)
        elif loop.step % diagnostic_interval == 0:
            record(info, evaluate=False)
        if terminated or truncated:
            buffer.end_episode(discount, task.sparse_negative_reward)
            loop.episode += 1
            # Snapshots are taken between episodes: the next episode's reset seed is known, so a resumed run
            # continues exactly as an uninterrupted one.
            if loop.step - loop.last_snapshot >= cfg.save_interval and loop.step < cfg.steps:
                loop.last_snapshot = loop.step
                snapshot(run_dir, agent, buffer, loop, rng, act_key, obs_dim)
            obs, _ = env.reset(seed=episode_seed(cfg.seed, loop.episode))
            loop.rollin_left = jsrl_rollin(resolved, cfg, loop.step, rng)
        progress.update(loop.step, phase())
    progress.close(loop.step, phase())
    log.close()
    checkpoint.save(run_dir / "checkpoint", agent, obs_dim=obs_dim,
                    extra={"task": task.name, "method": cfg.method, "online_steps": loop.step})
    if cfg.save_replay:
        from wsrl.datagen import write_replay
        write_replay(run_dir / "replay.hdf5", buffer.state_dict(), task,
                     {"run_dir": str(run_dir.resolve()), "method": cfg.method, "seed": cfg.seed})
    rundir.remove_state(run_dir)
    return run_dir


def choose_action(resolved: ResolvedFinetune, loop: Loop, agent, pre_agent, obs, key, rng, warmup_end: int,
                  action_dim: int) -> np.ndarray:
    if loop.step < warmup_end and resolved.warmup_source == "uniform":
        return rng.uniform(-1.0, 1.0, action_dim).astype(np.float32)
    frozen = loop.step < warmup_end or loop.rollin_left > 0
    actor = pre_agent if frozen else agent
    return np.asarray(agents.sample_actions(actor, obs[None].astype(np.float32), key)[0])


def jsrl_rollin(resolved: ResolvedFinetune, cfg: FinetuneConfig, step: int, rng: np.random.Generator) -> int:
    """JSRL: with probability 0.5, decaying linearly to 0, the episode starts with a Geometric roll-in."""
    if not resolved.method.jsrl:
        return 0
    p = 0.5 * max(0.0, 1.0 - step / cfg.jsrl_horizon_decay_steps)
    return int(rng.geometric(JSRL_GEOMETRIC_P)) if rng.random() < p else 0


def fill_from_dataset(buffer: ReplayBuffer, data, count: int, rng: np.random.Generator) -> None:
    """'Dataset warmup' (paper App. K): K random offline transitions seed the online buffer."""
    if data is None or count > len(data):
        raise DataError(f"dataset warmup needs {count} transitions; the dataset has "
                        f"{0 if data is None else len(data)}")
    for i in np.sort(rng.choice(len(data), size=count, replace=False)):
        buffer.insert(data.observations[i], data.actions[i], float(data.rewards[i]), data.next_observations[i],
                      bool(data.terminals[i]), bool(data.timeouts[i]), mc_return=float(data.mc_returns[i]))
    buffer.episode_start = buffer.cursor  # these rows already carry their returns


def snapshot_pre_agent(run_dir: Path, pre_agent, obs_dim: int, held_out: dict | None) -> None:
    state = run_dir / rundir.STATE_DIR
    checkpoint.save(state / "pre_agent", pre_agent, obs_dim=obs_dim)
    if held_out is not None:
        np.savez(state / "held_out.npz", **held_out)


def _load_held_out(run_dir: Path) -> dict | None:
    path = run_dir / rundir.STATE_DIR / "held_out.npz"
    if not path.exists():
        return None
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def snapshot(run_dir: Path, agent, buffer: ReplayBuffer, loop: Loop, rng, act_key, obs_dim: int) -> None:
    loop.rng, loop.act_key = common.rng_state(rng), common.key_to_list(act_key)

    def write(directory: Path) -> None:
        checkpoint.save(directory / "agent", agent, obs_dim=obs_dim)
        buffer.save(directory / "buffer.npz")
        (directory / "loop.json").write_text(json.dumps(dataclasses.asdict(loop)))

    rundir.write_snapshot(run_dir, loop.step, write)
