"""Loaders for the on-disk formats offline RL datasets come in: D4RL HDF5, Minari, OGBench npz and plain npz.

None of them downloads anything: a missing dataset fails at once and says where to put it. Every loader
validates (`Transitions.validate`) and clips in-range dataset actions to +-0.99999 (docs/tasks-and-data.md,
'Formats read from disk').
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from wsrl.data.transitions import FIELDS, DataError, Transitions, read_npz

D4RL_KEYS = ("observations", "actions", "rewards", "terminals")
OGBENCH_KEYS = ("observations", "actions", "terminals")
OGBENCH_STATE_KEYS = ("qpos", "qvel", "button_states")  # simulator state per row, for relabelling rewards
MINARI_FILE = "main_data.hdf5"
# transform(source, data, flags) -> Transitions: reshapes a loaded dataset with the file's per-step info flags
# (`flags`: every one-value-per-step info array, aligned with data's rows), e.g. the Adroit binary tasks' rewards.
Transform = Callable[[str, Transitions, Mapping[str, np.ndarray]], Transitions]
# action_map(source, actions) -> actions in [-1, 1]: applied to a file's raw actions before they are validated,
# e.g. a user environment's Box bounds mapped onto [-1, 1] (wsrl.tasks.user.ActionBounds).
ActionMap = Callable[[str, np.ndarray], np.ndarray]


def _actions(source: str, actions, action_map: ActionMap | None) -> np.ndarray:
    return actions if action_map is None else action_map(source, np.asarray(actions))


def _require(source: str, keys_present, keys) -> None:
    missing = [k for k in keys if k not in keys_present]
    if missing:
        raise DataError(f"{source}: missing key(s) {missing} (found {sorted(keys_present)}); this format needs "
                        f"{list(keys)}")


def _check_lengths(source: str, arrays: dict) -> None:
    """Every array (of rank >= 1) has the same number of rows; the odd ones out are named."""
    lengths = {k: len(v) for k, v in arrays.items() if np.ndim(v)}
    values = list(lengths.values())
    common = max(set(values), key=values.count)
    bad = {k: n for k, n in lengths.items() if n != common}
    if bad:
        shown = ", ".join(f"'{k}' has {n}" for k, n in sorted(bad.items()))
        raise DataError(f"{source}: mismatched lengths: {shown} rows, the other keys {common}; every key needs "
                        f"one row per step")


def _next_row_transitions(arrays: dict, boundary: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair row i with row i+1 as its next observation, skipping rows flagged in `boundary` (their next row
    belongs to another episode) and the last row. Returns (kept rows, next observations, cut), where cut marks
    the kept row just before a skipped one: the last real transition of an episode."""
    keep = np.flatnonzero(~boundary[:-1])
    return keep, arrays["observations"][keep + 1], boundary[keep + 1]


def _d4rl_flags(f) -> dict[str, np.ndarray]:
    """The one-value-per-step arrays under `infos/` (e.g. D4RL adroit's goal_achieved), keyed `infos/<name>`;
    vector states such as infos/qpos are left unread (large, and no transform needs them)."""
    group = f.get("infos")
    if group is None or not hasattr(group, "items"):
        return {}
    return {f"infos/{k}": np.asarray(v) for k, v in group.items() if getattr(v, "ndim", None) == 1}


def load_d4rl_hdf5(path: str | Path, transform: Transform | None = None,
                   action_map: ActionMap | None = None) -> Transitions:
    """A D4RL HDF5 file with `qlearning_dataset` semantics: next observation = the next row, the last row is
    dropped, rows with timeouts[i] = 1 are skipped (the transition before each is marked as a timeout so episodes
    still split there), done = terminals. If the file has `next_observations` they are used and every row is
    kept, with the file's timeouts. Without a `timeouts` key (D4RL v0) no row is skipped. With a `transform`,
    it gets the one-value-per-step `infos/` arrays as flags named without the prefix (`goal_achieved`)."""
    import h5py

    source = str(path)
    if not Path(path).is_file():
        raise DataError(f"{source}: no such file")
    try:
        with h5py.File(path, "r") as f:
            _require(source, f.keys(), D4RL_KEYS)
            keys = list(D4RL_KEYS) + [k for k in ("timeouts", "next_observations") if k in f]
            raw = {k: np.asarray(f[k]) for k in keys}
            flags = _d4rl_flags(f) if transform is not None else {}
    except OSError as err:
        raise DataError(f"{source}: not a readable HDF5 file ({err})") from err
    _check_lengths(source, {**raw, **flags})
    n = len(raw["rewards"])
    timeouts = raw.get("timeouts", np.zeros(n)).astype(bool)
    if "next_observations" in raw:
        keep, next_obs, cut = np.arange(n), raw["next_observations"], timeouts
    else:
        keep, next_obs, cut = _next_row_transitions(raw, timeouts)
    data = Transitions.from_arrays(source, observations=raw["observations"][keep],
                                   actions=_actions(source, raw["actions"][keep], action_map),
                                   rewards=raw["rewards"][keep], next_observations=next_obs,
                                   terminals=raw["terminals"][keep], timeouts=cut)
    if transform is None:
        return data
    return transform(source, data, {k.removeprefix("infos/"): v[keep] for k, v in flags.items()})


# ---- Minari --------------------------------------------------------------------------------------------------

def minari_root() -> Path:
    """$MINARI_DATASETS_PATH, or Minari's default ~/.minari/datasets."""
    return Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets").expanduser()


def minari_data_dir(dataset: str | Path) -> Path:
    """The `data/` folder of a Minari dataset given as a directory (the dataset's or its data/) or as an id
    under `minari_root()`; a DataError saying where it was looked for if it is not there."""
    path = Path(dataset).expanduser()
    candidates = [path, path / "data"] if path.is_dir() else [minari_root() / str(dataset) / "data"]
    for data_dir in candidates:
        if (data_dir / MINARI_FILE).is_file():
            return data_dir
    raise DataError(f"Minari dataset {str(dataset)!r} not found: looked for "
                    f"{' and '.join(str(c / MINARI_FILE) for c in candidates)}. Put it at "
                    f"<root>/<id>/data/{MINARI_FILE} (with metadata.json next to it), where <root> is "
                    f"$MINARI_DATASETS_PATH (now {minari_root()}), or pass the dataset's directory. "
                    f"Nothing is downloaded")


def flatten_observations(obs, source: str) -> np.ndarray:
    """(T, d) float32 from a Minari observation array, or from a goal-conditioned Dict as observation (+)
    desired_goal."""
    if isinstance(obs, dict):
        _require(source, obs.keys(), ("observation", "desired_goal"))
        obs = np.concatenate([np.asarray(obs[k], np.float32).reshape(len(obs[k]), -1)
                              for k in ("observation", "desired_goal")], axis=1)
    if not isinstance(obs, np.ndarray):
        raise DataError(f"{source}: observations of type {type(obs).__name__} are not supported; only arrays "
                        f"and Dicts with 'observation' and 'desired_goal'")
    return np.asarray(obs, np.float32).reshape(len(obs), -1)


def _minari_episode(ep, source: str) -> dict[str, np.ndarray]:
    """One episode's transitions: its T+1 observations give next observations; terminations -> terminals,
    truncations -> timeouts (and an episode that ends with neither is marked as cut at its last step)."""
    obs, steps = flatten_observations(ep.observations, f"{source} episode {ep.id}"), len(ep.rewards)
    if len(obs) != steps + 1:
        raise DataError(f"{source}: episode {ep.id} 'observations' has {len(obs)} rows for {steps} steps; "
                        f"Minari stores T+1 observations per episode")
    terminals = np.asarray(ep.terminations, bool)
    timeouts = np.asarray(ep.truncations, bool).copy()
    if steps and not terminals[-1]:
        timeouts[-1] = True
    return {"observations": obs[:-1], "next_observations": obs[1:], "rewards": ep.rewards,
            "actions": np.asarray(ep.actions, np.float32).reshape(steps, -1), "terminals": terminals,
            "timeouts": timeouts}


def _minari_flags(ep, source: str) -> dict[str, np.ndarray]:
    """One episode's one-value-per-step infos, one per transition. Minari's DataCollector stores T+1 infos (the
    reset's first, dropped here); writers of episode buffers may store T. Nested and vector infos are skipped."""
    steps, out = len(ep.rewards), {}
    for key, value in (ep.infos or {}).items():
        if isinstance(value, dict) or np.ndim(value) != 1:
            continue
        if len(value) not in (steps, steps + 1):
            raise DataError(f"{source}: episode {ep.id} infos['{key}'] has {len(value)} rows for {steps} steps; "
                            f"expected {steps + 1} (with the reset's, as DataCollector writes) or {steps}")
        out[key] = np.asarray(value)[len(value) - steps:]
    return out


def _common_flags(per_episode: list[dict]) -> dict[str, np.ndarray]:
    """The flags every episode has, concatenated."""
    keys = set.intersection(*(set(f) for f in per_episode)) if per_episode else set()
    return {k: np.concatenate([f[k] for f in per_episode]) for k in sorted(keys)}


def load_minari(dataset_id_or_path: str | Path, transform: Transform | None = None,
                action_map: ActionMap | None = None) -> Transitions:
    """A Minari dataset by id (under $MINARI_DATASETS_PATH, default ~/.minari/datasets) or by its directory.
    Strictly offline: HF_HUB_OFFLINE=1 is set before minari is imported, and a missing dataset fails at once.
    With a `transform`, it gets the one-value-per-step episode infos (e.g. gymnasium-robotics' `success`)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    data_dir = minari_data_dir(dataset_id_or_path)
    source = str(data_dir / MINARI_FILE)
    from minari.dataset.minari_dataset import MinariDataset

    episodes, flags = [], []
    try:
        for ep in MinariDataset(str(data_dir)).iterate_episodes():
            episodes.append(_minari_episode(ep, source))
            if transform is not None:
                flags.append(_minari_flags(ep, source))
    except (OSError, KeyError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{source}: not a readable Minari dataset ({type(err).__name__}: {err})") from err
    if not episodes:
        raise DataError(f"{source}: the dataset has no episodes")
    arrays = {k: np.concatenate([e[k] for e in episodes]) for k in FIELDS}
    data = Transitions.from_arrays(source, **{**arrays, "actions": _actions(source, arrays["actions"], action_map)})
    return data if transform is None else transform(source, data, _common_flags(flags))


# ---- OGBench and plain npz -----------------------------------------------------------------------------------

def is_ogbench_layout(keys) -> bool:
    """OGBench npz files have observations/actions/terminals and no `timeouts` (plain Transitions files do)."""
    return all(k in keys for k in OGBENCH_KEYS) and "timeouts" not in keys


def _ogbench_rewards(source: str, rows: dict, reward_fn: Callable | None) -> tuple[np.ndarray, np.ndarray]:
    """(rewards, masks): from `reward_fn(rows)` if given, else from the file's `rewards` (and `masks`)."""
    if reward_fn is not None:
        out = reward_fn(rows)
        rewards, masks = out if isinstance(out, tuple) else (out, rows.get("masks"))
    elif "rewards" in rows:
        rewards, masks = rows["rewards"], rows.get("masks")
    else:
        raise DataError(f"{source}: missing key 'rewards' (a goal-conditioned OGBench dataset has none); pass "
                        f"reward_fn=f(arrays) -> rewards or (rewards, masks), or use a singletask dataset")
    return rewards, np.ones(len(rows["observations"]), np.float32) if masks is None else masks


def load_ogbench_npz(path: str | Path, reward_fn: Callable | None = None,
                     action_map: ActionMap | None = None) -> Transitions:
    """An OGBench npz. There `terminals` marks the last step of each trajectory (an episode END, not a failure)
    and `masks` (optional) is 0 where the state is a true terminal (success in singletask data).

    Without `next_observations` (the files OGBench ships) this does what `ogbench.utils.load_dataset` does:
    row i's next observation is row i+1 and each trajectory's last row (terminals = 1) is dropped; the row before
    it becomes the episode's last transition (`timeouts` = 1). With `next_observations` every row is a transition
    and `terminals` marks episode ends directly. Our terminals = 1 - masks (0 without masks).

    Rewards come from the file's `rewards` or from `reward_fn(arrays)`, called with a dict of the row-aligned
    arrays (observations, actions, next_observations and any per-step info such as qpos, qvel, button_states,
    with `next_qpos` etc. for the row after); it returns rewards or (rewards, masks) and takes precedence over
    the file's rewards. OGBench singletask tasks pass one (`Task.reward_fn`), as OGBench relabels its files.
    """
    source = str(path)
    arrays = read_npz(path)
    _require(source, arrays.keys(), OGBENCH_KEYS)
    _check_lengths(source, arrays)
    ends = arrays.pop("terminals").astype(bool)
    if "next_observations" in arrays:
        rows, cut = arrays, ends
    else:
        keep, next_obs, cut = _next_row_transitions(arrays, ends)
        rows = {**{k: v[keep] for k, v in arrays.items() if np.ndim(v)}, "next_observations": next_obs,
                **{f"next_{k}": arrays[k][keep + 1] for k in OGBENCH_STATE_KEYS if k in arrays}}
    rewards, masks = _ogbench_rewards(source, rows, reward_fn)
    return Transitions.from_arrays(source, observations=rows["observations"],
                                   actions=_actions(source, rows["actions"], action_map),
                                   rewards=rewards, next_observations=rows["next_observations"],
                                   terminals=1.0 - np.asarray(masks, np.float32), timeouts=cut)


def load_npz(path: str | Path, action_map: ActionMap | None = None) -> Transitions:
    """A plain npz holding the Transitions field names (what `Transitions.save_npz` writes)."""
    arrays = read_npz(path)
    _require(str(path), arrays.keys(), FIELDS)
    _check_lengths(str(path), {k: v for k, v in arrays.items() if k in FIELDS + ("mc_returns",)})
    arrays["actions"] = _actions(str(path), arrays["actions"], action_map)
    return Transitions.from_arrays(str(path), **arrays)


def load_dataset(source: str | Path, reward_fn: Callable | None = None,
                 transform: Transform | None = None, action_map: ActionMap | None = None) -> Transitions:
    """Dispatch on the source: .hdf5/.h5 -> D4RL; .npz -> OGBench if it has that layout, else plain; a directory
    or anything else without a suffix -> a Minari dataset (directory or id). `reward_fn` computes the rewards of
    an OGBench-layout npz (see `load_ogbench_npz`); the other formats store their rewards and do not use it.
    `transform(source, data, flags)` reshapes the loaded data with the file's per-step info flags (D4RL `infos/`,
    Minari episode infos; npz files pass none), e.g. the Adroit binary tasks' rewards and trajectory cuts.
    `action_map(source, actions)` maps the file's raw actions into [-1, 1] before they are validated."""
    path = Path(source).expanduser()
    if path.suffix in (".hdf5", ".h5"):
        return load_d4rl_hdf5(path, transform, action_map)
    if path.suffix == ".npz":
        keys = read_npz(path, keys_only=True)
        data = load_ogbench_npz(path, reward_fn, action_map) if is_ogbench_layout(keys) else \
            load_npz(path, action_map)
        return data if transform is None else transform(str(path), data, {})
    if path.is_file():
        raise DataError(f"{source}: unknown dataset format {path.suffix!r}; expected .hdf5/.h5 (D4RL), .npz "
                        f"(OGBench or plain) or a Minari dataset directory or id")
    return load_minari(source, transform, action_map)
