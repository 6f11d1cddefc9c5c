"""A run directory's safety: one process at a time, snapshots that are all-or-nothing, resume only of the same run.

Layout under `<run>/state/`: the files written once at the start (e.g. the frozen pre-trained agent) and one
directory per snapshot, `snapshot-<step>/`; the file `CURRENT` names the complete one. A snapshot is written
entirely beside the previous one and becomes current by one atomic rename of `CURRENT`, so a kill or a full disk
at any point leaves either the new snapshot or the previous one, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Callable

from wsrl.errors import ConfigError
from wsrl.io.checkpoint import atomic_write
from wsrl.io.runlog import CONFIG_FILE, METRICS_FILE

STATE_DIR, CURRENT, LOCK_FILE = "state", "CURRENT", ".lock"
# Recorded fields that may differ between a run and its resumption (how it is run, not what it computes).
RESUME_FREE = {"resume", "progress", "versions", "git_commit"}


class RunDirError(ConfigError):
    """A run directory is in use, belongs to another run, or cannot be written."""


@contextlib.contextmanager
def locked(run_dir: Path):
    """Hold an exclusive lock on the run directory for the run's lifetime; a second process stops at once."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / LOCK_FILE, "a+")
    except OSError as err:  # a file in the way, a read-only folder, ...
        raise RunDirError(f"cannot use {run_dir} as a run directory ({err.strerror or err}): choose a writable "
                          f"--run-dir that is not a file") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunDirError(f"{run_dir} is in use by another wsrl process (PID {holder}); wait for it to finish, "
                          f"or choose another --run-dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def current_snapshot(run_dir: Path) -> Path | None:
    """The last complete snapshot's directory, or None."""
    pointer = run_dir / STATE_DIR / CURRENT
    if not pointer.is_file():
        return None
    snapshot = run_dir / STATE_DIR / pointer.read_text().strip()
    return snapshot if snapshot.is_dir() else None


def write_snapshot(run_dir: Path, step: int, write: Callable[[Path], None]) -> Path:
    """`write(directory)` fills a new snapshot directory; it becomes current only once complete. On an OS error
    (full disk, ...) the partial snapshot is removed and the previous one stays current."""
    state = run_dir / STATE_DIR
    new = state / f"snapshot-{step}"
    previous = current_snapshot(run_dir)
    shutil.rmtree(new, ignore_errors=True)  # a partial one left by a kill
    try:
        new.mkdir(parents=True)
        write(new)
        atomic_write(state / CURRENT, new.name.encode())
    except OSError as err:
        shutil.rmtree(new, ignore_errors=True)
        kept = f"the snapshot of step {previous.name.split('-')[-1]} is intact" if previous else "no snapshot yet"
        raise RunDirError(f"could not write the snapshot of step {step} to {new} ({err.strerror or err}); {kept}: "
                          f"free space (or fix the permissions), then continue with --resume") from err
    for stale in state.glob("snapshot-*"):
        if stale != new:
            shutil.rmtree(stale, ignore_errors=True)
    return new


def differences(saved: dict, wanted: dict) -> list[str]:
    """The options of `wanted` (what config.json would now hold) that the saved run does not share."""
    return [f"{k}: the run has {saved.get(k)!r}, now {wanted[k]!r}" for k in sorted(set(wanted) - RESUME_FREE)
            if saved.get(k) != wanted[k]]


def prepare(run_dir: Path, resume: bool, record: dict) -> str:
    """Before anything is written, what this run does: "fresh" (a new run), "continue" (from the current
    snapshot) or "restart" (`--resume` of a run that stopped before its first snapshot: it starts over).

    A fresh run needs a directory without a run; `--resume` needs the same run: same kind, task, seed and every
    option (`record`, JSON-normalised, is what config.json would now hold)."""
    config_path = run_dir / CONFIG_FILE
    if not resume:
        if (run_dir / METRICS_FILE).exists() or config_path.exists():
            raise RunDirError(f"{run_dir} already holds a run: continue it with --resume, or choose another "
                              f"--run-dir")
        return "fresh"
    if not config_path.exists():
        raise RunDirError(f"--resume: {run_dir} holds no run to continue (start it without --resume)")
    changed = differences(json.loads(config_path.read_text()), record)
    if changed:
        raise RunDirError(f"--resume: {run_dir} holds a different run; resume it with its own options or choose "
                          f"another --run-dir:\n  - " + "\n  - ".join(changed))
    if current_snapshot(run_dir) is None:
        print(f"[wsrl] {run_dir} has no snapshot yet (it stopped before the first one): starting it from the "
              f"beginning")
        return "restart"
    return "continue"


def enter(stack: contextlib.ExitStack, run_dir: Path, start: str) -> None:
    """Once the run's input is validated, before its first read or write of the directory: hold the lock for the
    rest of `stack`, and empty the directory of a run that starts over."""
    stack.enter_context(locked(run_dir))
    if start == "restart":
        clear(run_dir)


def clear(run_dir: Path) -> None:
    """Remove what a run wrote (not the lock), so it can start again."""
    for name in (METRICS_FILE, CONFIG_FILE):
        (run_dir / name).unlink(missing_ok=True)
    for name in (STATE_DIR, "tensorboard"):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def remove_state(run_dir: Path) -> None:
    shutil.rmtree(run_dir / STATE_DIR, ignore_errors=True)
