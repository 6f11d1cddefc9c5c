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
    family: str  # antmaze, kitchen, adroit, locomotion, pointmaze, manipulation
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
        if self.datagen_recipe:
            return (f"Generate it: `wsrl datagen --task {self.name} --recipe {self.datagen_recipe}` (writes "
                    f"{self.dataset_path}), or pass --dataset FILE.")
        return f"Put the dataset at {self.dataset_path} or pass --dataset FILE. {self.source_hint}"


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
D4RL_FILES = "D4RL HDF5 files (e.g. from a machine that has them) load directly; nothing is downloaded."


def _tasks() -> list[Task]:
    # Keywords shared by many rows.
    success = dict(metric="success", ref_min_return=0.0, ref_max_return=1.0)
    sparse_maze = dict(sparse_negative_reward=-5.0, **success, preset="antmaze")
    ogbench_maze = dict(max_episode_steps=1000, reward_transform=SPARSE_M10, **sparse_maze)
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
    for maze in ("medium", "large"):
        for kind in ("navigate", "stitch"):
            for i in range(1, 6):
                env_id = f"pointmaze-{maze}-{kind}-singletask-task{i}-v0"
                tasks.append(Task(name=env_id, family="pointmaze", env_id=env_id,
                                  factory=functools.partial(envs.ogbench_singletask, env_id), **ogbench_maze,
                                  datagen_recipe="navigate", source_hint=OGBENCH_NPZ,
                                  reward_fn=functools.partial(envs.ogbench_transition_rewards, env_id)))
        for i in range(1, 6):
            env_id = f"antmaze-{maze}-navigate-singletask-task{i}-v0"
            tasks.append(Task(name=env_id, family="antmaze", env_id=env_id,
                              factory=functools.partial(envs.ogbench_singletask, env_id), **ogbench_maze,
                              datagen_recipe=None,
                              source_hint="Make it: train a goal-direction agent (`wsrl finetune --task ant-xy-v0 "
                                          "--method sac-fast`), then `wsrl datagen --task "
                                          f"{env_id} --recipe navigate --checkpoint RUN/checkpoint`. " + OGBENCH_NPZ,
                              reward_fn=functools.partial(envs.ogbench_transition_rewards, env_id)))
    # The goal-direction task OGBench trained its ants' low-level agent on; 100 = 1 m/s along the direction.
    tasks.append(Task(name="ant-xy-v0", env_id="online-ant-v0 + goal direction", factory=envs.ant_goal_direction,
                      **locomotion, ref_min_return=0.0, ref_max_return=100.0, datagen_recipe=None,
                      source_hint="Online only: train with `wsrl finetune --task ant-xy-v0 --method sac-fast`; its "
                                  "checkpoint drives `wsrl datagen --recipe navigate` on the ant mazes."))
    for scene, horizon in (("cube-single-play", 200), ("scene-play", 750), ("puzzle-3x3-play", 500)):
        for i in range(1, 6):
            env_id = f"{scene}-singletask-task{i}-v0"
            tasks.append(Task(name=env_id, family="manipulation", env_id=env_id,
                              factory=functools.partial(envs.ogbench_singletask, env_id), max_episode_steps=horizon,
                              reward_transform=RewardTransform(), sparse_negative_reward=None, **success,
                              preset="kitchen", datagen_recipe="oracle", source_hint=OGBENCH_NPZ,
                              reward_fn=functools.partial(envs.ogbench_transition_rewards, env_id)))
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
        tasks.append(Task(name=f"{body}-random-local-v5", env_id=env_id,
                          factory=functools.partial(envs.locomotion, env_id), **locomotion, ref_min_return=lo,
                          ref_max_return=hi, datagen_recipe="random"))
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
