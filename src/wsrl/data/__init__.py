"""Datasets (Transitions, loaders, reward transforms, MC returns) and the online replay buffer."""

from wsrl.data.transitions import DataError, Transitions

__all__ = ["DataError", "Transitions"]
