"""Kitchen is scored on the sub-tasks done at the end of each episode (the authors' last reward / 4), on real
FrankaKitchen-v1 episodes whose sub-tasks are completed by putting their joints at the goal."""

import mujoco
import numpy as np
from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_GOALS, OBS_ELEMENT_INDICES

from wsrl.tasks import get_task
from wsrl.tasks.registry import KITCHEN_TASKS
from wsrl.train.common import run_episodes, score_episodes

TASK = "kitchen-partial-v0"


def complete(env, names) -> None:
    """Put the sub-tasks' objects at their goal configuration through the MuJoCo data."""
    u = env.unwrapped
    for name in names:
        u.data.qpos[OBS_ELEMENT_INDICES[name]] = OBS_ELEMENT_GOALS[name]
    mujoco.mj_forward(u.model, u.data)


def still_arm(env, schedule: dict):
    """A fixed policy (zero joint velocities: the arm stays put) that completes `schedule[t]` before step t."""
    steps = 0

    def act(obs):
        nonlocal steps
        complete(env, schedule.get(steps, ()))
        steps += 1
        return np.zeros(env.action_space.shape, np.float32)
    return act


def test_kitchen_score_counts_the_sub_tasks_done_at_the_end_of_each_episode():
    task = get_task(TASK)
    env = task.make_env(seed=0)
    microwave, kettle, light, cabinet = KITCHEN_TASKS["partial"]
    schedules = [{50: (microwave,)}, {}, {10: (kettle,), 100: (light,)}, {20: (microwave, kettle, light, cabinet)}]
    episodes, done = [], []
    for i, schedule in enumerate(schedules):
        act = still_arm(env, schedule)
        episodes += run_episodes([env], lambda obs: act(obs[0])[None], [i])
        done.append(len(env.unwrapped.episode_task_completions))  # the environment's own record
    assert done == [len(set(sum(s.values(), ()))) for s in schedules]  # each scheduled sub-task, and only those
    result = score_episodes(task, episodes)
    assert result["score"] == 100.0 * np.mean(done) / 4
    assert [e.final_reward for e in episodes] == done
    # The running count is paid on every step after a completion: the return is not what is scored.
    assert episodes[0].ret > episodes[0].final_reward and result["return"] == np.mean([e.ret for e in episodes])
    assert result["success"] == np.mean([d == 4 for d in done])


def test_kitchen_episode_ends_when_all_four_sub_tasks_are_done():
    """FrankaKitchen-v1 terminates once every sub-task of the task is done, as the authors' kitchen wrapper does
    (done when the reward reaches 4)."""
    task = get_task(TASK)
    env = task.make_env(seed=0)
    env.reset(seed=0)
    first, rest = KITCHEN_TASKS["partial"][:3], KITCHEN_TASKS["partial"][3:]
    complete(env, first)
    _, reward, terminated, truncated, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert reward == 3 and not terminated and not truncated and not info["success"]
    complete(env, rest)
    _, reward, terminated, truncated, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert reward == 4 and terminated and not truncated and info["success"]
