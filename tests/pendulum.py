"""InvertedPendulum-v5 datasets for the your-own-environment tests, written with the formats' own tools (h5py in
D4RL's layout, minari.DataCollector) from the real environment stepped with random actions."""

import gymnasium as gym
import h5py
import numpy as np
import pytest

ENV = "InvertedPendulum-v5"  # one action in [-3, 3], 4-d observations; not a registry task
BOUND = 3.0


def random_actions(rng, n):
    """Uniform actions in the env's own units, with the exact bounds among them."""
    actions = rng.uniform(-BOUND, BOUND, size=(n, 1)).astype(np.float32)
    actions[:2, 0] = [BOUND, -BOUND]
    return actions


def write_d4rl(path, horizon, steps, seed=0, actions=None) -> dict:
    """Step the real environment (time limit `horizon`) and write what it saw in D4RL's layout; returns it."""
    env = gym.make(ENV, max_episode_steps=horizon)
    actions = random_actions(np.random.default_rng(seed), steps) if actions is None else actions
    log = {k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}
    obs, _ = env.reset(seed=seed)
    for action in actions:
        nxt, reward, terminated, truncated, _ = env.step(action)
        for k, v in zip(log, (obs, action, reward, terminated, truncated)):
            log[k].append(v)
        obs = env.reset()[0] if terminated or truncated else nxt
    with h5py.File(path, "w") as f:
        for k, v in log.items():
            f.create_dataset(k, data=np.asarray(v, np.bool_ if k in ("terminals", "timeouts") else np.float32))
    return {k: np.asarray(v) for k, v in log.items()}


def collect_minari(root, horizon, episodes, seed=1) -> np.ndarray:
    """Dataset test/pendulum-v0 under the Minari root `root`, collected with minari.DataCollector (time limit
    `horizon`); returns the actions the environment was stepped with."""
    import minari
    rng = np.random.default_rng(seed)
    actions = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root))
        patch.delenv("HF_HUB_OFFLINE", raising=False)
        collector = minari.DataCollector(gym.make(ENV, max_episode_steps=horizon))
        for ep in range(episodes):
            collector.reset(seed=ep)
            for action in random_actions(rng, horizon):
                actions.append(action)
                _, _, terminated, truncated, _ = collector.step(action)
                if terminated or truncated:
                    break
        with pytest.warns(UserWarning):  # Minari asks for author / description metadata
            collector.create_dataset(dataset_id="test/pendulum-v0", algorithm_name="random")
        collector.close()
    return np.asarray(actions)
