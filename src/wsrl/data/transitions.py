"""`Transitions`: an offline dataset as numpy arrays, validated by the loaders before anything trains on it."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from wsrl.errors import WsrlError
from wsrl.io.atomic import atomic_path

# dataset actions are clipped to +-ACTION_CLIP so that arctanh(a) stays finite (docs/tasks-and-data.md,
# 'Formats read from disk')
ACTION_CLIP = 0.99999
ACTION_TOLERANCE = 1e-3  # |a| > 1 + this is an error (unnormalised actions), not rounding
# |next_obs[t] - obs[t+1]| above this starts a new episode (docs/tasks-and-data.md, 'Tasks and data')
DISCONTINUITY = 1e-6
FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
MATRIX_FIELDS = ("observations", "actions", "next_observations")


class DataError(WsrlError):
    """A dataset is missing, malformed or does not fit the task; the message names the source, key and fix."""


def write_npz(path: str | Path, arrays: dict) -> None:
    """np.savez to exactly `path`, atomically (a kill never leaves half a file)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # an open file: savez would append ".npz" to a name
        np.savez(f, **arrays)


@dataclasses.dataclass(frozen=True)
class Transitions:
    """N transitions. `terminals` = 1: true terminal (no bootstrap); `timeouts` = 1: the episode was cut after
    this step (still bootstraps). `mc_returns` is attached later (`with_mc_returns`)."""

    observations: np.ndarray  # (N, obs_dim) float32
    actions: np.ndarray  # (N, act_dim) float32 in [-1, 1]
    rewards: np.ndarray  # (N,) float32
    next_observations: np.ndarray  # (N, obs_dim) float32
    terminals: np.ndarray  # (N,) float32
    timeouts: np.ndarray  # (N,) float32
    mc_returns: np.ndarray | None = None  # (N,) float32 discounted return-to-go

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """The fields that are set, by name (no copies)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def validate(self, source: str) -> "Transitions":
        """Raise DataError naming `source`, the field, what was expected and the fix; return self if all fits."""
        n = int(self.rewards.shape[0]) if self.rewards.ndim else 0
        for name, array in self.arrays().items():
            _check_field(source, name, array, n, self.observations.shape[1:])
        if n == 0:
            raise DataError(f"{source}: the dataset has no transitions; it needs at least one row")
        _check_actions(source, self.actions)
        return self

    def take(self, indices) -> "Transitions":
        """The rows at `indices` (an index array, slice or boolean mask)."""
        return Transitions(**{k: v[indices] for k, v in self.arrays().items()})

    def with_rewards(self, rewards) -> "Transitions":
        return dataclasses.replace(self, rewards=_same_length(self, "rewards", rewards))

    def with_mc_returns(self, mc_returns) -> "Transitions":
        return dataclasses.replace(self, mc_returns=_same_length(self, "mc_returns", mc_returns))

    def episode_ends(self) -> np.ndarray:
        """True at the last step of an episode: a terminal, a timeout, the last row, or a row whose next
        observation is not the following row's observation (|s'_t - s_{t+1}| > 1e-6)."""
        ends = (self.terminals > 0) | (self.timeouts > 0)
        if len(self) > 1:
            ends[:-1] |= np.abs(self.next_observations[:-1] - self.observations[1:]).max(axis=1) > DISCONTINUITY
        if len(self):
            ends[-1] = True
        return ends

    def save_npz(self, path: str | Path) -> None:
        """Write every set field to `path` (exactly that name, atomically)."""
        write_npz(path, self.arrays())

    @classmethod
    def from_npz(cls, path: str | Path) -> "Transitions":
        """Read what `save_npz` wrote (validated, actions clipped)."""
        return cls.from_arrays(str(path), **read_npz(path))

    @classmethod
    def from_arrays(cls, source: str, **arrays) -> "Transitions":
        """Build from raw arrays: check keys, cast to float32, validate, then clip actions to +-ACTION_CLIP."""
        missing = [k for k in FIELDS if k not in arrays]
        if missing:
            raise DataError(f"{source}: missing key(s) {missing}; found {sorted(arrays)}. A dataset needs "
                            f"{list(FIELDS)} (mc_returns optional)")
        given = {k: np.asarray(arrays[k]) for k in FIELDS + ("mc_returns",) if arrays.get(k) is not None}
        for name, array in given.items():  # strings or objects would be parsed, or fail obscurely, in the cast
            if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
                raise DataError(f"{source}: '{name}' holds {array.dtype} values, not numbers; store it as a "
                                f"numeric array (float32, or bool for flags)")
        mc = given.get("mc_returns")
        t = cls(**{k: given[k].astype(np.float32) for k in FIELDS},
                mc_returns=None if mc is None else mc.astype(np.float32))
        t.validate(source)
        return dataclasses.replace(t, actions=np.clip(t.actions, -ACTION_CLIP, ACTION_CLIP))


TO_BATCH_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "mc_returns")  # to_batch's


def to_batch(fields: Mapping[str, np.ndarray], idx) -> dict[str, np.ndarray]:
    """The learner's batch layout (float32) from arrays named as Transitions fields, at rows `idx`."""
    return {"observations": fields["observations"][idx], "actions": fields["actions"][idx],
            "rewards": fields["rewards"][idx], "next_observations": fields["next_observations"][idx],
            "masks": (1.0 - fields["terminals"][idx]).astype(np.float32), "mc_returns": fields["mc_returns"][idx]}


def read_npz(path: str | Path, keys_only: bool = False) -> dict[str, np.ndarray] | list[str]:
    """All arrays of an npz file (or only its key names); a missing or unreadable file is a DataError."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):  # numpy would try to read any other file as a pickle
        raise DataError(f"{path}: not an .npz file (an .npz is a zip archive of .npy arrays; this file is not one, "
                        f"or it is empty or cut short); write it with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as f:
            return list(f.files) if keys_only else {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # empty, cut short, not a zip, pickled
        raise DataError(f"{path}: not a readable .npz file ({type(err).__name__}: {err}); write it again (e.g. "
                        f"with numpy.savez)") from err


def _check_field(source: str, name: str, array: np.ndarray, n: int, obs_shape: tuple) -> None:
    if name in MATRIX_FIELDS:
        want = (n, obs_shape[0] if name == "next_observations" and len(obs_shape) == 1 else None)
    else:
        want = (n,)
    if array.ndim != len(want) or any(w is not None and a != w for a, w in zip(array.shape, want)):
        shown = "(" + ", ".join("d" if w is None else str(w) for w in want) + ("," if len(want) == 1 else "") + ")"
        raise DataError(f"{source}: '{name}' has shape {array.shape}, expected {shown} (N = {n} = len(rewards)); "
                        f"give every field one row per transition (flatten observations and actions to 2-D)")
    if array.dtype != np.float32:
        raise DataError(f"{source}: '{name}' has dtype {array.dtype}, expected float32; build datasets with "
                        f"Transitions.from_arrays, which casts")
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.argwhere(bad)[0][0])
        raise DataError(f"{source}: '{name}' has {int(bad.sum())} non-finite value(s), the first in row {first}; "
                        f"remove or repair those transitions")


def _check_actions(source: str, actions: np.ndarray) -> None:
    outside = np.abs(actions) > 1.0 + ACTION_TOLERANCE
    if outside.any():
        first = int(np.argwhere(outside)[0][0])
        raise DataError(f"{source}: 'actions' has {int(outside.sum())} value(s) outside [-1, 1] (largest |a| = "
                        f"{float(np.abs(actions).max()):.4g}, first in row {first}); rescale actions to the "
                        f"environment's normalised [-1, 1] range before loading")


def _same_length(t: Transitions, name: str, values) -> np.ndarray:
    values = np.asarray(values, np.float32)
    if values.shape != (len(t),):
        raise DataError(f"'{name}' has shape {values.shape}, expected ({len(t)},): one value per transition")
    return values
