"""The online replay buffer and the mixer that draws a fixed share of each batch from offline data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsrl.data.returns import episode_mc_returns
from wsrl.data.transitions import DataError, Transitions, read_npz, to_batch, write_npz

BATCH_KEYS = ("observations", "actions", "rewards", "next_observations", "masks", "mc_returns")
STORED = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "mc_returns")


class ReplayBuffer:
    """A numpy ring buffer of online transitions.

    Monte-Carlo returns: `end_episode(gamma, r_neg)` writes the returns-to-go of the episode just finished. Rows
    of the episode still running ("open") are never sampled with a stale value: `sample` gives them a
    PROVISIONAL return, the return-to-go of the partial episode as if it ended now, computed with the `gamma`
    and `sparse_negative_reward` of the latest `end_episode` call (before any, the constructor's). Rows
    inserted with an explicit `mc_return` (e.g. offline transitions for "dataset warmup") are final at once.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, gamma: float = 0.99,
                 sparse_negative_reward: float | None = None):
        if capacity <= 0:
            raise ValueError(f"capacity={capacity} must be > 0")
        self.capacity = int(capacity)
        self.arrays = {k: np.zeros((self.capacity, obs_dim) if k.endswith("observations") else
                                   (self.capacity, act_dim) if k == "actions" else self.capacity, np.float32)
                       for k in STORED}
        self.size = self.cursor = self._open = 0  # _open: rows of the running episode (the newest ones)
        self.gamma, self.sparse_negative_reward = float(gamma), sparse_negative_reward

    def __len__(self) -> int:
        return self.size

    @property
    def episode_start(self) -> int:
        """Index of the running episode's first row (== cursor when no episode is open)."""
        return (self.cursor - self._open) % self.capacity

    @episode_start.setter
    def episode_start(self, index: int) -> None:
        self._open = min((self.cursor - index) % self.capacity, self.size)

    def insert(self, obs, action, reward: float, next_obs, terminal: bool, timeout: bool = False,
               mc_return: float | None = None) -> None:
        """Append one transition; with `mc_return` the row is final (allowed only between episodes)."""
        if mc_return is not None and self._open:
            raise ValueError("insert(mc_return=...) while an episode is running; call end_episode first")
        i, a = self.cursor, self.arrays
        a["observations"][i], a["actions"][i], a["rewards"][i] = obs, action, reward
        a["next_observations"][i], a["terminals"][i], a["timeouts"][i] = next_obs, terminal, timeout
        a["mc_returns"][i] = 0.0 if mc_return is None else mc_return
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self._open = 0 if mc_return is not None else min(self._open + 1, self.capacity)

    def end_episode(self, gamma: float, sparse_negative_reward: float | None = None) -> None:
        """Write the Monte-Carlo returns of the running episode (its rows still in the buffer) and close it."""
        self.gamma, self.sparse_negative_reward = float(gamma), sparse_negative_reward
        idx = self._open_rows()
        self.arrays["mc_returns"][idx] = self._open_returns(idx)
        self._open = 0

    def _open_rows(self) -> np.ndarray:
        return (self.episode_start + np.arange(self._open)) % self.capacity

    def _open_returns(self, idx: np.ndarray) -> np.ndarray:
        return episode_mc_returns(self.arrays["rewards"][idx], self.gamma, self.sparse_negative_reward)

    def sample(self, rng: np.random.Generator, shape: tuple) -> dict[str, np.ndarray]:
        """A batch dict (BATCH_KEYS, float32) of uniformly drawn rows with leading dims `shape`."""
        if self.size == 0:
            raise DataError("cannot sample from an empty replay buffer; insert transitions first")
        idx = rng.integers(0, self.size, size=shape)
        batch = to_batch(self.arrays, idx)
        position = (idx - self.episode_start) % self.capacity  # position within the running episode
        provisional = position < self._open
        if provisional.any():
            batch["mc_returns"][provisional] = self._open_returns(self._open_rows())[position[provisional]]
        return batch

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild an identical buffer (arrays up to `size` and counters)."""
        snr = np.nan if self.sparse_negative_reward is None else self.sparse_negative_reward
        return {**{k: v[:self.size].copy() for k, v in self.arrays.items()},
                "counters": np.array([self.capacity, self.size, self.cursor, self._open], np.int64),
                "returns_config": np.array([self.gamma, snr], np.float64)}

    def load_state_dict(self, state: dict) -> None:
        capacity, size, cursor, open_rows = (int(x) for x in state["counters"])
        if capacity != self.capacity:
            raise DataError(f"the saved replay buffer has capacity {capacity}, this one {self.capacity}; resume "
                            f"with the same settings (steps, warmup) as the interrupted run")
        for k, v in self.arrays.items():
            if state[k].shape[1:] != v.shape[1:]:
                raise DataError(f"the saved replay buffer's '{k}' has rows of shape {state[k].shape[1:]}, this "
                                f"buffer {v.shape[1:]}; it belongs to another task")
            v[:size] = state[k]
            v[size:] = 0.0
        gamma, snr = (float(x) for x in state["returns_config"])
        self.size, self.cursor, self._open = size, cursor, open_rows
        self.gamma, self.sparse_negative_reward = gamma, None if np.isnan(snr) else snr

    def save(self, path: str | Path) -> None:
        """Write `state_dict()` to `path` as .npz (exactly that name, atomically)."""
        write_npz(path, self.state_dict())

    def load(self, path: str | Path) -> None:
        """Restore what `save` wrote, in place."""
        self.load_state_dict(read_npz(path))


def offline_batch(data: Transitions, idx) -> dict[str, np.ndarray]:
    """Rows `idx` of an offline dataset in the learner's batch layout; the dataset needs MC returns."""
    if data.mc_returns is None:
        raise DataError("the offline dataset has no 'mc_returns'; attach them with "
                        "data.with_mc_returns(mc_returns_to_go(...)) before building batches")
    return to_batch(data.arrays(), idx)


class BatchMixer:
    """(utd, batch_size) minibatches: round(offline_fraction * batch_size) rows of each drawn from the offline
    dataset, the rest from the online buffer, concatenated along the batch axis (offline rows first).

    With offline_fraction == 0 (no retention) it takes no dataset: the caller drops it before fine-tuning, so
    that nothing keeps it in memory and no offline row can reach a batch.
    """

    def __init__(self, online: ReplayBuffer, offline: Transitions | None, offline_fraction: float):
        if not 0.0 <= offline_fraction <= 1.0:
            raise ValueError(f"offline_fraction={offline_fraction} must be in [0, 1]")
        if offline_fraction > 0 and offline is None:
            raise ValueError(f"offline_fraction={offline_fraction} needs an offline dataset, but none was given; "
                             f"load one or set the fraction to 0")
        if offline_fraction == 0 and offline is not None:
            raise ValueError("offline_fraction=0 (no retention) takes no offline dataset: drop it (pass None)")
        if offline_fraction > 0 and offline.mc_returns is None:
            raise DataError("the offline dataset has no 'mc_returns'; attach them with with_mc_returns")
        self.online, self.offline, self.offline_fraction = online, offline, float(offline_fraction)

    def split(self, batch_size: int) -> tuple[int, int]:
        """(offline rows, online rows) of a batch."""
        n_off = int(round(self.offline_fraction * batch_size))
        return n_off, batch_size - n_off

    def sample(self, rng: np.random.Generator, utd: int, batch_size: int) -> dict[str, np.ndarray]:
        if utd < 1 or batch_size < 1:
            raise ValueError(f"utd={utd} and batch_size={batch_size} must be >= 1")
        n_off, n_on = self.split(batch_size)
        parts = []
        if n_off:
            parts.append(offline_batch(self.offline, rng.integers(0, len(self.offline), size=(utd, n_off))))
        if n_on:
            parts.append(self.online.sample(rng, (utd, n_on)))
        return parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts], axis=1) for k in BATCH_KEYS}
