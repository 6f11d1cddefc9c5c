"""Loaders for the on-disk formats offline RL datasets come in: D4RL HDF5, Minari, OGBench npz, plain npz.

None of them downloads anything: a missing dataset fails at once and says where to put it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from wsrl.data.transitions import FIELDS, DataError, Transitions

OGBENCH_KEYS = ("observations", "actions", "terminals")


def _require(source: str, arrays, keys) -> None:
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DataError(f"{source}: missing key(s) {missing}; found {sorted(arrays)}")


def _check_lengths(source: str, arrays: dict) -> None:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{source}: arrays have different lengths {lengths}; every key needs one row per step")


def load_d4rl_hdf5(path: str | Path) -> Transitions:
    """D4RL file with `qlearning_dataset` semantics: next observation = the next row, the last row is dropped,
    rows flagged as timeouts are dropped (their successor starts a new episode), done = terminals."""
    import h5py
    source = str(path)
    if not Path(path).is_file():
        raise DataError(f"{source} does not exist")
    with h5py.File(path, "r") as f:
        _require(source, f, ("observations", "actions", "rewards", "terminals"))
        keys = ["observations", "actions", "rewards", "terminals"] + \
            [k for k in ("timeouts", "next_observations") if k in f]
        raw = {k: np.asarray(f[k]) for k in keys}
    _check_lengths(source, raw)
    n = len(raw["rewards"])
    timeouts = raw.get("timeouts", np.zeros(n, bool)).astype(bool)
    if "next_observations" in raw:
        keep, next_obs = np.arange(n), raw["next_observations"]
    else:
        keep = np.flatnonzero(~timeouts[:-1])  # drop rows whose successor is another episode's start
        next_obs = raw["observations"][keep + 1]
    # An episode that ended by timeout: its last kept step is the one before the dropped row.
    cut = timeouts.copy() if "next_observations" in raw else np.zeros(n, bool)
    if "next_observations" not in raw:
        dropped = np.flatnonzero(timeouts[:-1])
        cut[dropped[dropped > 0] - 1] = True
    return Transitions.from_arrays(
        source, observations=raw["observations"][keep], actions=raw["actions"][keep], rewards=raw["rewards"][keep],
        next_observations=next_obs, terminals=raw["terminals"][keep], timeouts=cut[keep])


def minari_root() -> Path:
    return Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets"))


def _flatten_observation(obs) -> np.ndarray:
    """Goal-conditioned Dict observations become observation (+) desired_goal."""
    if isinstance(obs, dict):
        parts = [obs["observation"]] + ([obs["desired_goal"]] if "desired_goal" in obs else [])
        return np.concatenate([np.asarray(p, np.float32).reshape(len(p), -1) for p in parts], axis=1)
    return np.asarray(obs, np.float32).reshape(len(obs), -1)


def load_minari(dataset: str | Path) -> Transitions:
    """A Minari dataset by id (under $MINARI_DATASETS_PATH, default ~/.minari/datasets) or by its directory."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a hub: this loader reads local files only
    from minari.dataset.minari_dataset import MinariDataset
    candidates = [Path(dataset), Path(dataset) / "data", minari_root() / str(dataset) / "data"]
    data_dir = next((c for c in candidates if (c / "main_data.hdf5").is_file() and (c / "metadata.json").is_file()),
                    None)
    if data_dir is None:
        raise DataError(f"Minari dataset {dataset!r} not found (looked in {candidates[2].parent} and {dataset}). "
                        f"Put it at {minari_root()}/<id>/data/main_data.hdf5 with its metadata.json, or set "
                        f"MINARI_DATASETS_PATH to the folder that holds it")
    parts = {k: [] for k in FIELDS}
    for ep in MinariDataset(str(data_dir)).iterate_episodes():
        obs = _flatten_observation(ep.observations)
        if len(obs) != len(ep.rewards) + 1:
            raise DataError(f"{data_dir}: episode {ep.id} has {len(obs)} observations for {len(ep.rewards)} steps "
                            f"(Minari stores T+1 observations)")
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(np.asarray(ep.actions, np.float32).reshape(len(ep.rewards), -1))
        parts["rewards"].append(np.asarray(ep.rewards, np.float32))
        parts["terminals"].append(np.asarray(ep.terminations, np.float32))
        parts["timeouts"].append(np.asarray(ep.truncations, np.float32))
    if not parts["rewards"]:
        raise DataError(f"{data_dir}: the dataset has no episodes")
    return Transitions.from_arrays(str(data_dir), **{k: np.concatenate(v) for k, v in parts.items()})


def load_ogbench_npz(path: str | Path, reward_fn: Callable | None = None) -> Transitions:
    """OGBench layout: `terminals` marks the last step of each trajectory (an episode boundary, not a failure),
    `masks` (if present) is 0 at true terminal states. Without `next_observations`, the next row is the next
    observation and each trajectory's last row is dropped, as OGBench's own loader does. Datasets without
    `rewards` need `reward_fn(observations, actions, next_observations) -> rewards`."""
    source = str(path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    _require(source, arrays, OGBENCH_KEYS)
    _check_lengths(source, arrays)
    boundary = arrays["terminals"].astype(bool)
    if "next_observations" in arrays:
        keep, next_obs = np.arange(len(boundary)), arrays["next_observations"]
        cut = boundary
    else:
        keep = np.flatnonzero(~boundary[:-1])
        next_obs = arrays["observations"][keep + 1]
        cut = np.zeros(len(boundary), bool)
        ends = np.flatnonzero(boundary)
        cut[ends[ends > 0] - 1] = True
    obs, actions = arrays["observations"][keep], arrays["actions"][keep]
    if "rewards" in arrays:
        rewards = arrays["rewards"][keep]
    elif reward_fn is not None:
        rewards = np.asarray(reward_fn(obs, actions, next_obs), np.float32)
    else:
        raise DataError(f"{source}: no 'rewards' key (an OGBench goal-conditioned dataset); pass reward_fn or "
                        f"use the task's singletask dataset")
    terminals = 1.0 - arrays["masks"][keep] if "masks" in arrays else np.zeros(len(keep), np.float32)
    return Transitions.from_arrays(source, observations=obs, actions=actions, rewards=rewards,
                                   next_observations=next_obs, terminals=terminals, timeouts=cut[keep])


def load_npz(path: str | Path) -> Transitions:
    """A plain npz holding the Transitions field names (what `Transitions.save_npz` writes)."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    _check_lengths(str(path), arrays)
    return Transitions.from_arrays(str(path), **arrays)


def load_dataset(source: str | Path, **kwargs) -> Transitions:
    """Dispatch on the source: .hdf5/.h5 -> D4RL; .npz -> plain or OGBench; a directory or an id -> Minari."""
    path = Path(source)
    if path.suffix in (".hdf5", ".h5"):
        return load_d4rl_hdf5(path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise DataError(f"{path} does not exist")
        with np.load(path) as f:
            plain = all(k in f.files for k in FIELDS)
        return load_npz(path) if plain else load_ogbench_npz(path, **kwargs)
    return load_minari(source)
