"""Episodes of OGBench data-collection runs -> one dataset labelled for a singletask task."""

from __future__ import annotations

import numpy as np

from wsrl.data.loaders import OGBENCH_STATE_KEYS as STATE_KEYS
from wsrl.tasks.envs import ogbench_state_rewards


def join_and_label(episodes: list[dict], task_env_id: str) -> dict:
    """Concatenate per-episode arrays (each row holding the simulator state it lands in); rewards and successes
    of the task at those states; `terminals` where the task is solved (the trajectory goes on, as in D4RL
    antmaze) and `timeouts` at each episode's last row."""
    arrays = {k: np.concatenate([e[k] for e in episodes]) for k in episodes[0]}
    arrays["rewards"], arrays["success"] = ogbench_state_rewards(
        task_env_id, {k: arrays[k] for k in STATE_KEYS if k in arrays})
    arrays["terminals"] = arrays["success"].copy()
    arrays["timeouts"] = np.zeros(len(arrays["actions"]), bool)
    arrays["timeouts"][np.cumsum([len(e["actions"]) for e in episodes]) - 1] = True
    return arrays


def episode_seed(seed: int, episode: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, episode, stream]).generate_state(1)[0])
