"""Datasets (Transitions, loaders, reward transforms, MC returns) and the online replay buffer."""

from wsrl.data.loaders import (load_d4rl_hdf5, load_dataset, load_minari, load_npz, load_ogbench_npz,
                               minari_root)
from wsrl.data.replay import BatchMixer, ReplayBuffer, offline_batch
from wsrl.data.returns import RewardTransform, episode_mc_returns, mc_returns_to_go
from wsrl.data.transitions import DataError, Transitions

__all__ = ["BatchMixer", "DataError", "ReplayBuffer", "RewardTransform", "Transitions", "episode_mc_returns",
           "load_d4rl_hdf5", "load_dataset", "load_minari", "load_npz", "load_ogbench_npz", "mc_returns_to_go",
           "minari_root", "offline_batch"]
