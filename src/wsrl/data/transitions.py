"""`Transitions`: an offline dataset as numpy arrays, validated on construction by the loaders."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from wsrl.errors import WsrlError

ACTION_CLIP = 0.99999  # dataset actions are clipped to +-ACTION_CLIP so that arctanh(a) stays finite (SPEC §4)
ACTION_TOLERANCE = 1e-3  # beyond 1 + this, an action is an error, not rounding
DISCONTINUITY = 1e-6
FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


class DataError(WsrlError):
    """A dataset is missing, malformed or does not fit the task."""


@dataclasses.dataclass(frozen=True)
class Transitions:
    observations: np.ndarray  # (N, obs_dim) float32
    actions: np.ndarray  # (N, action_dim) float32 in [-1, 1]
    rewards: np.ndarray  # (N,) float32
    next_observations: np.ndarray  # (N, obs_dim) float32
    terminals: np.ndarray  # (N,) float32, 1 = true terminal (no bootstrap)
    timeouts: np.ndarray  # (N,) float32, 1 = episode cut after this step (still bootstraps)
    mc_returns: np.ndarray | None = None  # (N,) float32 discounted return-to-go

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    def validate(self, source: str) -> "Transitions":
        """Raise DataError naming `source`, the field and the fix; return self when everything fits."""
        n = len(self)
        expected = {"observations": (n, None), "actions": (n, None), "rewards": (n,),
                    "next_observations": (n, self.observations.shape[-1] if self.observations.ndim == 2 else None),
                    "terminals": (n,), "timeouts": (n,)}
        if self.mc_returns is not None:
            expected["mc_returns"] = (n,)
        for name, shape in expected.items():
            array = getattr(self, name)
            if array.ndim != len(shape) or any(s is not None and a != s for a, s in zip(array.shape, shape)):
                want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
                raise DataError(f"{source}: '{name}' has shape {array.shape}, expected {want} "
                                f"(every field needs one row per transition: N={n} from 'rewards')")
            bad = ~np.isfinite(array)
            if bad.any():
                first = int(np.argwhere(bad)[0][0])
                raise DataError(f"{source}: '{name}' has {int(bad.sum())} non-finite values (first at row {first}); "
                                f"remove or repair those transitions")
        worst = float(np.abs(self.actions).max()) if n else 0.0
        if worst > 1.0 + ACTION_TOLERANCE:
            raise DataError(f"{source}: 'actions' reach {worst:.4g}, outside [-1, 1]; rescale actions to the "
                            f"environment's normalised range before loading")
        return self

    def take(self, indices) -> "Transitions":
        return Transitions(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[indices]
                              for f in dataclasses.fields(self)})

    def with_rewards(self, rewards: np.ndarray) -> "Transitions":
        return dataclasses.replace(self, rewards=np.asarray(rewards, np.float32))

    def with_mc_returns(self, mc_returns: np.ndarray) -> "Transitions":
        return dataclasses.replace(self, mc_returns=np.asarray(mc_returns, np.float32))

    def episode_ends(self) -> np.ndarray:
        """True where an episode ends: terminal, timeout, the last row, or a jump to an unrelated observation."""
        ends = (self.terminals > 0) | (self.timeouts > 0)
        if len(self) > 1:
            jump = np.abs(self.next_observations[:-1] - self.observations[1:]).max(axis=1) > DISCONTINUITY
            ends[:-1] |= jump
        if len(self):
            ends[-1] = True
        return ends

    def save_npz(self, path: str | Path) -> None:
        arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}
        np.savez(path, **arrays)

    @classmethod
    def from_arrays(cls, source: str, **arrays) -> "Transitions":
        """Build from raw arrays with the standard dtypes; clip in-range actions to +-ACTION_CLIP."""
        missing = [k for k in FIELDS if k not in arrays]
        if missing:
            raise DataError(f"{source}: missing key(s) {missing}; a dataset needs {list(FIELDS)}")
        t = cls(**{k: np.asarray(arrays[k], np.float32) for k in FIELDS},
                mc_returns=None if arrays.get("mc_returns") is None else np.asarray(arrays["mc_returns"], np.float32))
        t.validate(source)
        return dataclasses.replace(t, actions=np.clip(t.actions, -ACTION_CLIP, ACTION_CLIP))
