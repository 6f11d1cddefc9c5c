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
    tasks = [Task("pointmaze-umaze-v0", "pointmaze", "PointMaze_UMaze-v3 (fixed start and goal)",
                  envs.pointmaze_umaze, 300, SPARSE_01, -5.0, "success", 0.0, 1.0, "antmaze", "maze-planner")]
    for maze in ("medium", "large"):
        for kind in ("navigate", "stitch"):
            for i in range(1, 6):
                env_id = f"pointmaze-{maze}-{kind}-singletask-task{i}-v0"
                tasks.append(Task(env_id, "pointmaze", env_id, functools.partial(envs.ogbench_singletask, env_id),
                                  1000, SPARSE_M10, -5.0, "success", 0.0, 1.0, "antmaze", "navigate", OGBENCH_NPZ,
                                  functools.partial(envs.ogbench_transition_rewards, env_id)))
        for i in range(1, 6):
            env_id = f"antmaze-{maze}-navigate-singletask-task{i}-v0"
            tasks.append(Task(env_id, "antmaze", env_id, functools.partial(envs.ogbench_singletask, env_id),
                              1000, SPARSE_M10, -5.0, "success", 0.0, 1.0, "antmaze", None,
                              "Make it: train a goal-direction agent (`wsrl finetune --task ant-xy-v0 --method "
                              f"sac-fast`), then `wsrl datagen --task {env_id} --recipe navigate --checkpoint "
                              "RUN/checkpoint`. " + OGBENCH_NPZ,
                              functools.partial(envs.ogbench_transition_rewards, env_id)))
    # The goal-direction task OGBench trained its ants' low-level agent on; 100 = 1 m/s along the direction.
    tasks.append(Task("ant-xy-v0", "locomotion", "online-ant-v0 + goal direction", envs.ant_goal_direction, 1000,
                      IDENTITY, None, "normalized_return", 0.0, 100.0, "locomotion", None,
                      "Online only: train with `wsrl finetune --task ant-xy-v0 --method sac-fast`; its checkpoint "
                      "drives `wsrl datagen --recipe navigate` on the ant mazes."))
    for scene, horizon in (("cube-single-play", 200), ("scene-play", 750), ("puzzle-3x3-play", 500)):
        for i in range(1, 6):
            env_id = f"{scene}-singletask-task{i}-v0"
            tasks.append(Task(env_id, "manipulation", env_id, functools.partial(envs.ogbench_singletask, env_id),
                              horizon, RewardTransform(), None, "success", 0.0, 1.0, "kitchen", "oracle",
                              OGBENCH_NPZ, functools.partial(envs.ogbench_transition_rewards, env_id)))
    # The paper's D4RL tasks, on modern environments (D4RL antmaze -> OGBench's ant and mazes).
    for maze, ds in (("medium", "play"), ("medium", "diverse"), ("large", "play"), ("large", "diverse")):
        env_id = f"antmaze-{maze}-navigate-singletask-task1-v0"
        tasks.append(Task(f"antmaze-{maze}-{ds}-v2", "antmaze", env_id,
                          functools.partial(envs.ogbench_singletask, env_id, reward_offset=1.0), 1000, SPARSE_01,
                          -5.0, "success", 0.0, 1.0, "antmaze", None, D4RL_FILES))
    for name, tasks_ in KITCHEN_TASKS.items():
        tasks.append(Task(f"kitchen-{name}-v0", "kitchen", "FrankaKitchen-v1",
                          functools.partial(envs.franka_kitchen, tasks_), 280, KITCHEN, None, "final_reward",
                          0.0, 4.0, "kitchen", None,
                          f"Use Minari's D4RL/kitchen/{name}-v2 (FrankaKitchen-v1 has 59-d observations; D4RL's "
                          f"own kitchen files have 60)."))
    for name, (env_id, horizon) in ADROIT.items():
        tasks.append(Task(f"{name}-binary-v0", "adroit", env_id, functools.partial(envs.adroit_binary, env_id),
                          horizon, SPARSE_M10, -5.0, "success", 0.0, 1.0, "adroit", None,
                          f"Use Minari's D4RL/{name}/*-v2 or D4RL's {name}-*-v1 HDF5: the binary rewards come "
                          f"from their success flags (infos success / goal_achieved).",
                          dataset_transform=envs.adroit_binary_dataset))
    for body, env_id in LOCOMOTION_ENVS.items():
        lo, hi = LOCOMOTION_REFS[body]
        for ds in ("random", "medium", "medium-replay", "medium-expert", "expert"):
            tasks.append(Task(f"{body}-{ds}-v2", "locomotion", env_id, functools.partial(envs.locomotion, env_id),
                              1000, IDENTITY, None, "normalized_return", lo, hi, "locomotion", None, D4RL_FILES))
        tasks.append(Task(f"{body}-random-local-v5", "locomotion", env_id, functools.partial(envs.locomotion, env_id),
                          1000, IDENTITY, None, "normalized_return", lo, hi, "locomotion", "random"))
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
