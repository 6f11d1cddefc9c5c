"""Local dataset generation (no download): scripted maze planner, uniform random actions, rollouts of a saved
policy with action noise, OGBench's maze and manipulation recipes. Written as D4RL-layout HDF5 (or Minari) with
metadata (recipe, seed, versions, the command that repeats it) and the reference returns of a random policy and
of the generating policy."""

from __future__ import annotations

import json
import math
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from wsrl.datagen import navigate, oracle
from wsrl.datagen.labels import STATE_KEYS
from wsrl.datagen.maze import MazePlanner
from wsrl.datagen.partial import Resumable, partial_path
from wsrl.errors import ConfigError
from wsrl.io.atomic import atomic_path
from wsrl.io.provenance import provenance
from wsrl.tasks import Task, get_task
from wsrl.tasks.registry import POLICIES_DIR

RECIPES = ("maze-planner", "random", "policy", "oracle", "navigate")
REFERENCE_EPISODES = 10
HDF5_SUFFIXES = (".hdf5", ".h5")  # what wsrl.data.loaders reads as a D4RL file


class RandomPolicy:
    def reset(self, env, rng) -> None:
        pass

    def __call__(self, obs, rng):
        return rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)

    def __init__(self, action_dim: int):
        self.action_dim = action_dim


class NoisyPolicy:
    """A callable policy_fn(obs, rng) -> action with Gaussian action noise, clipped to [-1, 1]."""

    def __init__(self, policy_fn: Callable, noise: float):
        self.policy_fn, self.noise = policy_fn, noise

    def reset(self, env, rng) -> None:
        if hasattr(self.policy_fn, "reset"):
            self.policy_fn.reset(env, rng)

    def __call__(self, obs, rng):
        action = np.asarray(self.policy_fn(obs, rng), np.float32)
        if self.noise > 0:
            action = action + self.noise * rng.standard_normal(action.shape).astype(np.float32)
        return np.clip(action, -1.0, 1.0)


def checkpoint_policy(directory: str | Path, obs_dim: int, action_dim: int) -> Callable:
    """A `policy_fn(obs, rng)` sampling the policy saved in a wsrl checkpoint, full or policy-only (refused if
    its sizes do not fit)."""
    import jax

    from wsrl import agents
    from wsrl.io import checkpoint
    agent = checkpoint.load_acting(directory, obs_dim=obs_dim, action_dim=action_dim)

    def policy_fn(obs, rng):
        key = jax.random.PRNGKey(int(rng.integers(2**31)))
        return np.asarray(agents.sample_actions(agent, np.asarray(obs, np.float32)[None], key)[0])
    return policy_fn


def make_policy(recipe: str, task: Task, env, noise: float | None, policy_fn: Callable | None, **kwargs):
    """-> (behaviour policy, the noise it uses)."""
    action_dim = env.action_space.shape[0]
    if recipe == "random":
        return RandomPolicy(action_dim), None
    if recipe == "maze-planner":
        if task.family != "pointmaze" or not hasattr(env.unwrapped, "maze"):
            raise ConfigError(f"recipe 'maze-planner' needs a gymnasium-robotics point maze task such as "
                              f"pointmaze-umaze-v0, not {task.name!r}")
        noise = 0.5 if noise is None else noise  # D4RL maze2d's action noise
        return NoisyPolicy(MazePlanner(**kwargs), noise), noise
    if recipe == "policy":
        if policy_fn is None:
            raise ConfigError("recipe 'policy' rolls out a saved policy: pass --checkpoint DIR")
        noise = 0.1 if noise is None else noise
        return NoisyPolicy(policy_fn, noise), noise
    raise ConfigError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")


def reset_seed(seed: int, episode: int) -> int:
    """Reset seeds of generated data, a stream of their own (never equal to a training run's reset seeds)."""
    return int(np.random.SeedSequence([seed, episode, 0xDA7A]).generate_state(1)[0])


def rollout(env, policy, steps: int, seed: int, resumable: Resumable | None = None) -> dict:
    """`steps` environment steps with resets at episode ends; arrays in D4RL layout plus next_observations."""
    resumable = resumable or Resumable()

    def next_episode(state, steps_left):
        rng = state["rng"]
        obs, _ = env.reset(seed=reset_seed(seed, state["episode"]))
        policy.reset(env, rng)
        rows = {k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
                                "success")}
        for t in range(steps_left):
            action = policy(obs, rng)
            next_obs, reward, terminated, truncated, info = env.step(action)
            truncated = truncated or t == steps_left - 1
            for key, value in (("observations", obs), ("actions", action), ("rewards", reward),
                               ("next_observations", next_obs), ("terminals", terminated), ("timeouts", truncated),
                               ("success", info["success"])):
                rows[key].append(value)
            obs = next_obs
            if terminated or truncated:
                break
        state["episode"] += 1
        return {k: np.asarray(v, bool if k in ("terminals", "timeouts", "success") else np.float32)
                for k, v in rows.items()}

    episodes = resumable.episodes(next_episode, {"rng": np.random.default_rng(seed), "episode": 0}, steps)
    return {k: np.concatenate([e[k] for e in episodes]) for k in episodes[0]}


def episode_stats(arrays: dict) -> tuple[float, float]:
    """Mean return and success rate over the complete episodes of a rollout."""
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    starts = np.concatenate([[0], ends[:-1] + 1])
    returns = [arrays["rewards"][s:e + 1].sum() for s, e in zip(starts, ends)]
    success = [arrays["success"][s:e + 1].any() for s, e in zip(starts, ends)]
    return float(np.mean(returns)), float(np.mean(success))


def reference(task: Task, policy, seed: int) -> dict:
    env = task.make_env(seed)
    arrays = rollout(env, policy, REFERENCE_EPISODES * task.max_episode_steps, seed)
    mean_return, success = episode_stats(arrays)
    return {"return": mean_return, "success_rate": success}


def check_noise(noise: float | None) -> None:
    """NaN or a negative std would silently act as "no noise" (NoisyPolicy adds noise only when noise > 0)."""
    if noise is not None and not (math.isfinite(noise) and noise >= 0):
        raise ConfigError(f"--noise {noise} is not an action noise std: pass a finite number >= 0 (0 for no "
                          f"noise), or leave --noise out for the recipe's default")


def nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists: where `mkdir(parents=True)` would start creating."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_parent_writable(path: Path) -> None:
    """Refuse, before any generation, an output whose directory cannot be created or written to."""
    base = nearest_existing(path.parent)
    if not base.is_dir():
        raise ConfigError(f"cannot write {path}: {base} is a file, not a directory; pass --out under a directory")
    try:  # a real file, not os.access: that misses read-only mounts, ACLs and root on special file systems
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as err:
        raise ConfigError(f"cannot write {path}: directory {base} is not writable ({err.strerror}); pass --out in "
                          f"a writable directory (or make {base} writable)") from None


def check_hdf5_out(path: Path, overwrite: bool = False) -> None:
    """Everything that would make writing `path` fail or destroy data, checked before the data is generated."""
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory; pass a file path such as {path / 'dataset.hdf5'}")
    if path.suffix not in HDF5_SUFFIXES:
        raise ConfigError(f"--out {path} needs the suffix .hdf5 (or .h5), which the loaders read as a D4RL file; "
                          f"pass --out {path.with_suffix('.hdf5')}")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it, or --out another path")
    check_parent_writable(path)


def write_hdf5(path: Path, arrays: dict, metadata: dict, overwrite: bool = False) -> None:
    """Atomically: readers never see half a file, and a failed write leaves no `.tmp` behind."""
    import h5py
    path = Path(path)
    check_hdf5_out(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
            f.create_dataset(key, data=arrays[key], compression="gzip")
        if "success" in arrays:
            f.create_dataset("infos/success", data=arrays["success"])
        for key in STATE_KEYS:  # the state each transition lands in, as D4RL's infos/qpos
            if key in arrays:
                f.create_dataset(f"infos/next_{key}", data=arrays[key], compression="gzip")
        for key, value in metadata.items():
            f.attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value)


def minari_id(task: str) -> str:
    """The Minari id a generated dataset gets by default: wsrl/<task>, versioned as Minari requires."""
    return f"wsrl/{task}" if task[-3:-1] == "-v" or task[-4:-2] == "-v" else f"wsrl/{task}-v0"


def minari_dir(dataset_id: str) -> Path:
    """The directory Minari writes `dataset_id` to (the one `wsrl.data.loaders` reads it from)."""
    from wsrl.data.loaders import minari_root
    return minari_root() / dataset_id


def check_minari_out(dataset_id: str, overwrite: bool = False) -> Path:
    """A valid, writable and (unless `overwrite`) new Minari id, checked before the data is generated."""
    from minari.dataset.minari_dataset import parse_dataset_id
    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):  # (Minari fails on an id without -vN with a TypeError)
        raise ConfigError(f"--out {dataset_id!r} is not a Minari dataset id; pass an id such as "
                          f"{minari_id('my-dataset')} (a name with a -vN version, optionally namespace/)") from None
    path = minari_dir(dataset_id)
    if path.exists() and not overwrite:
        raise ConfigError(f"Minari dataset {dataset_id!r} already exists at {path}; pass --overwrite to replace "
                          f"it, or --out another id")
    check_parent_writable(path)
    return path


def _user_task(options: dict, recipe: str) -> Task:
    from wsrl.tasks.user import user_task
    if recipe not in USER_ENV_RECIPES:
        raise ConfigError(f"recipe {recipe!r} needs a registry task; on your own environment (--env) use "
                          f"{' or '.join(USER_ENV_RECIPES)}")
    unknown = set(options) - {"env", "family", "env_kwargs", "env_module", "max_episode_steps", "success_key"}
    if unknown:
        raise ConfigError(f"unknown environment option(s) {sorted(unknown)}")
    # the family (hyper-parameter preset) does not change generated data; it is only checked when given
    return user_task(options["env"], family=options.get("family") or "locomotion",
                     env_kwargs=options.get("env_kwargs"), env_module=options.get("env_module"),
                     max_episode_steps=options.get("max_episode_steps"), success_key=options.get("success_key"))


def write_minari(dataset_id: str, arrays: dict, env, metadata: dict, overwrite: bool = False,
                 env_spec=None) -> Path:
    """Write with Minari's own writer under $MINARI_DATASETS_PATH; episodes carry T+1 observations. An existing
    dataset is moved aside (hidden, so Minari's listings skip it) until the new one is written."""
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer
    path = check_minari_out(dataset_id, overwrite)
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    starts = np.concatenate([[0], ends[:-1] + 1])
    episodes = [EpisodeBuffer(
        id=i, observations=np.concatenate([arrays["observations"][a:b + 1], arrays["next_observations"][b:b + 1]]),
        actions=arrays["actions"][a:b + 1], rewards=arrays["rewards"][a:b + 1],
        terminations=arrays["terminals"][a:b + 1], truncations=arrays["timeouts"][a:b + 1],
        infos={"success": arrays["success"][a:b + 1]}) for i, (a, b) in enumerate(zip(starts, ends))]
    aside = path.with_name(f".{path.name}.replaced")
    shutil.rmtree(aside, ignore_errors=True)  # left by a killed earlier write
    if path.exists():
        path.rename(aside)
    try:
        dataset = minari.create_dataset_from_buffers(
            dataset_id, episodes, env=env_spec, observation_space=env.observation_space,
            action_space=env.action_space,
            algorithm_name=metadata["generator"], ref_min_score=metadata["ref_random_return"],
            ref_max_score=metadata["ref_generator_return"], description=metadata["command"],
            code_permalink="wsrl " + metadata["git_commit"])
    except BaseException:  # no half-written dataset; the old one, if any, comes back
        shutil.rmtree(path, ignore_errors=True)
        if aside.exists():
            aside.rename(path)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return Path(dataset.spec.data_path)


def write_replay(path: Path, buffer_state: dict, task: Task, metadata: dict) -> Path:
    """A training run's replay buffer as a dataset, rewards mapped back to the task's raw convention."""
    t = task.reward_transform
    arrays = {k: buffer_state[k] for k in ("observations", "actions", "next_observations", "terminals", "timeouts")}
    arrays["rewards"] = ((buffer_state["rewards"] - t.bias) / t.scale).astype(np.float32)
    # the run's own file: a resumed run that had already written it writes it again
    write_hdf5(Path(path), arrays, {"generator": "wsrl.datagen/replay", "task": task.name, **provenance(),
                                    **metadata}, overwrite=True)
    return Path(path)


USER_ENV_RECIPES = ("random", "policy")  # the recipes that work on any environment (--env)


def user_env_words(options: dict) -> list:
    """The command-line words of a user environment's options (`wsrl.config.CommonConfig` names)."""
    words = ["--env", options["env"]]
    for name in ("family", "env_kwargs", "env_module", "max_episode_steps", "success_key"):
        value = options.get(name)
        if value not in (None, {}):
            words += ["--" + name.replace("_", "-"), json.dumps(value) if isinstance(value, dict) else value]
    return words


def generate(recipe: str, task: str | None, out: str | Path | None, *, steps: int, seed: int = 0,
             noise: float | None = None, fmt: str = "hdf5", progress: bool = True, policy_fn: Callable | None = None,
             checkpoint: str | Path | None = None, overwrite: bool = False, env: dict | None = None,
             resume: bool = False, **recipe_kwargs) -> Path:
    """Generate `steps` transitions of `task` with `recipe`, write them to `out` (a file path for hdf5, a dataset
    id under $MINARI_DATASETS_PATH for minari; None: the default path / id); deterministic for a seed. The
    `policy` recipe rolls out the policy of a wsrl `checkpoint` directory or any `policy_fn(obs, rng) -> action`.
    An existing `out` is refused unless `overwrite`; every check on `out` runs before anything is generated.
    A killed generation continues with `resume` from `<out>.partial` (saved about once a minute) and writes the
    dataset an uninterrupted one writes.

    `env`, in place of `task`: your own environment as the options of `--env` (a dict with `env` and optionally
    env_kwargs, env_module, max_episode_steps, success_key, family); recipes `random` and `policy`. Actions are
    stored in the environment's own units (what `--env` training reads), and a Minari dataset records the
    environment's spec, so that `--dataset` alone recovers it."""
    if (task is None) == (env is None):
        raise ConfigError("pass either --task T or --env ID to generate data for")
    spec = get_task(task) if env is None else _user_task(env, recipe)
    if out is None:
        out = minari_id(spec.name) if fmt == "minari" else spec.dataset_path
    if fmt not in ("hdf5", "minari"):
        raise ConfigError(f"unknown format {fmt!r}; choose hdf5 or minari")
    if steps <= 0:
        raise ConfigError(f"steps={steps} must be > 0")
    if (policy_fn is not None or checkpoint is not None) and recipe not in ("policy", "navigate"):
        raise ConfigError(f"a policy (--checkpoint) goes with recipe 'policy' or 'navigate', not {recipe!r}")
    if policy_fn is not None and checkpoint is not None:
        raise ConfigError("pass a checkpoint or a policy_fn, not both")
    check_noise(noise)
    if fmt == "minari":
        target = check_minari_out(str(out), overwrite)
    else:
        check_hdf5_out(Path(out), overwrite)
        target = Path(out)
    identity = {"recipe": recipe, "task": task, "env": env, "steps": steps, "seed": seed, "noise": noise,
                "checkpoint": None if checkpoint is None else str(Path(checkpoint).resolve()),
                "policy_fn": policy_fn is not None, "recipe_kwargs": recipe_kwargs}
    resumable = Resumable(partial_path(target), resume, identity, progress)
    resumable.check(overwrite)
    user_options, env = env, spec.make_env(seed)
    given = checkpoint  # what the command line names; a shipped policy is the task's default and is not named
    if spec.datagen_policy and recipe in ("policy", "navigate") and checkpoint is None and policy_fn is None:
        checkpoint = POLICIES_DIR / spec.datagen_policy  # shipped with the package (docs/tasks-and-data.md)
    if checkpoint is not None:  # (an ant-xy agent sees 27 state dims + 2 direction = the ant maze's 29 dims)
        policy_fn = checkpoint_policy(checkpoint, env.observation_space.shape[0], env.action_space.shape[0])
    if recipe == "oracle":
        if spec.family != "manipulation":
            raise ConfigError(f"recipe 'oracle' runs OGBench's manipulation oracles; task {task!r} is a "
                              f"{spec.family} task (use it with cube, scene or puzzle tasks)")
        arrays, noise = oracle.collect(spec.env_id, steps, seed, noise=noise, resumable=resumable, **recipe_kwargs)
    elif recipe == "navigate":
        if "singletask" not in spec.env_id:
            raise ConfigError(f"recipe 'navigate' runs OGBench's maze recipe; task {task!r} is not an OGBench "
                              f"point or ant maze (use pointmaze-* or antmaze-*-navigate-singletask-* tasks)")
        arrays, noise = navigate.collect(spec.env_id, steps, seed, noise=noise, policy_fn=policy_fn,
                                         resumable=resumable)
    else:
        policy, noise = make_policy(recipe, spec, env, noise, policy_fn, **recipe_kwargs)
        arrays = rollout(env, policy, steps, seed, resumable)
    gen_return, gen_success = episode_stats(arrays)
    random_ref = reference(spec, RandomPolicy(env.action_space.shape[0]), seed + 1)
    if user_options is not None:  # the environment's own units, as a user environment's dataset is read
        arrays["actions"] = spec.action_map.to_env(arrays["actions"])
    where = ["--task", task] if user_options is None else user_env_words(user_options)
    words = ["wsrl", "datagen", *where, "--recipe", recipe, "--steps", steps, "--seed", seed]
    words += ["--noise", noise] if noise is not None else []
    words += ["--oracle", recipe_kwargs.get("kind", "play")] if recipe == "oracle" else []
    words += ["--checkpoint", Path(given).resolve()] if given is not None else []
    command = shlex.join(map(str, words))  # quoted: a path with spaces survives a copy into a shell
    metadata = {"generator": f"wsrl.datagen/{recipe}", "task": spec.name, "seed": seed, "steps": steps,
                "noise": -1.0 if noise is None else noise, "command": command, **provenance(),
                "ref_random_return": random_ref["return"], "ref_random_success": random_ref["success_rate"],
                "ref_generator_return": gen_return, "ref_generator_success": gen_success,
                "recipe_kwargs": recipe_kwargs,
                "shipped_policy": spec.datagen_policy if given is None and checkpoint is not None else ""}
    if fmt == "minari":
        if user_options is not None:  # the raw environment: its spaces and spec, so the dataset recovers it
            from wsrl.tasks.user import make_raw_env
            env = make_raw_env(spec.env_id, user_options.get("env_kwargs") or {}, user_options.get("env_module"),
                               spec.max_episode_steps)
        written = write_minari(str(out), arrays, env, metadata, overwrite,
                               env_spec=env.spec if user_options else None)
    else:
        written = Path(out)
        write_hdf5(written, arrays, metadata, overwrite)
    resumable.finish()
    return written
