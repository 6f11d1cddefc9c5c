"""Task registry: a task id -> environment, dataset location, reward transform, horizon, metric, references and
hyper-parameter preset. The paper's D4RL names map to modern environments (datasets supplied by the user);
local twins run end to end here with datasets `wsrl datagen` makes."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
from pathlib import Path
from typing import Callable

import numpy as np

from wsrl.data.returns import RewardTransform
from wsrl.errors import ConfigError
from wsrl.tasks import envs


def data_dir() -> Path:
    return Path(os.environ.get("WSRL_DATA_DIR", Path.home() / ".wsrl" / "datasets"))


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    family: str  # antmaze, kitchen, adroit, locomotion, pointmaze, humanoidmaze, antsoccer, manipulation
    env_id: str
    factory: Callable = dataclasses.field(repr=False)
    max_episode_steps: int
    reward_transform: RewardTransform
    sparse_negative_reward: float | None  # the TRANSFORMED per-step failure reward of sparse tasks
    metric: str  # success, final_reward, normalized_return
    ref_min_return: float
    ref_max_return: float
    preset: str  # hyper-parameter family (config.PRESETS)
    datagen_recipe: str | None = None
    # a policy shipped in wsrl/datagen/policies/ that the recipe rolls out when no --checkpoint is given
    datagen_policy: str | None = None
    source_hint: str = ""
    reward_fn: Callable | None = dataclasses.field(default=None, repr=False)  # rewards of OGBench npz files
    # transform(source, data, flags) of a loaded D4RL/Minari file with its per-step infos (loaders.Transform)
    dataset_transform: Callable | None = dataclasses.field(default=None, repr=False)
    # action_map(source, actions) -> actions in [-1, 1] of a loaded file's raw actions (loaders.ActionMap): a user
    # environment's Box bounds (tasks/user.py); registry tasks' datasets already hold [-1, 1] actions
    action_map: Callable | None = dataclasses.field(default=None, repr=False)
    user_env: bool = False  # built from --env (tasks/user.py): it has no default dataset path

    def make_env(self, seed: int):
        env = self.factory(self.max_episode_steps)
        env.reset(seed=seed)
        env.action_space.seed(seed)
        return env

    @property
    def dataset_path(self) -> Path:
        return data_dir() / f"{self.name}.hdf5"

    @property
    def dataset_hint(self) -> str:
        if not self.datagen_recipe:
            return f"Put the dataset at {self.dataset_path} or pass --dataset FILE. {self.source_hint}"
        command = f"wsrl datagen --task {self.name} --recipe {self.datagen_recipe}"
        if self.datagen_recipe == "policy" and not self.datagen_policy:
            command += " --checkpoint RUN/checkpoint"
        return (f"Generate it: `{command}` (writes {self.dataset_path}), or pass --dataset FILE. "
                f"{self.source_hint}").rstrip()


def normalized_score(task: Task, returns, successes, final_rewards=None) -> float:
    """D4RL-style 0-100 score from per-episode returns, successes and last-step rewards: success rate, normalized
    return, or (metric final_reward) the normalized reward of each episode's last step."""
    if task.metric == "success":
        return float(100.0 * np.mean(np.asarray(successes, np.float64)))
    if task.metric == "final_reward":
        if final_rewards is None:
            raise ValueError(f"task {task.name!r} is scored on each episode's last reward: pass final_rewards")
        values = final_rewards  # kitchen: the step's reward counts the sub-tasks done so far (ref 0..4)
    else:
        values = returns
    mean = np.mean(np.asarray(values, np.float64))
    return float(100.0 * (mean - task.ref_min_return) / (task.ref_max_return - task.ref_min_return))


# ---- the table -----------------------------------------------------------------------------------------------

SPARSE_01 = RewardTransform(10.0, -5.0)  # {0, 1} -> {-5, 5}
SPARSE_M10 = RewardTransform(10.0, 5.0)  # {-1, 0} -> {-5, 5}
KITCHEN = RewardTransform(1.0, -4.0)  # 0..4 -> -4..0
IDENTITY = RewardTransform()
KITCHEN_TASKS = {
    "partial": ("microwave", "kettle", "light switch", "slide cabinet"),
    "complete": ("microwave", "kettle", "light switch", "slide cabinet"),
    "mixed": ("microwave", "kettle", "bottom burner", "light switch"),
}
# D4RL reference returns (REF_MIN_SCORE / REF_MAX_SCORE).
LOCOMOTION_REFS = {"hopper": (-20.272305, 3234.3), "halfcheetah": (-280.178953, 12135.0),
                   "walker2d": (1.629008, 4592.3)}
ADROIT = {"pen": ("AdroitHandPen-v1", 100), "door": ("AdroitHandDoor-v1", 200),
          "relocate": ("AdroitHandRelocate-v1", 200)}
LOCOMOTION_ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
OGBENCH_NPZ = "OGBench's own .npz files load too (pass --dataset FILE.npz); rewards are computed from their qpos."
# Policies shipped with the package that datagen rolls out (datagen_policy): the ant walker, locomotion medium policies.
POLICIES_DIR = Path(__file__).resolve().parent.parent / "datagen" / "policies"
TRAIN_MEDIUM = ("`wsrl finetune --task {body}-medium-local-v5 --method sac-fast --num-critics 2 --utd 1 "
                "--save-replay --run-dir RUN`")
MEDIUM_REPLAY = ("It is the replay buffer of the run that trains the medium policy: " + TRAIN_MEDIUM +
                 " writes RUN/replay.hdf5.")
D4RL_FILES = "D4RL HDF5 files (e.g. from a machine that has them) load directly; nothing is downloaded."


# ---- OGBench: every single-task environment OGBench registers -----------------------------------------------
# `import ogbench` registers `<env>-singletask-task<n>-v0` (n = 1..5) and `<env>-singletask-v0`, its alias of the
# environment's default task. A task name adds the dataset type, as OGBench's own dataset names do
# (`<env>-<type>-singletask-task<n>-v0`, what `ogbench.make_env_and_datasets` takes). The package holds no list of
# its datasets, so the types come from the datasets OGBench publishes (its data_gen_scripts/commands.sh):
# kind (the name's first word) -> (family, dataset types).
OGBENCH_KINDS = {
    "pointmaze": ("pointmaze", ("navigate", "stitch")),
    "antmaze": ("antmaze", ("navigate", "stitch", "explore")),
    "humanoidmaze": ("humanoidmaze", ("navigate", "stitch")),
    "antsoccer": ("antsoccer", ("navigate", "stitch")),
    "cube": ("manipulation", ("play", "noisy")),
    "scene": ("manipulation", ("play", "noisy")),
    "puzzle": ("manipulation", ("play", "noisy")),
}
# OGBench publishes explore data for its medium, large and teleport ant mazes only. The two environments it
# registers without a published 1M dataset, humanoidmaze-teleport and cube-octuple (a 100M play set only), take
# their kind's types: cube-octuple's data comes from the oracle recipe, humanoidmaze-teleport's from elsewhere.
OGBENCH_UNPUBLISHED = {("antmaze-giant", "explore")}
OGBENCH_NO_DATASET = ("humanoidmaze-teleport",)


def ogbench_singletask_specs() -> list:
    """The gymnasium specs of OGBench's single-task environments with flat observations, in registration order.
    `visual-*` environments are left out: their observations are images, which wsrl's networks (and the
    user-environment path) do not take."""
    import gymnasium as gym

    import ogbench  # noqa: F401  (registers its environments)
    return [spec for env_id, spec in gym.registry.items()
            if "singletask" in env_id.split("-") and not env_id.startswith("visual-")]


def _ogbench_source_hint(name: str, family: str, env: str, dataset: str) -> str:
    file = f"{env}-{dataset}-v0"
    if family == "antmaze":
        return ("Generated with the shipped ant walker, or with your own ant-xy-v0 agent: --checkpoint RUN/checkpoint. "
                + OGBENCH_NPZ)
    if env in OGBENCH_NO_DATASET:
        return (f"OGBench publishes no {env} dataset: pass --dataset FILE with the qpos of each row (OGBench's "
                f"data_gen_scripts/generate_locomaze.py makes one with its humanoid goal-direction agent).")
    walker = {"humanoidmaze": "a humanoid goal-direction agent (SAC, 40M steps)",
              "antsoccer": "an ant goal-direction agent and an ant ball-dribbling agent (SAC, 12M steps)"}
    if family in walker:
        return (f"Use OGBench's {file}.npz (`ogbench.download_datasets(['{file}'])`, then --dataset FILE.npz; "
                f"rewards are computed from its qpos): OGBench made it with {walker[family]}, which wsrl does not "
                f"train.")
    return OGBENCH_NPZ


def ogbench_tasks() -> list[Task]:
    """One task per OGBench single-task environment (tasks 1..5 and the default-task alias) and dataset type,
    grouped by environment. Mazes and ant soccer reward -1 per step and 0 at the goal (the ball's goal in ant
    soccer), scaled to {-5, 5} with the antmaze preset; manipulation rewards -(sub-goals not yet satisfied), 0 when
    all are, unscaled with the kitchen preset. Horizons are the ones OGBench registers."""
    by_env: dict[str, list] = {}
    for spec in ogbench_singletask_specs():
        parts = spec.id.split("-")
        pos = parts.index("singletask")
        by_env.setdefault("-".join(parts[:pos]), []).append(("-".join(parts[pos:]), spec.max_episode_steps))
    tasks = []
    for env, suffixes in by_env.items():
        if env.split("-")[0] not in OGBENCH_KINDS:
            continue  # a kind this table does not know (a newer OGBench); tests/test_ogbench_registry.py notices
        family, types = OGBENCH_KINDS[env.split("-")[0]]
        recipe = {"pointmaze": "navigate", "antmaze": "navigate", "manipulation": "oracle"}.get(family)
        policy = "ant-xy-walker" if family == "antmaze" else None  # the ant's legs (docs/tasks-and-data.md)
        reward = dict(reward_transform=IDENTITY, sparse_negative_reward=None, preset="kitchen") \
            if family == "manipulation" else dict(reward_transform=SPARSE_M10, sparse_negative_reward=-5.0,
                                                  preset="antmaze")
        for dataset in types:
            if (env, dataset) in OGBENCH_UNPUBLISHED:
                continue
            for suffix, horizon in sorted(suffixes, key=lambda s: (s[0] == "singletask-v0", s[0])):
                name = f"{env}-{dataset}-{suffix}"
                tasks.append(Task(name=name, family=family, env_id=name,
                                  factory=functools.partial(envs.ogbench_singletask, name),
                                  max_episode_steps=horizon, **reward, metric="success", ref_min_return=0.0,
                                  ref_max_return=1.0, datagen_recipe=recipe, datagen_policy=policy,
                                  source_hint=_ogbench_source_hint(name, family, env, dataset),
                                  reward_fn=functools.partial(envs.ogbench_transition_rewards, name)))
    return tasks


def _tasks() -> list[Task]:
    # Keywords shared by many rows.
    success = dict(metric="success", ref_min_return=0.0, ref_max_return=1.0)
    sparse_maze = dict(sparse_negative_reward=-5.0, **success, preset="antmaze")
    locomotion = dict(family="locomotion", max_episode_steps=1000, reward_transform=IDENTITY,
                      sparse_negative_reward=None, metric="normalized_return", preset="locomotion")

    tasks = [Task(name="pointmaze-umaze-v0", family="pointmaze", env_id="PointMaze_UMaze-v3 (fixed start and goal)",
                  factory=envs.pointmaze_umaze, max_episode_steps=300, reward_transform=SPARSE_01, **sparse_maze,
                  datagen_recipe="maze-planner"),
             # The same maze with each action held for 4 steps: the planner reaches the goal in about 33 decisions
             # instead of 130, so a discount of 0.9 sees the goal from the start (the demo's task).
             Task(name="pointmaze-umaze-repeat4-v0", family="pointmaze",
                  env_id="PointMaze_UMaze-v3 (fixed start and goal), each action held for 4 steps",
                  factory=functools.partial(envs.repeated, envs.pointmaze_umaze, 4), max_episode_steps=75,
                  reward_transform=SPARSE_01, **sparse_maze, datagen_recipe="maze-planner")]
    tasks += ogbench_tasks()
    # The goal-direction task OGBench trained its ants' low-level agent on; 100 = 1 m/s along the direction.
    tasks.append(Task(name="ant-xy-v0", env_id="online-ant-v0 + goal direction", factory=envs.ant_goal_direction,
                      **locomotion, ref_min_return=0.0, ref_max_return=100.0, datagen_recipe=None,
                      source_hint="Online only: train with `wsrl finetune --task ant-xy-v0 --method sac-fast`; its "
                                  "checkpoint drives `wsrl datagen --recipe navigate` on the ant mazes."))
    # The paper's D4RL tasks, on modern environments (D4RL antmaze -> OGBench's ant and mazes).
    for maze, ds in (("medium", "play"), ("medium", "diverse"), ("large", "play"), ("large", "diverse")):
        env_id = f"antmaze-{maze}-navigate-singletask-task1-v0"
        tasks.append(Task(name=f"antmaze-{maze}-{ds}-v2", family="antmaze", env_id=env_id,
                          factory=functools.partial(envs.ogbench_singletask, env_id, reward_offset=1.0),
                          max_episode_steps=1000, reward_transform=SPARSE_01, **sparse_maze, datagen_recipe=None,
                          source_hint=D4RL_FILES))
    for name, tasks_ in KITCHEN_TASKS.items():
        tasks.append(Task(name=f"kitchen-{name}-v0", family="kitchen", env_id="FrankaKitchen-v1",
                          factory=functools.partial(envs.franka_kitchen, tasks_), max_episode_steps=280,
                          reward_transform=KITCHEN, sparse_negative_reward=None, metric="final_reward",
                          ref_min_return=0.0, ref_max_return=4.0, preset="kitchen", datagen_recipe=None,
                          source_hint=f"Use Minari's D4RL/kitchen/{name}-v2 (FrankaKitchen-v1 has 59-d observations; "
                                      f"D4RL's own kitchen files have 60)."))
    for name, (env_id, horizon) in ADROIT.items():
        tasks.append(Task(name=f"{name}-binary-v0", family="adroit", env_id=env_id,
                          factory=functools.partial(envs.adroit_binary, env_id), max_episode_steps=horizon,
                          reward_transform=SPARSE_M10, sparse_negative_reward=-5.0, **success, preset="adroit",
                          datagen_recipe=None,
                          source_hint=f"Use Minari's D4RL/{name}/*-v2 or D4RL's {name}-*-v1 HDF5: the binary rewards "
                                      f"come from their success flags (infos success / goal_achieved).",
                          dataset_transform=envs.adroit_binary_dataset))
    for body, env_id in LOCOMOTION_ENVS.items():
        lo, hi = LOCOMOTION_REFS[body]
        for ds in ("random", "medium", "medium-replay", "medium-expert", "expert"):
            tasks.append(Task(name=f"{body}-{ds}-v2", env_id=env_id, factory=functools.partial(envs.locomotion, env_id),
                              **locomotion, ref_min_return=lo, ref_max_return=hi, datagen_recipe=None,
                              source_hint=D4RL_FILES))
        common = dict(env_id=env_id, factory=functools.partial(envs.locomotion, env_id), **locomotion,
                      ref_min_return=lo, ref_max_return=hi)
        tasks.append(Task(name=f"{body}-random-local-v5", **common, datagen_recipe="random"))
        # D4RL's medium recipe: a policy trained online to about a third of expert return, rolled out with noise;
        # medium-replay is that training's replay buffer (docs/tasks-and-data.md, "Locomotion medium data").
        tasks.append(Task(name=f"{body}-medium-local-v5", **common, datagen_recipe="policy",
                          datagen_policy=f"{body}-medium"))
        tasks.append(Task(name=f"{body}-medium-replay-local-v5", **common,
                          source_hint=MEDIUM_REPLAY.format(body=body)))
    return tasks


TASKS: dict[str, Task] = {t.name: t for t in _tasks()}


def get_task(name: str) -> Task:
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown task {name!r}.{hint} `wsrl tasks` lists every task.")
    return TASKS[name]


def list_tasks() -> list[Task]:
    return list(TASKS.values())


def dataset_present(task: Task) -> bool:
    return task.dataset_path.exists()


def describe_tasks() -> list[dict]:
    return [{"name": t.name, "family": t.family, "env_id": t.env_id, "dataset_present": dataset_present(t),
             "how_to_get": t.dataset_hint} for t in list_tasks()]
