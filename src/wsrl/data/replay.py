"""The online replay buffer and the mixer that draws a fixed share of each batch from offline data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsrl.data.returns import episode_mc_returns
from wsrl.data.transitions import DataError, Transitions

BATCH_KEYS = ("observations", "actions", "rewards", "next_observations", "masks", "mc_returns")


class ReplayBuffer:
    """A ring buffer of transitions (numpy). Monte-Carlo returns are written when an episode ends; until then
    the transitions of the running episode carry the partial return-to-go of what has happened so far (0 for the
    newest step), which only Cal-QL fine-tuning reads."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int):
        self.capacity = int(capacity)
        self.arrays = {
            "observations": np.zeros((capacity, obs_dim), np.float32),
            "actions": np.zeros((capacity, action_dim), np.float32),
            "rewards": np.zeros(capacity, np.float32),
            "next_observations": np.zeros((capacity, obs_dim), np.float32),
            "masks": np.zeros(capacity, np.float32),
            "mc_returns": np.zeros(capacity, np.float32),
        }
        self.size, self.cursor, self.episode_start = 0, 0, 0

    def __len__(self) -> int:
        return self.size

    def insert(self, obs, action, reward: float, next_obs, terminal: bool, timeout: bool = False,
               mc_return: float = 0.0) -> None:
        i = self.cursor
        a = self.arrays
        a["observations"][i], a["actions"][i], a["rewards"][i] = obs, action, reward
        a["next_observations"][i], a["masks"][i], a["mc_returns"][i] = next_obs, 1.0 - float(terminal), mc_return
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def end_episode(self, gamma: float, sparse_negative_reward: float | None = None) -> None:
        """Write the Monte-Carlo returns of the episode that just finished."""
        idx = np.arange(self.episode_start, self.episode_start + self._episode_length()) % self.capacity
        self.arrays["mc_returns"][idx] = episode_mc_returns(self.arrays["rewards"][idx], gamma, sparse_negative_reward)
        self.episode_start = self.cursor

    def _episode_length(self) -> int:
        return (self.cursor - self.episode_start) % self.capacity or (self.capacity if self.size else 0)

    def sample(self, rng: np.random.Generator, shape: tuple) -> dict:
        if self.size == 0:
            raise DataError("cannot sample from an empty replay buffer")
        idx = rng.integers(0, self.size, size=shape)
        return {k: v[idx] for k, v in self.arrays.items()}

    def state_dict(self) -> dict:
        return {**{k: v[:self.size] for k, v in self.arrays.items()},
                "counters": np.array([self.size, self.cursor, self.episode_start, self.capacity])}

    def load_state_dict(self, state: dict) -> None:
        size, cursor, start, capacity = (int(x) for x in state["counters"])
        if capacity != self.capacity:
            raise DataError(f"saved replay buffer has capacity {capacity}, this run needs {self.capacity}")
        for k, v in self.arrays.items():
            v[:size] = state[k]
        self.size, self.cursor, self.episode_start = size, cursor, start

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, **self.state_dict())
        tmp.replace(path)

    def load(self, path: str | Path) -> None:
        with np.load(path) as f:
            self.load_state_dict({k: f[k] for k in f.files})


def offline_batch(data: Transitions, idx: np.ndarray) -> dict:
    """Rows of an offline dataset in the learner's batch layout."""
    return {"observations": data.observations[idx], "actions": data.actions[idx], "rewards": data.rewards[idx],
            "next_observations": data.next_observations[idx], "masks": 1.0 - data.terminals[idx],
            "mc_returns": data.mc_returns[idx] if data.mc_returns is not None
            else np.zeros(idx.shape, np.float32)}


class BatchMixer:
    """Draws (utd, batch) minibatches: round(fraction * batch) rows from offline data, the rest online.

    With fraction 0 the offline dataset is not kept at all (no reference), so fine-tuning memory does not depend
    on the dataset's size.
    """

    def __init__(self, online: ReplayBuffer, offline: Transitions | None, offline_fraction: float):
        if not 0.0 <= offline_fraction <= 1.0:
            raise DataError(f"offline_fraction={offline_fraction} must be in [0, 1]")
        if offline_fraction > 0 and offline is None:
            raise DataError(f"offline_fraction={offline_fraction} needs the offline dataset, which was not given")
        self.online, self.fraction = online, offline_fraction
        self.offline = offline if offline_fraction > 0 else None

    def sample(self, rng: np.random.Generator, utd: int, batch_size: int) -> dict:
        n_off = int(round(self.fraction * batch_size))
        parts = []
        if n_off:
            parts.append(offline_batch(self.offline, rng.integers(0, len(self.offline), size=(utd, n_off))))
        if batch_size - n_off:
            parts.append(self.online.sample(rng, (utd, batch_size - n_off)))
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts], axis=1) for k in BATCH_KEYS}
