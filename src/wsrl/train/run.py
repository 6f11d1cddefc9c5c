"""The run directory: every file a run writes, and its safety (one process at a time, all-or-nothing snapshots,
resume only of the same run). Layout names live only here:

    <run>/config.json        what the run is (options, resolved learner, provenance)
    <run>/metrics.jsonl      one record per evaluation / diagnostics step (+ <run>/tensorboard/)
    <run>/checkpoint/        the final agent (written last)
    <run>/state/             while the run is unfinished: files written once at the start (the frozen pre-trained
                             agent, the held-out sample) and `snapshot-<step>/` directories; `CURRENT` names the
                             newest complete one. A snapshot is written beside the previous one and becomes current
                             by one atomic rename, so a kill or a full disk leaves the new one or the old one, never
                             a mix. The previous snapshot is kept: a group of seeds killed while writing its
                             snapshots resumes all seeds from the newest step they all have.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from wsrl.errors import ConfigError
from wsrl.io import atomic, checkpoint
from wsrl.io.provenance import provenance
from wsrl.io.runlog import CONFIG_FILE, METRICS_FILE, MetricsLog, load_records

STATE_DIR, CURRENT, LOCK_FILE, CHECKPOINT_DIR = "state", "CURRENT", ".lock", "checkpoint"
# Recorded fields that may differ between a run and its resumption (how it is run, not what it computes; snapshot
# spacing included: every step draws its own keys, so where the loop pauses to save does not change the numbers).
RESUME_FREE = {"resume", "progress", "versions", "git_commit", "run_dir", "seeds", "save_interval"}


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


def differences(saved: dict, wanted: dict) -> list[str]:
    """The options of `wanted` (what config.json would now hold) that the saved run does not share."""
    return [f"{k}: the run has {saved.get(k)!r}, now {wanted[k]!r}" for k in sorted(set(wanted) - RESUME_FREE)
            if saved.get(k) != wanted[k]]


def snapshot_steps(run_dir: Path) -> list[int]:
    """Steps of the complete snapshots: the current one and the older one kept beside it."""
    state = run_dir / STATE_DIR
    pointer = state / CURRENT
    if not pointer.is_file() or not (state / pointer.read_text().strip()).is_dir():
        return []
    current = int(pointer.read_text().strip().split("-")[-1])
    return sorted(s for s in (int(p.name.split("-")[-1]) for p in state.glob("snapshot-*")) if s <= current)


def prepare(run_dir: Path, resume: bool, record: dict) -> str:
    """Before anything is written, what this run does: "fresh" (a new run), "continue" (from a snapshot) or
    "restart" (`--resume` of a run that stopped before its first snapshot: it starts over).

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
    return "continue" if snapshot_steps(run_dir) else "restart"


class Run:
    """One seed's run directory, opened once its input is validated."""

    def __init__(self, path: Path, resume: bool, record: dict):
        self.path, self.record = Path(path), record
        self.start = prepare(self.path, resume, record)
        self.metrics: MetricsLog | None = None

    def open(self, stack: contextlib.ExitStack, resume_step: int = 0) -> None:
        """Hold the lock for the rest of `stack`; empty a run that starts over; open the metrics log with the
        records a killed run wrote after `resume_step` dropped."""
        stack.enter_context(locked(self.path))
        if self.start == "restart":
            print(f"[wsrl] {self.path} has no snapshot yet (it stopped before the first one): starting it from "
                  f"the beginning")
            self.clear()
        self.metrics = MetricsLog(self.path, resume_step=resume_step if self.start == "continue" else None)
        stack.callback(self.metrics.close)
        self.metrics.truncate_after(resume_step)

    def clear(self) -> None:
        """Remove what a run wrote (not the lock), so it can start again."""
        for name in (METRICS_FILE, CONFIG_FILE):
            (self.path / name).unlink(missing_ok=True)
        for name in (STATE_DIR, "tensorboard"):
            shutil.rmtree(self.path / name, ignore_errors=True)

    def write_config(self, extra: dict) -> None:
        atomic.write_bytes(self.path / CONFIG_FILE,
                           json.dumps({**self.record, **extra, **provenance()}, indent=2).encode())

    def log(self, record: dict) -> None:
        self.metrics.write(record)

    # ---- state that lives only while the run is unfinished --------------------------------------------------

    def state_path(self, name: str) -> Path:
        return self.path / STATE_DIR / name

    def save_start_agent(self, name: str, agent, obs_dim: int) -> None:
        checkpoint.save(self.state_path(name), agent, obs_dim=obs_dim)

    def load_start_agent(self, name: str):
        return checkpoint.load(self.state_path(name))[0]

    def save_start_arrays(self, name: str, arrays: dict | None) -> None:
        if arrays is not None:
            self.state_path(name).parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.state_path(name + ".npz"), **arrays)

    def load_start_arrays(self, name: str) -> dict | None:
        path = self.state_path(name + ".npz")
        if not path.exists():
            return None
        with np.load(path) as f:
            return {k: f[k] for k in f.files}

    def snapshot(self, step: int, write: Callable[[Path], None]) -> Path:
        """`write(directory)` fills a new snapshot directory; it becomes current only once complete. On an OS
        error (full disk, ...) the partial snapshot is removed and the previous one stays current."""
        state = self.path / STATE_DIR
        new = state / f"snapshot-{step}"
        kept = snapshot_steps(self.path)
        shutil.rmtree(new, ignore_errors=True)  # a partial one left by a kill
        try:
            new.mkdir(parents=True)
            write(new)
            atomic.write_bytes(state / CURRENT, new.name.encode())
        except OSError as err:
            shutil.rmtree(new, ignore_errors=True)
            intact = f"the snapshot of step {kept[-1]} is intact" if kept else "no snapshot yet"
            raise RunDirError(f"could not write the snapshot of step {step} to {new} ({err.strerror or err}); "
                              f"{intact}: free space (or fix the permissions), then continue with --resume") from err
        for stale in state.glob("snapshot-*"):
            if stale != new and stale.name != f"snapshot-{kept[-1] if kept else -1}":
                shutil.rmtree(stale, ignore_errors=True)
        return new

    def snapshot_dir(self, step: int) -> Path:
        return self.path / STATE_DIR / f"snapshot-{step}"

    def finish(self, agent, obs_dim: int, extra: dict) -> Path:
        """Write the final checkpoint, then drop the resumable state."""
        path = checkpoint.save(self.path / CHECKPOINT_DIR, agent, obs_dim=obs_dim, extra=extra)
        shutil.rmtree(self.path / STATE_DIR, ignore_errors=True)
        return path


def has_checkpoint(run_dir: Path) -> bool:
    """The run's final checkpoint is written (it is written last: the run is over)."""
    return (Path(run_dir) / CHECKPOINT_DIR / "checkpoint.json").exists()


def finished(run_dir: Path) -> bool:
    """The run is complete: its final checkpoint is written or, in a results tree kept without checkpoints (a
    committed study), its metrics reach its last step and no unfinished state is left."""
    run_dir = Path(run_dir)
    if has_checkpoint(run_dir):
        return True
    if (run_dir / STATE_DIR).exists() or not all((run_dir / f).is_file() for f in (CONFIG_FILE, METRICS_FILE)):
        return False
    records = load_records(run_dir)
    steps = json.loads((run_dir / CONFIG_FILE).read_text()).get("steps")
    return bool(records) and steps is not None and records[-1].get("step") == steps


def resume_step(runs: list[Run]) -> int:
    """The step a group continues from: the newest snapshot every seed has. 0 when the seeds start afresh, or
    when one of them stopped before its first snapshot (then every seed starts over)."""
    if any(run.start != "continue" for run in runs):
        for run in runs:
            run.start = "restart" if run.start == "continue" else run.start
        return 0
    common = set.intersection(*(set(snapshot_steps(run.path)) for run in runs))
    if not common:
        names = ", ".join(str(run.path) for run in runs)
        raise RunDirError(f"--resume: the seeds' run directories ({names}) have no snapshot step in common; "
                          f"resume each seed on its own, or start the group again in new run directories")
    return max(common)
