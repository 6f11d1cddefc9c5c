"""Reward transforms and Monte-Carlo returns-to-go (SPEC §3-§4)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class RewardTransform:
    """r' = scale * r + bias (e.g. antmaze {0, 1} -> {-5, 5} with scale 10, bias -5)."""

    scale: float = 1.0
    bias: float = 0.0

    def __call__(self, rewards):
        return (self.scale * np.asarray(rewards, np.float32) + self.bias).astype(np.float32)


def episode_mc_returns(rewards: np.ndarray, gamma: float, sparse_negative_reward: float | None = None) -> np.ndarray:
    """Discounted return-to-go of one episode (no bootstrap past its end).

    Sparse tasks: an episode whose every reward equals `sparse_negative_reward` never reaches the goal, so its
    return is taken as that of an infinite failure, r_neg / (1 - gamma), at every step (Cal-QL's rule).
    """
    rewards = np.asarray(rewards, np.float64)
    if sparse_negative_reward is not None and len(rewards) and np.all(rewards == sparse_negative_reward):
        return np.full(len(rewards), sparse_negative_reward / (1.0 - gamma), np.float32)
    out = np.empty(len(rewards), np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out.astype(np.float32)


def mc_returns_to_go(rewards: np.ndarray, episode_ends: np.ndarray, gamma: float,
                     sparse_negative_reward: float | None = None) -> np.ndarray:
    """Per-transition returns-to-go of a dataset split into episodes at `episode_ends` (True = last step)."""
    out = np.empty(len(rewards), np.float32)
    start = 0
    for end in np.flatnonzero(episode_ends):
        out[start:end + 1] = episode_mc_returns(rewards[start:end + 1], gamma, sparse_negative_reward)
        start = end + 1
    if start < len(rewards):
        out[start:] = episode_mc_returns(rewards[start:], gamma, sparse_negative_reward)
    return out
