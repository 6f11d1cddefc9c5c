"""Reward transforms and Monte-Carlo returns-to-go (docs/tasks-and-data.md, 'Tasks and data')."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class RewardTransform:
    """r' = scale * r + bias (e.g. antmaze {0, 1} -> {-5, 5} with scale 10, bias -5)."""

    scale: float = 1.0
    bias: float = 0.0

    def __call__(self, rewards) -> np.ndarray:
        return (self.scale * np.asarray(rewards, np.float32) + self.bias).astype(np.float32)


def episode_mc_returns(rewards, gamma: float, sparse_negative_reward: float | None = None) -> np.ndarray:
    """Discounted return-to-go G_t = r_t + gamma * G_{t+1} of ONE episode, with no bootstrap past its end.

    Sparse tasks: an episode whose every reward equals `sparse_negative_reward` (compared in float32) never
    reached the goal; every step gets r_neg / (1 - gamma), the return of failing forever (Cal-QL's rule).
    """
    rewards = np.asarray(rewards, np.float32)
    if sparse_negative_reward is not None and rewards.size and np.all(rewards == np.float32(sparse_negative_reward)):
        return np.full(rewards.shape, sparse_negative_reward / (1.0 - gamma), np.float32)
    out, running = [], 0.0
    for r in reversed(rewards.tolist()):  # a plain float loop: ~0.1 s per million steps, float64 accumulation
        running = r + gamma * running
        out.append(running)
    return np.asarray(out[::-1], np.float32).reshape(rewards.shape)


def mc_returns_to_go(rewards, episode_ends, gamma: float, sparse_negative_reward: float | None = None) -> np.ndarray:
    """Returns-to-go of a dataset split into episodes; `episode_ends[t]` is True at each episode's last step
    (see `Transitions.episode_ends`). Rows after the last True form one more (unfinished) episode."""
    rewards, episode_ends = np.asarray(rewards, np.float32), np.asarray(episode_ends, bool)
    if rewards.shape != episode_ends.shape or rewards.ndim != 1:
        raise ValueError(f"rewards {rewards.shape} and episode_ends {episode_ends.shape} must be equal 1-D shapes")
    out = np.empty(len(rewards), np.float32)
    bounds = np.concatenate([[0], np.flatnonzero(episode_ends) + 1, [len(rewards)]])
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if stop > start:
            out[start:stop] = episode_mc_returns(rewards[start:stop], gamma, sparse_negative_reward)
    return out
