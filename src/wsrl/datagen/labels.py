"""Episodes of OGBench data-collection runs -> one dataset labelled for a singletask task."""

from __future__ import annotations

import contextlib

import numpy as np

from wsrl.data.loaders import OGBENCH_STATE_KEYS as STATE_KEYS
from wsrl.tasks.envs import ogbench_state_rewards


def join_and_label(episodes: list[dict], task_env_id: str) -> dict:
    """Concatenate per-episode arrays (each row holding the simulator state it starts from, `prev_qpos` etc., and
    the one it lands in, `qpos` etc.) and label them as the singletask environment steps them: it scores the state
    BEFORE the action, so rewards and successes are the task's at each row's starting state and `terminals` marks
    a row that starts solved (the trajectory goes on, as in D4RL antmaze); `timeouts` at each episode's last row."""
    arrays = {k: np.concatenate([e[k] for e in episodes]) for k in episodes[0]}
    arrays["rewards"], arrays["success"] = ogbench_state_rewards(
        task_env_id, {k: arrays[f"prev_{k}"] for k in STATE_KEYS if f"prev_{k}" in arrays})
    arrays["terminals"] = arrays["success"].copy()
    arrays["timeouts"] = np.zeros(len(arrays["actions"]), bool)
    arrays["timeouts"][np.cumsum([len(e["actions"]) for e in episodes]) - 1] = True
    return arrays


def episode_seed(seed: int, episode: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, episode, stream]).generate_state(1)[0])


@contextlib.contextmanager
def global_numpy_seed(seed: int):
    """OGBench's oracles and mazes draw from NumPy's global generator: seed it for a generation run and give the
    caller's state back, so that a seed gives the same data."""
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)
