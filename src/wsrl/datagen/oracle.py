"""Manipulation datasets from OGBench's own scripted oracles (`ogbench.manipspace.oracles`), the recipe OGBench
used for its cube / scene / puzzle data: the environment in data-collection mode picks a new target (move a
cube, press a button, open a drawer or window) whenever the oracle finishes one, for 1,000-step episodes.

- `play`: the plan oracle (keyframes with temporally correlated noise, `noise` = 0.1 by default);
- `noisy`: the closed-loop Markov oracle plus Gaussian action noise of std ~ U(0, `noise`) per episode, scaled
  (1, 1, 1, 3, 10) over (x, y, z, yaw, gripper), and a uniform random action in place of the oracle's with
  probability 0.1 (cube, scene) or 0.2 (puzzle), OGBench's `p_random_action`.

Every cube (single to octuple), scene and puzzle (3x3 to 4x6) environment uses these oracles, as in OGBench; a
cube target lands on another cube with OGBench's per-episode probability for the number of cubes.

Rewards are those of the singletask task: OGBench's `relabel_dataset` applied to the state each transition
starts from, as the singletask environment scores it online (before the action); `terminals` marks a transition
that starts solved (the trajectory goes on, as in D4RL antmaze).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from wsrl.datagen.labels import STATE_KEYS, episode_seed, global_numpy_seed, join_and_label
from wsrl.errors import ConfigError
from wsrl.datagen.partial import Resumable
from wsrl.tasks.envs import ogbench_env_names

KINDS = ("play", "noisy")
EPISODE_STEPS = 1000
RANDOM_ACTION = {"puzzle": 0.2}  # noisy data: how often a random action replaces the oracle's (else 0.1)


def make_oracles(collection_env_name: str, env, kind: str, noise: float) -> dict:
    """target task -> oracle, as OGBench's data-collection script sets them up."""
    from ogbench.manipspace.oracles.markov import button_markov, cube_markov, drawer_markov, window_markov
    from ogbench.manipspace.oracles.plan import button_plan, cube_plan, drawer_plan, window_plan
    if kind == "noisy":
        make = {"cube": cube_markov.CubeMarkovOracle, "button": button_markov.ButtonMarkovOracle,
                "drawer": drawer_markov.DrawerMarkovOracle, "window": window_markov.WindowMarkovOracle}
        kw = {"min_norm": 0.4}
    else:
        make = {"cube": cube_plan.CubePlanOracle, "button": button_plan.ButtonPlanOracle,
                "drawer": drawer_plan.DrawerPlanOracle, "window": window_plan.WindowPlanOracle}
        kw = {"noise": noise, "noise_smoothing": 0.5}
    if collection_env_name.startswith("cube"):
        return {"cube": make["cube"](env=env, **kw)}
    if collection_env_name.startswith("puzzle"):
        return {"button": make["button"](env=env, gripper_always_closed=True, **kw)}
    if collection_env_name.startswith("scene"):
        cube_kw = {"max_step": 100} if kind == "noisy" else {}
        return {"cube": make["cube"](env=env, **kw, **cube_kw), **{k: make[k](env=env, **kw)
                                                                 for k in ("button", "drawer", "window")}}
    raise ConfigError(f"no OGBench oracle for {collection_env_name!r}; the oracle recipe covers cube, scene and "
                      f"puzzle tasks")


def stack_probability(collection_env_name: str) -> float:
    """How often a new cube target is on top of another cube (OGBench's per-episode draw)."""
    ranges = {"single": (0.0, 0.0), "double": (0.0, 0.25), "triple": (0.05, 0.35), "quadruple": (0.1, 0.5),
              "octuple": (0.0, 0.35)}
    for name, (lo, hi) in ranges.items():
        if f"-{name}-" in collection_env_name:
            return float(np.random.uniform(lo, hi))
    return 0.5


def random_action_probability(collection_env_name: str, kind: str) -> float:
    """OGBench's `p_random_action` of its noisy datasets (play data has none)."""
    return RANDOM_ACTION.get(collection_env_name.split("-")[0], 0.1) if kind == "noisy" else 0.0


def healthy(collection_env_name: str, qpos: np.ndarray) -> bool:
    """Scene episodes whose cube leaves the visible table (other than into the drawer) are redone, as OGBench
    does."""
    if not collection_env_name.startswith("scene"):
        return True
    xyz = qpos[:, 14:17]
    too_right = (xyz[:, 1] >= 0.29).any()
    too_left = ((xyz[:, 1] <= -0.3) & ((xyz[:, 2] < 0.06) | (xyz[:, 2] > 0.08))).any()
    return not (too_right or too_left)


def oracle_episode(env, oracles: dict, kind: str, noise: float, steps: int, name: str, seed: int) -> dict:
    """One episode of `steps` transitions with the oracles switching targets; per-step arrays."""
    obs, info = env.reset(seed=seed)
    p_stack = stack_probability(name)
    xi = np.random.uniform(0, noise) if kind == "noisy" else 0.0
    p_random = random_action_probability(name, kind)
    oracle = oracles[info["privileged/target_task"]]
    oracle.reset(obs, info)
    rows = {k: [] for k in ("observations", "actions", "next_observations", *STATE_KEYS,
                            *(f"prev_{k}" for k in STATE_KEYS))}
    for _ in range(steps):
        if p_random > 0 and np.random.rand() < p_random:
            action = np.random.uniform(-1, 1, env.action_space.shape)
        else:
            action = np.asarray(oracle.select_action(obs, info), np.float64)
            if kind == "noisy":
                action = action + np.random.normal(0, [xi, xi, xi, xi * 3, xi * 10], action.shape)
        action = np.clip(action, -1, 1)
        next_obs, _, _, _, info = env.step(action)
        if oracle.done:
            agent_obs, agent_info = env.unwrapped.set_new_target(p_stack=p_stack)
            oracle = oracles[agent_info["privileged/target_task"]]
            oracle.reset(agent_obs, agent_info)
        rows["observations"].append(obs)
        rows["actions"].append(action)
        rows["next_observations"].append(next_obs)
        for key in STATE_KEYS:  # the state the transition lands in and the one it starts from
            if key in info:
                rows[key].append(info[key])
                rows[f"prev_{key}"].append(info[f"prev_{key}"])
        obs = next_obs
    return {k: np.asarray(v, np.int64 if k.endswith("button_states") else np.float32) for k, v in rows.items() if v}


def collect(task_env_id: str, steps: int, seed: int, kind: str = "play", noise: float | None = None,
            resumable: Resumable | None = None) -> tuple[dict, float]:
    """`steps` transitions of oracle data for an OGBench singletask task -> (arrays in D4RL layout with
    infos qpos/qvel[/button_states] of the next state and prev_qpos etc. of the state each row starts from, the
    noise level used)."""
    import ogbench.manipspace  # noqa: F401  (registers the environments)
    if kind not in KINDS:
        raise ConfigError(f"unknown oracle kind {kind!r}; choose one of {', '.join(KINDS)}")
    noise = 0.1 if noise is None else noise
    name = ogbench_env_names(task_env_id)[0]
    env = gym.make(name, terminate_at_goal=False, mode="data_collection", max_episode_steps=EPISODE_STEPS + 1)
    oracles = make_oracles(name, env, kind, noise)

    def next_episode(state, steps_left):
        episode = oracle_episode(env, oracles, kind, noise, min(EPISODE_STEPS, steps_left), name,
                                 episode_seed(seed, state["attempt"], 0x0AC1))
        state["attempt"] += 1
        return episode if healthy(name, episode["qpos"]) else None

    with global_numpy_seed(seed):
        episodes = (resumable or Resumable()).episodes(next_episode, {"attempt": 0}, steps)
    return join_and_label(episodes, task_env_id), noise
